"""The PostgreSQL store on a real server: COPY batches land exactly and once, partitions follow
the rows' days, upkeep drops old days, migrations run once, and a writer whose connection is
killed mid-stream loses nothing and writes nothing twice."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from watcher.errors import StorageError
from watcher.kalshi import messages as m
from watcher.store import open_backend
from watcher.store.pg.backend import PostgresBackend
from watcher.store.pg.schema import DAY_MS, MIGRATIONS, SCHEMA_VERSION, day_of, partition_name
from watcher.store.pg.writer import APPLICATION_NAME, PostgresCommitter, _Batch
from watcher.store.writer import StoreWriter

from .conftest import MS
from .support import trade_frame

NOW = 1_780_000_000_000
MARKET = "KXCPI-26JAN-T0.3"


def tick(ts_ms: int, *, market: str = MARKET) -> m.Ticker:
    msg = m.TickerMsg(
        market_ticker=market,
        price_dollars=Decimal("0.455"),
        yes_bid_dollars=Decimal("0.45"),
        yes_ask_dollars=Decimal("0.46"),
        volume_fp=Decimal("12.5"),
        ts_ms=ts_ms,
    )
    return m.Ticker(sid=1, msg=msg)


def delta() -> m.OrderbookDelta:
    msg = m.OrderbookDeltaMsg(
        market_ticker=MARKET, price_dollars=Decimal("0.30"), delta_fp=Decimal("5"), side="yes"
    )
    return m.OrderbookDelta(sid=2, seq=1, msg=msg)


async def fetch(dsn: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def tables(dsn: str) -> set[str]:
    found = await fetch(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row[0] for row in found}


@pytest.fixture
async def dsn(postgres_db: str) -> AsyncIterator[str]:
    """The module's database, migrated and emptied (its partitions dropped) for each test."""
    async with open_backend(postgres_db).tick_sink() as sink:  # type: ignore[attr-defined]
        await sink.flush()
    conn = await asyncpg.connect(postgres_db)
    try:
        for name in await tables(postgres_db):
            if "_p2" in name:
                await conn.execute(f'DROP TABLE "{name}"')
        await conn.execute(
            "TRUNCATE tickers, trades, orderbook_deltas, orderbook_snapshots, fills,"
            " lifecycle_events, markets, service_state, store_batches RESTART IDENTITY"
        )
    finally:
        await conn.close()
    yield postgres_db


def writer(dsn: str, errors: list[Exception] | None = None, **options: Any) -> StoreWriter:
    on_error = errors.append if errors is not None else None
    committer = PostgresCommitter(dsn, on_error=on_error)
    return StoreWriter(committer.location, committer=committer, **options)


async def test_copy_batches_land_exactly_with_units_late_flag_and_no_duplicate_trade(
    dsn: str,
) -> None:
    """Micro-units and the late flag are stored as given; a trade seen twice (in one batch and
    across batches) is stored once and counted once."""
    async with writer(dsn) as sink:
        await sink.put(tick(NOW + 1), NOW + 10)
        await sink.put(trade_frame("t1", market=MARKET, ts_ms=NOW + 2), NOW + 20, late=True)
        await sink.put(trade_frame("t1", market=MARKET, ts_ms=NOW + 2), NOW + 21)
        await sink.flush()
        await sink.put(trade_frame("t1", market=MARKET, ts_ms=NOW + 2), NOW + 22)
        await sink.put(delta(), NOW + 30)
        await sink.flush()
        assert dict(sink.stats.rows_written) == {"tickers": 1, "trades": 1, "orderbook_deltas": 1}
        assert sink.stats.batches == 2
    [ticked] = await fetch(dsn, "SELECT ts_ms, received_ms, price_e6, volume_e6 FROM tickers")
    assert tuple(ticked) == (NOW + 1, NOW + 10, 455_000, 12_500_000)
    [traded] = await fetch(dsn, "SELECT trade_id, yes_price_e6, count_e6, late FROM trades")
    assert tuple(traded) == ("t1", 360_000, 136_000_000, 1)
    assert len(await fetch(dsn, "SELECT batch_id FROM store_batches")) == 2


async def test_partitions_are_created_for_the_days_of_the_rows(dsn: str) -> None:
    """Rows of two past days land in those days' partitions, not in the default ones."""
    days = [NOW - 5 * DAY_MS, NOW - 3 * DAY_MS]
    async with writer(dsn) as sink:
        for n, ts in enumerate(days):
            await sink.put(tick(ts), NOW)
            await sink.put(trade_frame(f"t{n}", market=MARKET, ts_ms=ts), NOW)
    names = await tables(dsn)
    for ts in days:
        assert {
            partition_name("tickers", day_of(ts)),
            partition_name("trades", day_of(ts)),
        } <= names
    for table in ("tickers_default", "trades_default"):
        assert await fetch(dsn, f"SELECT 1 FROM {table}") == []
    found = await fetch(dsn, "SELECT tableoid::regclass::text FROM tickers ORDER BY ts_ms")
    assert [row[0] for row in found] == [partition_name("tickers", day_of(ts)) for ts in days]


async def test_maintain_makes_the_coming_days_and_drops_days_past_retention(dsn: str) -> None:
    """maintain(now, 30): today's and the next two days' partitions exist, days older than 30
    are dropped whole, old order-book rows are deleted; newer rows stay; 0 drops nothing."""
    old, recent = NOW - 40 * DAY_MS, NOW - DAY_MS
    async with writer(dsn) as sink:
        for n, ts in enumerate((old, recent)):
            await sink.put(tick(ts), ts)
            await sink.put(trade_frame(f"t{n}", market=MARKET, ts_ms=ts), ts)
            await sink.put(delta(), ts)
    backend = PostgresBackend(dsn)
    kept = await backend.maintain(NOW, 0)
    assert kept.dropped == () and not any(kept.deleted.values())
    done = await backend.maintain(NOW, 30)
    today = day_of(NOW)
    assert set(done.dropped) == {partition_name(t, day_of(old)) for t in ("tickers", "trades")}
    assert dict(done.deleted) == {"orderbook_deltas": 1, "orderbook_snapshots": 0}
    names = await tables(dsn)
    for day in range(today, today + 3):
        assert partition_name("tickers", day) in names and partition_name("trades", day) in names
    for table in ("tickers", "trades", "orderbook_deltas"):
        assert [row[0] for row in await fetch(dsn, f"SELECT ts_ms FROM {table}")] == [recent]
    assert (await backend.maintain(NOW, 30)).created == ()


async def test_two_backends_starting_together_migrate_once(postgres_server: str) -> None:
    """Two writers starting at once on an empty database: one migration, both running."""
    name = f"watcher_test_pg_twins_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        target = f"{postgres_server.rpartition('/')[0]}/{name}"
        sinks = [open_backend(target).tick_sink() for _ in range(2)]
        await asyncio.gather(*(sink.start() for sink in sinks))
        for sink in sinks:
            await sink.close()
        versions = await fetch(target, "SELECT version FROM watcher_schema ORDER BY version")
        assert [row[0] for row in versions] == [version for version, _ in MIGRATIONS]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_version_1_database_migrates_to_paper_fills(postgres_server: str) -> None:
    """A database at schema 1 (the previous watcher) gains paper_fills when the paper fills
    (or any other part) open it, its rows kept, and `watcher check` calls it current."""
    from watcher.store.describe import describe_database
    from watcher.store.records import PaperFill

    name = f"watcher_test_pg_v1_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        target = f"{postgres_server.rpartition('/')[0]}/{name}"
        conn = await asyncpg.connect(target)
        try:
            await conn.execute(MIGRATIONS[0][1])
            await conn.execute("INSERT INTO watcher_schema VALUES (1, 1)")
            await conn.execute("INSERT INTO service_state VALUES ('k', 'v', 1)")
        finally:
            await conn.close()
        assert (await describe_database(target)).version == 1
        fills = await open_backend(target).paper_fills()
        try:
            fill = PaperFill(
                "k", "p", MARKET, "NO", "sell", Decimal(3), Decimal("0.1234567"), Decimal(0), 1,
                "rule",
            )  # fmt: skip
            assert await fills.record(fill)
            assert await fills.recent() == [fill]
        finally:
            await fills.close()
        versions = await fetch(target, "SELECT version FROM watcher_schema ORDER BY version")
        assert [row[0] for row in versions] == [1, 2, 3, 4] and SCHEMA_VERSION == 4
        assert [tuple(r) for r in await fetch(target, "SELECT key FROM service_state")] == [("k",)]
        stored = await fetch(target, "SELECT price_e6, price_dollars FROM paper_fills")
        assert [tuple(r) for r in stored] == [(123_457, "0.1234567")]
        assert (await describe_database(target)).line.endswith("schema version 4 (current)")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_version_2_database_migrates_to_events(postgres_server: str) -> None:
    """A database at schema 2 (paper fills, no events) gains ``events`` when opened, its rows
    kept, and `watcher check` calls it current."""
    from watcher.store.describe import describe_database

    name = f"watcher_test_pg_v2_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        target = f"{postgres_server.rpartition('/')[0]}/{name}"
        conn = await asyncpg.connect(target)
        try:
            for _, script in MIGRATIONS[:2]:
                await conn.execute(script)
            await conn.execute("INSERT INTO watcher_schema VALUES (1, 1), (2, 1)")
            await conn.execute("INSERT INTO service_state VALUES ('k', 'v', 1)")
        finally:
            await conn.close()
        assert (await describe_database(target)).version == 2
        sink = open_backend(target).tick_sink()
        await sink.start()
        await sink.close()
        versions = await fetch(target, "SELECT version FROM watcher_schema ORDER BY version")
        assert [row[0] for row in versions] == [1, 2, 3, 4] and SCHEMA_VERSION == 4
        assert [tuple(r) for r in await fetch(target, "SELECT key FROM service_state")] == [("k",)]
        assert await fetch(target, "SELECT * FROM events") == []
        assert (await describe_database(target)).line.endswith("schema version 4 (current)")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_batch_whose_id_is_stored_is_not_written_again(dsn: str) -> None:
    """The retry of a batch whose COMMIT went through (its id is in store_batches) writes
    nothing: the exactly-once check itself."""
    committer = PostgresCommitter(dsn)
    await committer.open()
    try:
        batch = _Batch([("tickers", (MARKET, NOW, NOW, *[1] * 10))])
        assert await committer._attempt(batch) == {"tickers": 1}
        assert await committer._attempt(batch) == {"tickers": 1}
    finally:
        await committer.close()
    assert len(await fetch(dsn, "SELECT 1 FROM tickers")) == 1


async def kill_writer(dsn: str) -> int:
    found = await fetch(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = $1 AND datname = current_database()",
        APPLICATION_NAME,
    )
    return sum(1 for row in found if row[0])


async def test_a_killed_writer_connection_loses_no_row_and_writes_none_twice(dsn: str) -> None:
    """pg_terminate_backend of the writer's backend while rows stream in: the writer retries
    on a new connection, on_error hears it, and after a flush every tick and trade is stored
    exactly once."""
    errors: list[Exception] = []
    total, killed = 6000, 0
    async with writer(dsn, errors, batch_size=250, flush_interval=0.002) as sink:
        for n in range(total):
            await sink.put(tick(NOW + n), NOW)
            await sink.put(trade_frame(f"t{n}", market=MARKET, ts_ms=NOW + n), NOW)
            if n % 1500 == 750:
                await asyncio.sleep(5 * MS)  # let a batch be in flight
                killed += await kill_writer(dsn)
            elif n % 50 == 0:
                await asyncio.sleep(0)
        await sink.flush()
        assert sink.stats.errors >= 1 and sink.stats.queue_depth == 0
    assert killed >= 1 and errors
    assert all(isinstance(e, StorageError) for e in errors)
    ticks = [row[0] for row in await fetch(dsn, "SELECT ts_ms FROM tickers ORDER BY ts_ms")]
    assert ticks == [NOW + n for n in range(total)]
    trades = await fetch(dsn, "SELECT trade_id FROM trades")
    assert len(trades) == total and {row[0] for row in trades} == {f"t{n}" for n in range(total)}


async def test_connection_errors_name_the_masked_url_never_the_password() -> None:
    """An unreachable server is a StorageError with the URL's password masked."""
    backend = open_backend("postgresql://watcher:hunter22@127.0.0.1:1/watcher")
    assert isinstance(backend, PostgresBackend)
    assert backend.location == "postgresql://watcher:***@127.0.0.1:1/watcher"
    sink = backend.tick_sink()
    with pytest.raises(StorageError) as caught:
        await sink.start()
    assert "postgresql://watcher:***@127.0.0.1:1/watcher" in str(caught.value)
    assert "hunter22" not in str(caught.value) and "hunter22" not in repr(sink)
    reader = await backend.read_model()
    with pytest.raises(StorageError, match=r"\*\*\*"):
        await reader.service_state()
    await reader.close()
    assert isinstance(open_backend("postgres://h/db"), PostgresBackend)
