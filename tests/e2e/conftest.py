"""Browser tests: the session's app served on 127.0.0.1 by a real server thread, driven by Debian's Chromium through
Playwright (sync API). Every test gets a fresh browser context (no cookie survives it) and, like every other test,
an empty database (``clean_database`` in tests/conftest.py).

Without Chromium or Playwright these tests are skipped; with ``REQUIRE_E2E=1`` (CI) they fail instead."""

from __future__ import annotations

import os
import shutil
import threading
from urllib.parse import urljoin, urlsplit

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.factories import PASSWORD

TIMEOUT_MS = 10_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def _unavailable(reason: str) -> None:
    """Skip, or fail when the run must have browser tests (a skipped browser test must not pass CI)."""
    if os.environ.get("REQUIRE_E2E") == "1":
        pytest.fail(f"REQUIRE_E2E=1 but the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason} (set REQUIRE_E2E=1 to make this an error)")


class _InFlight:
    """Counts the live server's unfinished requests, so that a test ends only when the server is done with it: a
    request still running (a stylesheet the closed page no longer wants, say) would otherwise touch the next test's
    freshly emptied database."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = threading.Condition()

    def started(self) -> None:
        with self.idle:
            self.count += 1

    def finished(self) -> None:
        with self.idle:
            self.count -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.count == 0, timeout=timeout)


class _CountingHandler(WSGIRequestHandler):
    """Counts around werkzeug's whole request handling: a response's ``close()`` is not enough, werkzeug skips it
    when the browser drops the connection."""

    def run_wsgi(self) -> None:
        self.server.in_flight.started()
        try:
            super().run_wsgi()
        finally:
            self.server.in_flight.finished()


@pytest.fixture(scope="session")
def _live_server(app):
    """The session's app on 127.0.0.1 at a free port (threaded werkzeug server in a daemon thread).

    It shares the session app, its engine and its database with the test: each request gets its own app context and
    so its own database session, and what a test builds (``world``) is committed before the browser asks for it."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_CountingHandler)
    server.in_flight = _InFlight()
    thread = threading.Thread(target=server.serve_forever, name="e2e-live-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(_live_server) -> str:
    """The live server's base URL, e.g. ``http://127.0.0.1:40123``."""
    return f"http://127.0.0.1:{_live_server.server_port}"


@pytest.fixture(scope="session")
def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not importable ({exc}); pip install -r requirements-dev.txt")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(_playwright):
    """Debian's headless Chromium (never a Playwright download)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        _unavailable("no chromium on PATH; apt-get install -y chromium")
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    browser = _playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


# Every page reports what its Content-Security-Policy refused; the browser enforces it (Playwright's bypass_csp is off).
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${where}`);
});
"""


@pytest.fixture
def csp_violations():
    """What the pages of this test's browser context refused under the portal's CSP (the test fails on any)."""
    return []


@pytest.fixture
def page(browser, live_server, _live_server, csp_violations):
    """A page in a browser context of its own, with relative URLs resolved against the live server. The test fails if
    any page broke the portal's Content-Security-Policy (a refused script is a feature that silently does not work)."""
    context = browser.new_context(base_url=live_server)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    context.add_init_script(_REPORT_CSP_VIOLATIONS)
    context.on(
        "console",
        lambda message: (
            csp_violations.append(message.text)
            if "Content Security Policy" in message.text or message.text.startswith("CSP violation")
            else None
        ),
    )
    try:
        yield context.new_page()
    finally:
        context.close()
        assert _live_server.in_flight.wait_idle(TIMEOUT_MS / 1000), "the live server still has requests in flight"
    assert csp_violations == [], f"the Content-Security-Policy refused: {csp_violations}"


def _path(url: str) -> str:
    return urlsplit(url).path


@pytest.fixture
def sign_in():
    """``sign_in(page, email, password=PASSWORD)``: through FAB's sign-in form, as a person would; returns when
    the page after sign-in has loaded, and fails at once (with FAB's message) if the portal sent us back."""

    def _sign_in(page, email: str, password: str = PASSWORD):
        page.goto("/login/")
        page.locator("#username").fill(email)
        page.locator("#password").fill(password)
        with page.expect_response(
            lambda r: r.request.method == "POST" and _path(r.url) == "/login/", timeout=TIMEOUT_MS
        ) as posted:
            page.get_by_role("button", name="Sign In").click()
        answer = posted.value
        target = urljoin(answer.url, answer.headers.get("location", ""))
        if answer.status != 302 or _path(target) == "/login/":
            if answer.status == 302:
                page.wait_for_url(target)  # back on the sign-in form, with FAB's message
            alerts = page.locator(".alert").all_inner_texts()
            raise AssertionError(f"sign-in failed for {email}: HTTP {answer.status}, {alerts or 'no message'}")
        page.wait_for_url(lambda url: _path(url) != "/login/")
        return page

    return _sign_in
