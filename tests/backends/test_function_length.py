"""The backends' functions stay short: under 60 lines each (the project's standard)."""

import ast
import pathlib

BACKENDS = pathlib.Path(__file__).resolve().parents[2] / "backends"
LIMIT = 60


def long_functions(path: pathlib.Path) -> list:
    tree = ast.parse(path.read_text())
    return [f"{path.relative_to(BACKENDS)}:{node.lineno} {node.name} "
            f"({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 >= LIMIT]


def test_every_function_in_backends_is_under_60_lines():
    modules = sorted(BACKENDS.rglob("*.py"))
    assert len(modules) > 20  # the check reads the real folder
    too_long = [f for m in modules for f in long_functions(m)]
    assert not too_long, too_long
