"""`watcher check` reports the database: reachable or not and its schema version, for a SQLite
file and a PostgreSQL URL, a password never shown."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from watcher.cli import main
from watcher.store.describe import describe_database
from watcher.store.pg.schema import SCHEMA_VERSION as PG_VERSION
from watcher.store.pg.schema import migrate
from watcher.store.schema import SCHEMA_VERSION, open_database

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KALSHI_API_KEY_ID", raising=False)
    monkeypatch.delenv("WATCHER_TELEGRAM_URL", raising=False)


def check(db: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    files = ["--trades", str(ROOT / "trades.json.example")]
    files += ["--rules", str(ROOT / "rules" / "rules.yaml")]
    code = main(["check", *files, "--db", db])
    out = capsys.readouterr()
    return code, out.out, out.err


async def pg(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# SQLite


def test_check_reports_a_current_sqlite_file(tmp_path, capsys):
    """A migrated file: reachable, its schema version, current; exit 0."""
    db = tmp_path / "w.db"
    open_database(db).close()
    code, out, _ = check(str(db), capsys)
    assert code == 0
    assert f"database: {db} reachable, schema version {SCHEMA_VERSION} (current)" in out


def test_check_reports_a_missing_sqlite_file_without_creating_it(tmp_path, capsys):
    """No file yet is not a problem (`watcher start` creates it); check creates nothing."""
    db = tmp_path / "data" / "w.db"
    code, out, _ = check(str(db), capsys)
    assert code == 0
    assert f"database: {db} does not exist yet" in out
    assert not db.parent.exists()


def test_check_fails_on_a_file_that_is_not_a_database(tmp_path, capsys):
    """A file that is not SQLite is a problem line naming it; exit 1."""
    db = tmp_path / "w.db"
    db.write_bytes(b"not a database at all, just some text " * 200)
    code, _, err = check(str(db), capsys)
    assert code == 1
    assert f"database: {db}: cannot be read:" in err


def test_check_fails_on_a_sqlite_file_from_a_newer_watcher(tmp_path, capsys):
    """A schema version above this watcher's is a problem; exit 1."""
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    code, _, err = check(str(db), capsys)
    assert code == 1
    assert f"schema version 99, newer than the {SCHEMA_VERSION}" in err


# PostgreSQL


def test_check_reports_an_empty_then_a_migrated_postgres_database(postgres_db, capsys):
    """Empty: reachable, the schema comes at start; migrated: its version, current."""
    code, out, _ = check(postgres_db, capsys)
    assert code == 0
    assert f"database: {postgres_db} reachable, empty" in out

    async def migrated() -> None:
        conn = await asyncpg.connect(postgres_db)
        try:
            await migrate(conn, now_ms=1)
        finally:
            await conn.close()

    asyncio.run(migrated())
    code, out, _ = check(postgres_db, capsys)
    assert code == 0
    assert f"database: {postgres_db} reachable, schema version {PG_VERSION} (current)" in out


def test_check_masks_the_password_of_a_postgres_url(postgres_db, capsys):
    """The URL's password is shown as *** (the local server trusts the user)."""
    url = postgres_db.replace("postgres@", "postgres:Sup3r-secret@", 1)
    code, out, err = check(url, capsys)
    assert code == 0
    assert "Sup3r-secret" not in out + err
    assert "database: postgresql://postgres:***@127.0.0.1" in out


def test_check_fails_on_an_unreachable_postgres_server(capsys):
    """No server: one problem line, the password masked; exit 1."""
    code, out, err = check("postgresql://someone:hunter2@127.0.0.1:9/watcher", capsys)
    assert code == 1
    assert "hunter2" not in out + err
    assert "database: postgresql://someone:***@127.0.0.1:9/watcher: unreachable:" in err


def test_check_fails_on_a_postgres_database_from_a_newer_watcher(postgres_db, capsys):
    """A watcher_schema version above this watcher's is a problem; exit 1."""
    asyncio.run(
        pg(
            postgres_db,
            "CREATE TABLE IF NOT EXISTS watcher_schema (version integer PRIMARY KEY,"
            " applied_ms bigint NOT NULL); INSERT INTO watcher_schema VALUES (99, 1)",
        )
    )
    try:
        code, _, err = check(postgres_db, capsys)
    finally:
        asyncio.run(pg(postgres_db, "DELETE FROM watcher_schema WHERE version = 99"))
    assert code == 1
    assert f"schema version 99, newer than the {PG_VERSION} this watcher supports" in err


def test_a_url_collapsed_by_a_path_is_still_recognised():
    """``Path('postgresql://h/db')`` loses a slash; describe_database still sees a URL."""
    info = asyncio.run(describe_database(Path("postgresql://someone:pw@127.0.0.1:9/db")))
    assert info.kind == "postgresql" and not info.reachable
    assert info.location == "postgresql://someone:***@127.0.0.1:9/db"
