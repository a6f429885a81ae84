"""The stored mutes and pause on every backend (SQLite file, PostgreSQL): the ControlStore port,
the read model's view of it, two Controls on one database agreeing, the reason of a suppressed
alert kept by the alert store, and the version 3 → 4 migration."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from watcher.domain.controls import ControlState, Mute, Pause
from watcher.domain.positions import Portfolio
from watcher.errors import StorageError
from watcher.ops.status import read_status
from watcher.service.controls import Controls
from watcher.store import open_backend
from watcher.store.control_ports import ControlStore
from watcher.store.pg import schema as pg_schema
from watcher.store.ports import Backend
from watcher.store.schema import MIGRATIONS, split_statements

from .support import alert_for

NOW = 1_767_268_800_000  # 2026-01-01T12:00:00Z
HOUR_MS = 3_600_000
CPI = "KXCPI-26JAN-T0.3"


async def _empty_postgres(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE mutes, paused, alerts, alert_deliveries CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    """A PostgreSQL DSN, or None for SQLite (resolved outside the event loop)."""
    return request.getfixturevalue("postgres_db") if request.param == "postgres" else None


@pytest.fixture
async def backend(database: str | None, tmp_path: Path) -> Backend:
    """A migrated, empty database of each kind."""
    if database is None:
        return open_backend(tmp_path / "w.db")
    dsn = database
    store = await open_backend(dsn).control_store()  # migrates a new database
    await store.close()
    await _empty_postgres(dsn)
    return open_backend(dsn)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[ControlStore]:
    opened = await backend.control_store()
    try:
        yield opened
    finally:
        await opened.close()


def mute(target: str | None, until: int = NOW + HOUR_MS, by: str = "telegram:987") -> Mute:
    return Mute(target, until, by, NOW)


async def test_mutes_are_stored_one_per_target_soonest_end_first(store: ControlStore) -> None:
    """put_mute replaces the mute of the same target whatever its case; load lists them by
    end; purge removes the ended ones; delete_mutes by key or all, counting."""
    assert await store.load() == ControlState()
    await store.put_mute(mute(CPI, NOW + 2 * HOUR_MS))
    await store.put_mute(mute(None))
    await store.put_mute(mute("tight spread", NOW - 1))
    await store.put_mute(mute(CPI.lower(), NOW + 3 * HOUR_MS, "web"))
    assert (await store.load()).mutes == (
        mute("tight spread", NOW - 1),
        mute(None),
        mute(CPI.lower(), NOW + 3 * HOUR_MS, "web"),
    )
    assert await store.purge_mutes(NOW) == 1
    assert await store.delete_mutes([CPI.casefold(), "nothing"]) == 1
    assert (await store.load()).mutes == (mute(None),)
    await store.put_mute(mute("x"))
    assert await store.delete_mutes() == 2
    assert await store.delete_mutes([]) == 0
    assert await store.load() == ControlState()


async def test_the_pause_is_one_row_kept_until_resumed(store: ControlStore) -> None:
    assert await store.pause(Pause("telegram:987", NOW)) is True
    assert await store.pause(Pause("web", NOW + 1)) is False
    assert (await store.load()).paused == Pause("telegram:987", NOW)
    assert await store.resume() is True
    assert await store.resume() is False
    assert (await store.load()).paused is None


async def test_a_reopened_store_and_the_read_model_see_what_was_stored(
    backend: Backend, store: ControlStore
) -> None:
    """A restart (a new store on the database) and the read model (``watcher status``, the
    dashboard) read the same mutes and pause."""
    await store.put_mute(mute(CPI))
    await store.pause(Pause("web", NOW))
    expected = ControlState((mute(CPI),), Pause("web", NOW))
    reopened = await backend.control_store()
    reader = await backend.read_model()
    try:
        assert await reopened.load() == expected
        assert await reader.control_state() == expected
        table, _ = await read_status(reader, Portfolio(()))
        assert table.controls == expected
    finally:
        await reader.close()
        await reopened.close()


async def test_a_closed_store_raises_storage_error(backend: Backend) -> None:
    opened = await backend.control_store()
    await opened.close()
    await opened.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        await opened.load()


async def test_two_instances_on_one_database_agree(backend: Backend) -> None:
    """What one instance (or ``watcher web``) sets, the other holds to once it re-reads."""
    async with (
        await Controls.open(backend, max_age_s=0) as first,
        await Controls.open(backend, max_age_s=0) as second,
    ):
        alert = alert_for(1, ("phone",), now=NOW)
        await first.mute(3600, alert.market_ticker, by="telegram:987", now_ms=NOW)
        await second.refresh()
        assert second.verdict(alert) == "muted KXTEST-1 until 13:00 UTC by telegram:987"
        await second.pause(by="web", now_ms=NOW)
        assert await second.unmute(alert.market_ticker, now_ms=NOW) == 1
        await first.refresh()
        assert first.verdict(alert) == "paused by web since 12:00 UTC"
        assert await first.resume() is True
        await second.refresh()
        assert second.verdict(alert) is None


async def test_the_alert_store_keeps_why_an_alert_was_suppressed(backend: Backend) -> None:
    """The reason goes in with the alert and comes back from the alert store and the read
    model; an alert that goes out has none."""
    alerts = await backend.alert_store()
    reader = await backend.read_model()
    try:
        held = replace(
            alert_for(1, ("phone",), now=NOW), suppressed=True, suppressed_reason="paused by web"
        )
        sent = replace(alert_for(2, ("phone",), now=NOW), suppressed_reason="ignored")
        assert len(await alerts.record([held, sent], {}, now_ms=NOW)) == 2
        for records in (await alerts.recent(), await reader.recent_alerts()):
            found = {(r.key, r.status, r.suppressed_reason) for r in records}
            assert found == {(held.key, "suppressed", "paused by web"), (sent.key, "pending", None)}
    finally:
        await reader.close()
        await alerts.close()


# Version 3 → 4


def test_a_version_3_sqlite_database_gains_the_controls_keeping_its_alerts(tmp_path: Path) -> None:
    from watcher.store.schema import open_database

    db = tmp_path / "w.db"
    raw = sqlite3.connect(db, isolation_level=None)
    for _, script in MIGRATIONS[:3]:
        for statement in split_statements(script):
            raw.execute(statement)
    raw.execute("PRAGMA user_version = 3")
    raw.execute(
        "INSERT INTO alerts (idempotency_key, rule, market_ticker, severity, title, body, targets,"
        " status, created_ms, updated_ms) VALUES ('k', 'r', 'M', 'info', 't', 'b', '[]',"
        " 'suppressed', 1, 1)"
    )
    raw.close()
    conn = open_database(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 4
        row = conn.execute("SELECT idempotency_key, suppressed_reason FROM alerts").fetchall()
        assert row == [("k", None)]
        assert conn.execute("SELECT count(*) FROM mutes").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM paused").fetchone()[0] == 0
    finally:
        conn.close()


async def test_a_version_3_postgres_database_gains_the_controls(postgres_server: str) -> None:
    import secrets

    name = f"watcher_test_pg_v3_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        target = f"{postgres_server.rpartition('/')[0]}/{name}"
        conn = await asyncpg.connect(target)
        try:
            for _, script in pg_schema.MIGRATIONS[:3]:
                await conn.execute(script)
            await conn.execute("INSERT INTO watcher_schema VALUES (1, 1), (2, 1), (3, 1)")
            await conn.execute(
                "INSERT INTO alerts (idempotency_key, rule, market_ticker, severity, title, body,"
                " targets, status, created_ms, updated_ms)"
                " VALUES ('k', 'r', 'M', 'info', 't', 'b', '[]', 'console', 1, 1)"
            )
        finally:
            await conn.close()
        controls = await open_backend(target).control_store()
        try:
            await controls.put_mute(mute(None))
            assert (await controls.load()).mutes == (mute(None),)
        finally:
            await controls.close()
        conn = await asyncpg.connect(target)
        try:
            assert await conn.fetchval("SELECT max(version) FROM watcher_schema") == 4
            row = await conn.fetchrow("SELECT idempotency_key, suppressed_reason FROM alerts")
            assert tuple(row) == ("k", None)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
