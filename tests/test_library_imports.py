"""watcher.kalshi stands alone: it uses nothing else of watcher and has no import cycles (issue 9).

The runtime check imports each library module in a fresh interpreter, because this one has
imported everything already, and reads which modules it ended up with. The static checks read
every import statement with :mod:`ast`, including those inside functions and under
``TYPE_CHECKING``, which a runtime check cannot see.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "watcher" / "kalshi"

# Prints the modules that importing argv[1] loaded, beyond those of a bare interpreter.
LOADED = """
import importlib, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(path): path for path in sorted(LIBRARY.rglob("*.py"))}


def is_library(name: str) -> bool:
    return name == "watcher.kalshi" or name.startswith("watcher.kalshi.")


def is_project(name: str) -> bool:
    return name == "watcher" or name.startswith("watcher.")


def loaded_by(module: str) -> list[str]:
    """The modules a fresh interpreter loads to import ``module``."""
    result = subprocess.run(
        [sys.executable, "-c", LOADED, module],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return list(json.loads(result.stdout))


def imported_names(module: str) -> set[str]:
    """Every module name an import statement of ``module`` mentions, at any depth.

    ``from package import name`` yields both ``package`` and ``package.name``, since ``name``
    may be a submodule; callers keep the names that are modules.
    """
    path = FILES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that ends where it starts, or None if it is acyclic."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_library_has_modules_to_check() -> None:
    """The walk finds the library's modules, the simulator's included."""
    assert {"watcher.kalshi", "watcher.kalshi.client", "watcher.kalshi.sim.exchange"} <= set(FILES)


def test_the_watcher_package_loads_nothing_but_itself() -> None:
    """``import watcher``, the library's parent package, loads no other module at all."""
    assert loaded_by("watcher") == ["watcher"]


@pytest.mark.parametrize("module", sorted(FILES))
def test_library_module_loads_no_watcher_module_outside_the_library(module: str) -> None:
    """Importing a watcher.kalshi module in a fresh interpreter loads no other part of watcher."""
    outside = [n for n in loaded_by(module) if is_project(n) and not is_library(n)]
    assert outside in ([], ["watcher"]), outside


@pytest.mark.parametrize("module", sorted(FILES))
def test_library_module_names_no_watcher_module_outside_the_library(module: str) -> None:
    """No import statement of watcher.kalshi, even inside a function or TYPE_CHECKING block,
    names a module of watcher outside the library (``watcher.__version__`` included)."""
    outside = sorted(n for n in imported_names(module) if is_project(n) and not is_library(n))
    assert outside == [], outside


def test_library_modules_import_each_other_without_cycles() -> None:
    """The graph of imports between watcher.kalshi modules, at any depth, is acyclic."""
    graph = {module: (imported_names(module) & set(FILES)) - {module} for module in FILES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_find_cycle_reports_a_cycle_hidden_in_a_longer_chain() -> None:
    """The cycle check itself finds a cycle that does not pass through the first module."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}
    assert find_cycle(graph) == ["b", "c", "d", "b"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
