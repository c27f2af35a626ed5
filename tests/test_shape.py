"""The package's shape, kept so a new maintainer can read any part of it in one sitting: modules of a few hundred
lines, functions that fit on a screen, few parameters, and no row or dict read outside the store."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mailtriage"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 40
MAX_PARAMETERS = 6
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def is_click_command(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A click command's parameters are its options."""
    return any("command" in ast.unparse(decorator) or "option" in ast.unparse(decorator)
               for decorator in function.decorator_list)  # fmt: skip


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_a_few_hundred_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_longer_than_a_screen_or_takes_more_than_six_parameters(path: Path) -> None:
    too_long, too_many = [], []
    for function in functions(path):
        length = (function.end_lineno or function.lineno) - function.lineno + 1
        if length > MAX_FUNCTION_LINES:
            too_long.append(f"{function.name} ({length} lines)")
        arguments = function.args
        names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
        names = [name for name in names if name not in ("self", "cls")]
        if len(names) > MAX_PARAMETERS and not is_click_command(function):
            too_many.append(f"{function.name} ({len(names)} parameters)")
    assert (too_long, too_many) == ([], [])


def test_no_route_dict_or_bare_status_string_is_read_outside_the_store() -> None:
    outside = [p for p in SOURCES if "store" not in p.relative_to(PACKAGE).parts]
    statuses = "|".join(["classified", "unclassified", "pending", "routed", "needs-human", "skipped", "failed"])
    found = []
    for path in outside:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"route\b[^\n]*\.get\(|\(record\.route or \{\}\)", line):
                found.append(f"{path.name}:{number}: {line.strip()}")
            if re.search(rf"status\s*==\s*[\"']({statuses})[\"']|[\"']({statuses})[\"']\s*==\s*\w*status", line):
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert found == []
