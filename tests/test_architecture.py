"""The shape of the package (docs/architecture.md): forbidden arrows, module and function sizes.

The arrows are import-linter contracts in pyproject.toml; this test runs them, so a change that
adds a forbidden import fails here with the chain of imports that broke the contract.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import watcher
import watcher.errors
import watcher.kalshi.errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "watcher"
#: style.md: modules stay under about 400 lines and functions under about 40.
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40
ROOMS = ("kalshi", "domain", "rules", "store", "notify", "service", "ops")


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_forbidden_arrow_of_the_architecture_is_absent() -> None:
    """Every import-linter contract in pyproject.toml is kept."""
    lint = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run(
        [str(lint), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_is_over_the_size_limit(path: Path) -> None:
    """A module stays within MAX_MODULE_LINES lines."""
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {lines} lines"


def test_no_function_is_over_the_size_limit() -> None:
    """Every function and method stays within MAX_FUNCTION_LINES lines."""
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size})")
    assert not long, "\n".join(long)


def test_the_folder_list_names_the_rooms_of_the_architecture_doc() -> None:
    """Every room is a package and docs/architecture.md describes each one."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for room in ROOMS:
        assert (PACKAGE / room / "__init__.py").is_file()
        assert f"`{room}/`" in doc
    loose = {path.name for path in PACKAGE.glob("*.py")}
    assert loose <= {"__init__.py", "app.py", "cli.py", "errors.py", "settings.py"}


def test_every_exception_class_appears_in_a_drawn_tree() -> None:
    """Every exception class of the package is drawn in watcher.errors' docstring, and every
    one of the library's in watcher.kalshi.errors' too."""
    service_tree = watcher.errors.__doc__ or ""
    library_tree = watcher.kalshi.errors.__doc__ or ""
    found = set()
    for info in pkgutil.walk_packages(watcher.__path__, "watcher."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException):
                if value.__module__ == info.name:
                    found.add((info.name, name))
    assert len(found) >= 15
    for module, name in sorted(found):
        drawn = re.compile(rf"^\s+(?:[│ ]*[├└]── )?{name}\b", re.MULTILINE)
        assert drawn.search(service_tree), f"{module}.{name} is not drawn in watcher.errors"
        if module.startswith("watcher.kalshi."):
            assert drawn.search(library_tree), f"{module}.{name} not in watcher.kalshi.errors"
