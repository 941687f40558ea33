# Two commands on a fresh machine: `make run` and `make test` (see README.md).
VENV ?= .venv
PYTHON ?= python3
PORT ?= 5000
FLASK := $(VENV)/bin/flask
export FLASK_APP := run.py
export PORT  # the portal builds its emailed links on http://127.0.0.1:$PORT unless PORTAL_BASE_URL says otherwise

.PHONY: run test lint setup clean screenshots

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) portal sync-roles
	$(FLASK) portal seed-demo --if-empty

run: setup
	@echo "Partner Portal on http://127.0.0.1:$(PORT)"
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

test: $(VENV)/.installed-dev
	$(VENV)/bin/pytest

# The README's pictures: the main screens of both portals on the demo data, from the browser test that visits them.
screenshots: $(VENV)/.installed-dev
	SCREENSHOT_DIR=docs/screenshots REQUIRE_E2E=1 $(VENV)/bin/pytest -q -p no:cacheprovider tests/e2e/test_screenshots.py

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
