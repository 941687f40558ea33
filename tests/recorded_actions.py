"""Every event action the code records, found by reading the code (AST), for the test that each one has words.

The first argument of each ``record_event`` / ``record_login_event`` call: a string, either branch of ``a if c else
b``, a local variable's assigned values, or a parameter of the enclosing function — then the same argument of every
call of that function (a private one's in its own module), followed up the same way. f-strings are returned as
templates for the test to expand by hand (a new one fails that test until it is listed)."""

from __future__ import annotations

import ast
import pathlib

RECORDERS = frozenset({"record_event", "record_login_event"})
ROOTS = ("app", "views", "security", "worker.py")


def _modules(base: pathlib.Path):
    for root in ROOTS:
        path = base / root
        for file in [path] if path.suffix == ".py" else sorted(path.rglob("*.py")):
            tree = ast.parse(file.read_text(), str(file))
            for node in ast.walk(tree):
                for child in ast.iter_child_nodes(node):
                    child.parent = node  # type: ignore[attr-defined]
            yield file.relative_to(base), tree


def _callee(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _enclosing(node):
    while node is not None and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        node = getattr(node, "parent", None)
    return node


def recorded_actions(base: pathlib.Path) -> tuple[set[str], dict[str, set[str]]]:
    """(the actions written out, {f-string or other expression: where}) of every event the code records; events
    inserted as rows (``Event(action="...")``) count too."""
    modules = list(_modules(base))
    calls = [(path, node) for path, tree in modules for node in ast.walk(tree) if isinstance(node, ast.Call)]
    literals: set[str] = set()
    templates: dict[str, set[str]] = {}
    seen: set[tuple] = set()

    def resolve(expr, path, func) -> None:
        if (path, id(expr)) in seen:
            return
        seen.add((path, id(expr)))
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            literals.add(expr.value)
        elif isinstance(expr, ast.IfExp):
            resolve(expr.body, path, func)
            resolve(expr.orelse, path, func)
        elif isinstance(expr, ast.Name) and func is not None:
            params = [a.arg for a in func.args.args]
            if expr.id not in params:
                for node in ast.walk(func):
                    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == expr.id for t in node.targets):
                        resolve(node.value, path, func)
                return
            if func.name in RECORDERS:
                return
            index = params.index(expr.id)
            for call_path, call in calls:
                if _callee(call) != func.name or (func.name.startswith("_") and call_path != path):
                    continue
                method = params[0] in ("self", "cls") and isinstance(call.func, ast.Attribute)
                position = index - (1 if method else 0)
                arg = next((k.value for k in call.keywords if k.arg == expr.id), None)
                if arg is None and 0 <= position < len(call.args):
                    arg = call.args[position]
                if arg is not None:
                    resolve(arg, call_path, _enclosing(call))
        else:
            templates.setdefault(ast.unparse(expr), set()).add(f"{path}:{expr.lineno}")

    for path, call in calls:
        name = _callee(call)
        if name in RECORDERS and call.args:
            resolve(call.args[0], path, _enclosing(call))
        elif name == "Event":
            for keyword in call.keywords:
                if keyword.arg == "action":
                    resolve(keyword.value, path, _enclosing(call))
    return literals, templates
