"""The layering rules of DESIGN.md and the issue, read from the source: ``security/`` imports neither ``app/services/``
nor ``views/`` (it sends signals instead); ``app/`` never imports ``views/`` (but the factory, which registers them);
nothing but ``app/clock.py`` reads the clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize(("folder", "forbidden"), [("security", ("app.services", "views")), ("app", ("views",))])
def test_no_import_reaches_up_the_layers(folder, forbidden):
    offenders = []
    for path in _modules(folder):
        if path == ROOT / "app" / "__init__.py":
            continue  # create_app() registers the views: the one place that may
        for name in _imports(path):
            if any(name == f or name.startswith(f"{f}.") for f in forbidden):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


CLOCK_CALLS = ("date.today", "datetime.now", "datetime.today", "datetime.utcnow", "time.time")


def test_only_the_clock_module_reads_the_clock():
    offenders = []
    for folder in ("app", "views", "security"):
        for path in _modules(folder):
            if path == ROOT / "app" / "clock.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    dotted = ast.unparse(node.func)
                    if any(dotted == call or dotted.endswith(f".{call}") for call in CLOCK_CALLS):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {dotted}()")
    assert offenders == []
