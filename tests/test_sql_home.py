"""All SQL text lives under ``watcher/store/``: no SQL strings nor ``.execute(`` calls elsewhere."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "watcher"
STORE = PACKAGE / "store"
#: A statement's first word (a common table expression as ``WITH name AS (``, so that prose
#: such as "with fees" is not taken for SQL).
SQL_START = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|PRAGMA|BEGIN|COMMIT|ROLLBACK|ALTER)\b"
    r"|\s*WITH\s+(RECURSIVE\s+)?\w+\s+AS\s*\(",
    re.IGNORECASE,
)
EXECUTE = {"execute", "executemany", "executescript"}


def outside_store() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if STORE not in p.parents)


def sql_found(path: Path) -> list[str]:
    """Each SQL-looking string constant and each ``.execute*(`` call in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_START.match(node.value) and not _is_prose(node.value):
                found.append(f"{path.name}:{node.lineno}: {node.value.strip()[:60]!r}")
        elif isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            if isinstance(head, ast.Constant) and SQL_START.match(str(head.value)):
                found.append(f"{path.name}:{node.lineno}: f-string SQL")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in EXECUTE:
                found.append(f"{path.name}:{node.lineno}: .{node.func.attr}(")
    return found


def _is_prose(text: str) -> bool:
    """A docstring or message that merely starts with an SQL word ("Update the values ...")."""
    first = text.strip().split(None, 1)
    return len(first) > 1 and first[0][0].isupper() and not first[0].isupper()


@pytest.mark.parametrize("path", outside_store(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_sql_outside_the_store(path: Path) -> None:
    """Modules outside watcher/store/ hold no SQL text and call no .execute()."""
    assert sql_found(path) == []


def test_the_scan_sees_sql(tmp_path: Path) -> None:
    """The scan catches a query string, an f-string query and an execute() call."""
    module = tmp_path / "m.py"
    module.write_text(
        'Q = "  select 1"\n'
        'def f(conn, t):\n    conn.execute(f"DELETE FROM {t}")\n'
        '"""Update the values."""\n'
    )
    lines = {int(found.split(":")[1]) for found in sql_found(module)}
    assert lines == {1, 3}


def test_ports_and_records_import_no_database_driver() -> None:
    """The ports and their values can be imported without sqlite3 (or any driver)."""
    code = "import sys, watcher.store.ports, watcher.store.records;print('sqlite3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_ports_import_neither_sqlite3_nor_apprise() -> None:
    """Importing the notify and store ports loads no database driver and no Apprise."""
    code = (
        "import sys, watcher.notify.ports, watcher.store.ports;"
        "print(sorted({'sqlite3', 'apprise'} & sys.modules.keys()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
