"""SQLite storage on real files: schema, migrations, the batched writer, queries, the seed API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, MS
from watcher.errors import StorageError
from watcher.kalshi.messages import (
    Message,
    RestMarket,
    Ticker,
    TickerMsg,
    Trade,
    UnknownMessage,
    decode_message,
)
from watcher.store import (
    SCHEMA_VERSION,
    MarketRow,
    SQLiteStorage,
    StoreWriter,
    WriterState,
    count_rows,
    get_market,
    iter_ticks,
    iter_trades,
    latest_ticker,
    open_database,
    service_state,
    tick_history,
    trade_history,
)
from watcher.store.queries import decimal_text
from watcher.store.records import PaperFill
from watcher.store.schema import MIGRATIONS, TABLES, row_for, split_statements
from watcher.store.writer import (
    DEFAULT_BATCH_SIZE,
    STORED_TYPES,
    WRITER_CACHE_KIB,
    retry_delays,
)

from .support import trade_frame

KALSHI = FIXTURES / "kalshi"
MARKET = "KXTEST-26JAN-T50"
TIMEOUT = 10_000 * MS

# A determined lifecycle frame (not among the published examples), for settlement_value.
DETERMINED = (
    '{"type": "market_lifecycle_v2", "sid": 13, "seq": 9, "msg": {"market_ticker": "KXA",'
    ' "event_type": "determined", "result": "yes", "settlement_value": "1.0000",'
    ' "determination_ts": 1694721700}}'
)


# Helpers and fixtures


def make_ticker(n: int = 0, *, market: str = MARKET, price: str = "0.45") -> Ticker:
    return Ticker(
        sid=1,
        msg=TickerMsg(
            market_ticker=market,
            price_dollars=Decimal(price),
            yes_bid_dollars=Decimal(price),
            yes_ask_dollars=Decimal("0.55"),
            volume_fp=Decimal(n),
            ts_ms=1_700_000_000_000 + n,
        ),
    )


def make_trade(trade_id: str, *, market: str = MARKET, ts_ms: int = 1_700_000_000_000) -> Trade:
    return trade_frame(trade_id, market=market, ts_ms=ts_ms)


def load(name: str) -> Message | UnknownMessage:
    return decode_message((KALSHI / name).read_bytes())


def frame_fixtures() -> list[Path]:
    found = []
    for path in sorted(KALSHI.rglob("*.json")):
        obj = json.loads(path.read_text())
        if isinstance(obj, dict) and isinstance(obj.get("type"), str):
            found.append(path)
    return found


def fetch(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = open_database(db, readonly=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def columns(db: Path, table: str) -> dict[str, object]:
    conn = open_database(db, readonly=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        conn.close()
    assert len(rows) == 1, rows
    return dict(rows[0])


async def wait_until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not predicate():  # noqa: ASYNC110 - polls another connection's view of the file
            await asyncio.sleep(5 * MS)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "watcher.db"


@pytest.fixture
def reader(db: Path) -> Iterator[Callable[[], sqlite3.Connection]]:
    """A lazily opened read-only connection, closed after the test."""
    opened: list[sqlite3.Connection] = []

    def get() -> sqlite3.Connection:
        if not opened:
            opened.append(open_database(db, readonly=True))
        return opened[0]

    yield get
    for conn in opened:
        conn.close()


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Hold the database's write lock from another connection."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


# Schema and open_database


def test_new_database_has_every_table_at_the_current_schema_version(db):
    """A new database is created with all tables and user_version = SCHEMA_VERSION."""
    conn = open_database(db)
    try:
        names = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert names == set(TABLES)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_writer_connection_uses_wal_normal_sync_busy_timeout_and_foreign_keys(db):
    """The writer connection is WAL, synchronous=NORMAL, busy_timeout=5000, foreign keys on."""
    conn = open_database(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        conn.close()


def test_new_database_and_its_wal_are_private_to_the_user(db):
    """The database file is created with mode 0600, and SQLite's WAL file inherits it."""
    conn = open_database(db)
    try:
        conn.execute("INSERT INTO service_state VALUES ('k', 'v', 1)")
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(f"{db}-wal").st_mode) == 0o600
    finally:
        conn.close()


def test_opening_twice_migrates_once_and_keeps_data(db):
    """Migration is idempotent: a second open changes neither the schema nor the data."""
    conn = open_database(db)
    conn.execute("INSERT INTO service_state VALUES ('k', 'v', 1)")
    schema = conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    conn.close()
    conn = open_database(db)
    try:
        assert conn.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
        assert conn.execute("SELECT value FROM service_state").fetchall() == [("v",)]
    finally:
        conn.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_database_from_a_newer_watcher_is_refused_with_its_version(db, readonly):
    """A schema version above SCHEMA_VERSION is a StorageError naming the file and version."""
    open_database(db).close()
    raw = sqlite3.connect(db)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 98}")
    raw.close()
    with pytest.raises(StorageError) as caught:
        open_database(db, readonly=readonly)
    message = str(caught.value)
    assert str(db) in message
    assert f"schema version {SCHEMA_VERSION + 98}, newer than" in message


def test_a_version_1_database_migrates_to_paper_fills_keeping_its_rows(db):
    """A file written by the previous watcher (schema 1) gains paper_fills on open, in place,
    its rows kept; a read-only opener refuses it until then."""
    db.parent.mkdir()
    raw = sqlite3.connect(db, isolation_level=None)
    for statement in split_statements(MIGRATIONS[0][1]):
        raw.execute(statement)
    raw.execute("PRAGMA user_version = 1")
    raw.execute("INSERT INTO service_state VALUES ('k', 'v', 1)")
    raw.close()
    with pytest.raises(StorageError, match="schema version 1, older than 4"):
        open_database(db, readonly=True)
    conn = open_database(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"paper_fills", "paper_fills_ticker_ts", "events"} <= names
        assert conn.execute("SELECT value FROM service_state").fetchall() == [("v",)]
    finally:
        conn.close()


def test_a_version_2_database_migrates_to_events_keeping_its_rows(db):
    """A schema-2 file (paper fills, no events) gains ``events`` on open, its rows kept; a
    read-only opener refuses it until then."""
    db.parent.mkdir()
    raw = sqlite3.connect(db, isolation_level=None)
    for _, script in MIGRATIONS[:2]:
        for statement in split_statements(script):
            raw.execute(statement)
    raw.execute("PRAGMA user_version = 2")
    raw.execute("INSERT INTO service_state VALUES ('k', 'v', 1)")
    raw.close()
    with pytest.raises(StorageError, match="schema version 2, older than 4"):
        open_database(db, readonly=True)
    conn = open_database(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        conn.execute("INSERT INTO events VALUES ('KXE', '{}', 1)")
        conn.execute(
            "INSERT INTO events VALUES ('KXE', '{\"a\":1}', 2) ON CONFLICT (event_ticker)"
            " DO UPDATE SET info = excluded.info, updated_ms = excluded.updated_ms"
        )
        assert conn.execute("SELECT * FROM events").fetchall() == [("KXE", '{"a":1}', 2)]
        assert conn.execute("SELECT value FROM service_state").fetchall() == [("v",)]
    finally:
        conn.close()


def paper_fill(**kw: object) -> PaperFill:
    fields: dict[str, object] = {
        "fill_key": "k", "position_id": "p", "ticker": "KX", "side": "YES", "action": "buy",
        "contracts": Decimal(5), "price_dollars": Decimal("0.45"), "fee_dollars": Decimal("0.07"),
        "ts_ms": 1, "source": "cli",
    }  # fmt: skip
    fields.update(kw)
    return PaperFill(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"contracts": Decimal("1.0000001")}, ValueError, "more than 6 decimals"),
        ({"contracts": Decimal(0)}, ValueError, "contracts must be positive"),
        ({"price_dollars": Decimal(45)}, ValueError, "between 0 and 1"),
        ({"fee_dollars": Decimal("-0.01")}, ValueError, "fee_dollars must not be negative"),
        ({"side": "yes"}, ValueError, "side must be one of YES NO"),
        ({"action": "close"}, ValueError, "action must be one of buy sell"),
        ({"source": "paper"}, ValueError, "source must be one of cli rule web chat"),
        ({"fill_key": ""}, ValueError, "fill_key must be a non-empty string"),
        ({"price_dollars": 0.45}, TypeError, "price_dollars must be a Decimal, not float"),
        ({"price_dollars": Decimal("NaN")}, ValueError, "finite"),
        ({"ts_ms": 1.5}, TypeError, "ts_ms must be an int"),
    ],
)
def test_a_paper_fill_the_store_cannot_keep_exactly_is_refused(change, error, message):
    """Too many contract decimals, out-of-range amounts, unknown words and floats: refused
    when the value is built, with the field named."""
    with pytest.raises(error, match=message):
        paper_fill(**change)


def test_a_paper_fill_takes_ints_and_renders_exact_json():
    """An int amount becomes a Decimal; to_json gives exact decimal strings."""
    built = paper_fill(contracts=7, price_dollars=Decimal("0.4533333"))
    assert built.contracts == Decimal(7) and built.contracts_e6 == 7_000_000
    assert built.to_json() == {
        "fill_key": "k", "position_id": "p", "ticker": "KX", "side": "YES", "action": "buy",
        "contracts": "7", "price_dollars": "0.4533333", "fee_dollars": "0.07", "ts_ms": 1,
        "source": "cli",
    }  # fmt: skip


def test_file_that_is_not_a_database_is_refused_with_its_path(db):
    """A file that is not SQLite is a StorageError naming the path and the reason."""
    db.parent.mkdir()
    db.write_bytes(b"this is not a database, just forty-odd bytes of text" * 4)
    with pytest.raises(StorageError, match="not a database") as caught:
        open_database(db)
    assert str(db) in str(caught.value)


def test_unwritable_path_is_refused_with_its_path(tmp_path):
    """A path that cannot be created (its parent is a file) is a StorageError naming it."""
    (tmp_path / "plain-file").write_text("x")
    target = tmp_path / "plain-file" / "watcher.db"
    with pytest.raises(StorageError, match="cannot create database") as caught:
        open_database(target)
    assert str(target) in str(caught.value)


def test_readonly_open_of_a_missing_file_does_not_create_it(db):
    """Readers never create a database: a missing file is a StorageError."""
    with pytest.raises(StorageError, match="no such file"):
        open_database(db, readonly=True)
    assert not db.exists()


def test_readonly_connection_cannot_write(db, reader):
    """A read-only connection refuses writes."""
    open_database(db).close()
    with pytest.raises(sqlite3.OperationalError):
        reader().execute("INSERT INTO service_state VALUES ('k', 'v', 1)")


def test_split_statements_keeps_comments_and_splits_on_complete_statements():
    """Migration scripts split into complete statements, comments included."""
    script = "CREATE TABLE a (x);  -- a; b\nCREATE TABLE b (y,\n  z);\n"
    assert split_statements(script) == ["CREATE TABLE a (x);  -- a; b", "CREATE TABLE b (y,\n  z);"]


# Frames to rows (pure)


@pytest.mark.parametrize(
    ("name", "table", "expected"),
    [
        ("ticker.json", "tickers", {
            "market_ticker": "FED-23DEC-T3.00", "ts_ms": 1669149841000, "price_e6": 480000,
            "yes_bid_e6": 450000, "yes_ask_e6": 530000, "yes_bid_size_e6": 300_000_000,
            "yes_ask_size_e6": 150_000_000, "last_trade_size_e6": 25_000_000,
            "volume_e6": 33_896_000_000, "open_interest_e6": 20_422_000_000,
            "dollar_volume": 16948, "dollar_open_interest": 10211}),
        ("2026-08/ticker.json", "tickers", {"price_e6": 480000, "yes_bid_e6": 450000}),
        ("trade.json", "trades", {
            "trade_id": "d91bc706-ee49-470d-82d8-11418bda6fed", "ts_ms": 1669149841000,
            "market_ticker": "HIGHNY-22DEC23-B53.5", "yes_price_e6": 360000,
            "no_price_e6": 640000, "count_e6": 136_000_000, "taker_side": "no",
            "is_block_trade": 0, "late": 0}),
        ("orderbook_snapshot.json", "orderbook_snapshots", {
            "ts_ms": 1669149841234, "seq": 2,
            "yes_levels": "[[80000,300000000],[220000,333000000]]",
            "no_levels": "[[540000,20000000],[560000,146000000]]"}),
        ("orderbook_delta.json", "orderbook_deltas", {
            "ts_ms": 1669149841000, "seq": 3, "side": "yes", "price_e6": 960000,
            "delta_e6": -54_000_000}),
        ("fill.json", "fills", {
            "order_id": "ee587a1c-8b87-4dcf-b721-9f6f790619fa", "ts_ms": 1671899397000,
            "side": "yes", "yes_price_e6": 750000, "count_e6": 278_000_000, "fee_e6": 10000,
            "is_taker": 1, "action": "buy"}),
        ("market_lifecycle_v2_created.json", "lifecycle_events", {
            "market_ticker": "INXD-23SEP14-B4487", "ts_ms": 1669149841234,
            "event_type": "created", "result": None, "settlement_value_e6": None}),
    ],
)  # fmt: skip
async def test_published_frame_is_stored_with_exact_e6_values(db, name, table, expected):
    """Kalshi's example frames land in their table with exact integer micro-units."""
    async with StoreWriter(db) as writer:
        await writer.put(load(name), 1_700_000_000_000)
    row = columns(db, table)
    assert {key: row[key] for key in expected} == expected
    assert row["received_ms"] == 1_700_000_000_000


async def test_lifecycle_event_keeps_result_settlement_value_and_raw_frame(db):
    """A determined event stores result, settlement_value_e6 and the raw frame as JSON."""
    async with StoreWriter(db) as writer:
        await writer.put(decode_message(DETERMINED), 5)
    row = columns(db, "lifecycle_events")
    assert (row["result"], row["settlement_value_e6"], row["ts_ms"]) == ("yes", 1_000_000, 5)
    assert json.loads(str(row["raw"]))["msg"]["settlement_value"] == "1.0000"


@pytest.mark.parametrize("path", frame_fixtures(), ids=lambda p: str(p.relative_to(KALSHI)))
async def test_every_published_frame_is_stored_once_or_ignored(db, reader, path):
    """Stored frame types give exactly one row; every other type is ignored without error."""
    frame = decode_message(path.read_bytes())
    async with StoreWriter(db) as writer:
        await writer.put(frame, 1)
        await writer.flush()
        stats = writer.stats
    total = sum(count_rows(reader(), table) for table in TABLES)
    assert total == (1 if isinstance(frame, STORED_TYPES) else 0)
    assert (stats.rejected, stats.errors) == (0, 0)


@pytest.mark.parametrize(
    ("ts_ms", "ts", "sending_ts_ms", "expected"),
    [
        (1_000_123, 7, 9_999, 1_000_123),  # ts_ms wins
        (None, 7, 9_999, 7_000),  # else deprecated ts seconds
        (None, None, 9_999, 9_999),  # else the envelope's sending_ts_ms
        (None, None, None, 42),  # else received_ms
    ],
)
def test_row_timestamp_falls_back_from_ts_ms_to_ts_to_sending_ts_to_received(
    ts_ms, ts, sending_ts_ms, expected
):
    """ts_ms = msg.ts_ms, else ts*1000, else sending_ts_ms, else received_ms."""
    base = make_ticker()
    frame = Ticker(
        sid=1,
        sending_ts_ms=sending_ts_ms,
        msg=TickerMsg(
            market_ticker=MARKET,
            price_dollars=base.msg.price_dollars,
            yes_bid_dollars=base.msg.yes_bid_dollars,
            yes_ask_dollars=base.msg.yes_ask_dollars,
            ts_ms=ts_ms,
            ts=ts,
        ),
    )
    table, row = row_for(frame, 42)
    assert (table, row[1], row[2]) == ("tickers", expected, 42)


def test_row_for_refuses_inexact_prices():
    """A price with more than 6 decimals cannot be stored exactly and is refused."""
    with pytest.raises(ValueError, match="decimals"):
        row_for(make_ticker(price="0.4500001"), 1)


def test_retry_delays_double_from_half_a_second_up_to_ten():
    """Failed writes are retried after 0.5 s, doubling, capped at 10 s."""
    delays = retry_delays()
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


# The writer


async def test_trades_and_fills_are_deduplicated_by_trade_id(db, reader):
    """A trade_id is stored once, whether repeated in one batch or across batches."""
    fill = load("fill.json")
    async with StoreWriter(db) as writer:
        await writer.put(make_trade("t-1"), 1)
        await writer.put(make_trade("t-1"), 2)
        await writer.put(fill, 1)
        await writer.flush()
        await writer.put(make_trade("t-1"), 3)
        await writer.put(make_trade("t-2"), 3)
        await writer.put(fill, 2)
        await writer.flush()
        assert writer.stats.rows_written == {"trades": 2, "fills": 1}
    assert fetch(db, "SELECT trade_id, received_ms FROM trades ORDER BY id") == [
        ("t-1", 1),
        ("t-2", 3),
    ]
    assert count_rows(reader(), "fills") == 1


async def test_backfilled_trade_is_marked_late(db, reader):
    """put(..., late=True) stores late = 1; a live trade stores late = 0."""
    async with StoreWriter(db) as writer:
        await writer.put(make_trade("live"), 1)
        await writer.put(make_trade("backfilled"), 1, late=True)
    late = {row.trade_id: row.late for row in trade_history(reader(), MARKET)}
    assert late == {"live": False, "backfilled": True}


async def test_batch_is_written_when_batch_size_items_wait(db, reader):
    """batch_size waiting items are committed without waiting for the interval."""
    async with StoreWriter(db, batch_size=10, flush_interval=3600) as writer:
        for n in range(10):
            await writer.put(make_ticker(n), 1)
        # The stats are updated after the commit returns, so wait on them, not on the rows.
        await wait_until(lambda: writer.stats.batches == 1)
        assert count_rows(reader(), "tickers") == 10


async def test_batch_is_written_flush_interval_after_the_first_item(db, reader):
    """Fewer than batch_size items are committed once flush_interval has passed."""
    async with StoreWriter(db, batch_size=1000, flush_interval=20 * MS) as writer:
        for n in range(3):
            await writer.put(make_ticker(n), 1)
        # The stats are updated after the commit returns, so wait on them, not on the rows.
        await wait_until(lambda: writer.stats.last_flush_ms is not None)
        assert count_rows(reader(), "tickers") == 3
        assert writer.stats.queue_depth == 0
        assert writer.stats.batches == 1


async def test_flush_commits_everything_put_so_far(db, reader):
    """After flush() returns, a separate read-only connection sees every row."""
    async with StoreWriter(db, flush_interval=3600) as writer:
        for n in range(5):
            await writer.put(make_ticker(n), 1)
        await writer.flush()
        assert count_rows(reader(), "tickers") == 5
        await writer.flush()  # nothing pending: returns at once


async def test_close_drains_fifty_thousand_queued_ticks_without_loss(db, reader):
    """close() writes every queued tick before it returns."""
    writer = StoreWriter(db, queue_size=50_000, flush_interval=3600)
    await writer.start()
    for n in range(50_000):
        assert writer.put_nowait(make_ticker(n), n)
    assert writer.stats.queue_depth == 50_000
    await writer.close()
    assert count_rows(reader(), "tickers") == 50_000
    assert writer.stats.rows_written == {"tickers": 50_000}
    assert fetch(db, "SELECT count(DISTINCT received_ms) FROM tickers") == [(50_000,)]


async def test_full_queue_makes_put_wait_and_drops_nothing(db, reader):
    """The queue is bounded: put waits while it is full, put_nowait says False; no loss."""
    writer = StoreWriter(db, queue_size=3, batch_size=2, flush_interval=3600)
    await writer.start()
    try:
        with write_lock(db):
            await writer.put(make_ticker(0), 0)
            await writer.put(make_ticker(1), 1)  # a full batch: the writer takes it to the lock
            await wait_until(lambda: writer.stats.queue_depth == 0)
            for n in (2, 3, 4):
                await writer.put(make_ticker(n), n)
            assert writer.stats.queue_depth == 3
            assert writer.put_nowait(make_ticker(5), 5) is False
            blocked = asyncio.create_task(writer.put(make_ticker(6), 6))
            done, _ = await asyncio.wait({blocked}, timeout=50 * MS)
            assert not done, "put must wait while the queue is full"
        await blocked
    finally:
        await writer.close()
    rows = fetch(db, "SELECT received_ms FROM tickers ORDER BY id")
    assert rows == [(0,), (1,), (2,), (3,), (4,), (6,)]


async def test_default_queue_holds_one_batch_besides_the_one_being_written(db, reader):
    """By default the queue takes one batch (the batch being written has left it): the next
    put_nowait is refused, put waits, and nothing is lost."""
    writer = StoreWriter(db, flush_interval=3600)
    await writer.start()
    try:
        for n in range(DEFAULT_BATCH_SIZE):
            assert writer.put_nowait(make_ticker(n), n)
        assert writer.put_nowait(make_ticker(-1), -1) is False
        await writer.put(make_ticker(DEFAULT_BATCH_SIZE), DEFAULT_BATCH_SIZE)
    finally:
        await writer.close()
    assert count_rows(reader(), "tickers") == DEFAULT_BATCH_SIZE + 1


async def test_writer_connection_keeps_a_small_page_cache(db):
    """The writer's connection caps SQLite's page cache at WRITER_CACHE_KIB (issue 5: RSS)."""
    async with StoreWriter(db) as writer:
        conn = writer._thread.conn
        assert conn is not None
        cache = await writer._thread.call(lambda: conn.execute("PRAGMA cache_size").fetchone()[0])
    assert cache == -WRITER_CACHE_KIB


async def test_locked_database_is_retried_until_the_rows_are_written(db, reader, caplog):
    """A write that fails (lock held too long) keeps its rows, reports, retries, recovers."""
    errors: list[Exception] = []
    reported = asyncio.Event()

    def on_error(exc: Exception) -> None:
        errors.append(exc)
        reported.set()

    caplog.set_level(logging.INFO, logger="watcher.store")
    async with StoreWriter(db, on_error=on_error, busy_timeout_ms=10, flush_interval=0) as writer:
        with write_lock(db):
            await writer.put(make_ticker(1), 1)
            await writer.put(make_trade("t-1"), 1)
            async with asyncio.timeout(TIMEOUT):
                await reported.wait()
        await writer.flush()
        assert writer.stats.errors >= 1
    assert count_rows(reader(), "tickers") == 1
    assert count_rows(reader(), "trades") == 1
    assert isinstance(errors[0], StorageError)
    assert "database is locked" in str(errors[0]) and str(db) in str(errors[0])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per failure streak"
    assert any("recovered after" in r.getMessage() for r in caplog.records)


async def test_write_failing_inside_the_transaction_is_rolled_back_and_retried(db, reader):
    """A batch that fails half-way commits nothing, then is written whole on retry."""
    open_database(db).close()
    saboteur = sqlite3.connect(db, isolation_level=None)
    saboteur.execute(
        "CREATE TRIGGER fail BEFORE INSERT ON trades BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    failed = asyncio.Event()
    try:
        async with StoreWriter(db, on_error=lambda exc: failed.set(), flush_interval=0) as writer:
            await writer.put(make_ticker(1), 1)
            await writer.put(make_trade("t-1"), 1)
            async with asyncio.timeout(TIMEOUT):
                await failed.wait()
            assert count_rows(reader(), "tickers") == 0, "nothing of a failed batch is visible"
            saboteur.execute("DROP TRIGGER fail")
            await writer.flush()
    finally:
        saboteur.close()
    assert (count_rows(reader(), "tickers"), count_rows(reader(), "trades")) == (1, 1)


async def test_frame_that_cannot_be_stored_exactly_is_rejected_alone(db, reader, caplog):
    """An inexact price is logged and counted as rejected; the rest of the batch is stored."""
    async with StoreWriter(db) as writer:
        await writer.put(make_ticker(1, price="0.4500001"), 1)
        await writer.put(make_ticker(2), 2)
        await writer.flush()
        assert (writer.stats.rejected, writer.stats.errors) == (1, 0)
    assert fetch(db, "SELECT received_ms FROM tickers") == [(2,)]
    assert "cannot store Ticker frame" in caplog.text


async def test_close_can_be_bounded_by_cancelling_it(db, caplog):
    """Cancelling close() while writes keep failing stops the writer and logs the loss."""
    writer = StoreWriter(db, busy_timeout_ms=10)
    await writer.start()
    with write_lock(db):
        await writer.put(make_ticker(1), 1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(100 * MS):
                await writer.close()
    assert writer.state is WriterState.CLOSED
    assert "stopped with 1 items unwritten" in caplog.text


async def test_writer_refuses_use_outside_its_lifetime(db):
    """put before start or after close, and flush before start, raise StorageError."""
    writer = StoreWriter(db)
    with pytest.raises(StorageError, match="new"):
        await writer.put(make_ticker(), 1)
    with pytest.raises(StorageError, match="not started"):
        await writer.flush()
    async with writer:
        assert writer.state is WriterState.RUNNING
    await writer.close()  # idempotent
    assert writer.state.value == "closed"
    with pytest.raises(StorageError, match="closed"):
        writer.put_nowait(make_ticker(), 1)


async def test_writer_start_on_an_unwritable_path_raises_storage_error(tmp_path):
    """start() reports an unusable database path as StorageError and the writer stays new."""
    (tmp_path / "file").write_text("x")
    writer = StoreWriter(tmp_path / "file" / "watcher.db")
    with pytest.raises(StorageError, match="cannot create database"):
        await writer.start()
    assert writer.state is WriterState.NEW
    await writer.close()


async def test_frames_that_are_not_stored_are_ignored(db, reader):
    """Subscribed, ok, error and unknown frames are accepted and write nothing."""
    async with StoreWriter(db) as writer:
        await writer.put(load("subscribed.json"), 1)
        assert writer.put_nowait(load("error.json"), 1)
        await writer.flush()
        assert writer.stats.queue_depth == 0
    assert sum(count_rows(reader(), table) for table in TABLES) == 0


async def test_market_upsert_keeps_known_fields_and_service_state_overwrites(db, reader):
    """Market metadata None fields keep stored values; service_state keeps the last value."""
    async with StoreWriter(db) as writer:
        await writer.write_market(MarketRow(MARKET, title="CPI", status="active", updated_ms=1))
        await writer.upsert_markets(
            [MarketRow(MARKET, status="determined", result="yes", updated_ms=2)]
        )
        await writer.set_service_state("feed", "connected", updated_ms=1)
        await writer.set_service_state("feed", "reconnecting", updated_ms=2)
    assert get_market(reader(), MARKET) == MarketRow(
        MARKET, title="CPI", status="determined", result="yes", updated_ms=2
    )
    assert get_market(reader(), "NOPE") is None
    assert service_state(reader()) == {"feed": "reconnecting"}


async def test_writer_repr_and_stats_describe_it(db):
    """repr names the path, state and counters; stats is a snapshot."""
    async with StoreWriter(db) as writer:
        await writer.put(make_ticker(), 1)
        await writer.flush()
        text = repr(writer)
    assert str(db) in text and "running" in text and "rows=1" in text
    assert writer.stats.rows_written["tickers"] == 1
    with pytest.raises(TypeError):
        writer.stats.rows_written["tickers"] = 2  # type: ignore[index]


def test_writer_rejects_nonsense_sizes(db):
    """batch_size and queue_size below 1 and a negative interval are refused at once."""
    for kwargs in ({"batch_size": 0}, {"queue_size": 0}, {"flush_interval": -1}):
        with pytest.raises(ValueError, match="but got"):
            StoreWriter(db, **kwargs)  # type: ignore[arg-type]


# Queries


@pytest.fixture
async def history(db: Path) -> Path:
    async with StoreWriter(db) as writer:
        for n in range(5):
            await writer.put(make_ticker(n * 10), n)
            await writer.put(make_trade(f"t-{n}", ts_ms=1_700_000_000_000 + n * 10), n)
        await writer.put(make_ticker(15, market="OTHER"), 9)
    return db


async def test_tick_history_is_newest_first_with_since_and_limit(history, reader):
    """tick_history returns a market's ticks newest first, from since_ms, at most limit."""
    conn = reader()
    assert [r.volume_e6 for r in tick_history(conn, MARKET)] == [
        n * 1_000_000 for n in (40, 30, 20, 10, 0)
    ]
    since = tick_history(conn, MARKET, since_ms=1_700_000_000_020, limit=2)
    assert [r.ts_ms for r in since] == [1_700_000_000_040, 1_700_000_000_030]
    latest = latest_ticker(conn, MARKET)
    assert latest is not None and latest.ts_ms == 1_700_000_000_040
    assert latest_ticker(conn, "NOPE") is None


async def test_trade_history_is_newest_first(history, reader):
    """trade_history returns a market's trades newest first."""
    trades = trade_history(reader(), MARKET, since_ms=1_700_000_000_010, limit=10)
    assert [t.trade_id for t in trades] == ["t-4", "t-3", "t-2", "t-1"]


async def test_iter_ticks_replays_in_time_order_within_range_and_markets(history, reader):
    """iter_ticks yields ticks in ts order, since inclusive, until exclusive, chosen markets."""
    conn = reader()
    every = [(r.market_ticker, r.ts_ms - 1_700_000_000_000) for r in iter_ticks(conn)]
    assert every == [(MARKET, 0), (MARKET, 10), ("OTHER", 15), (MARKET, 20), (MARKET, 30),
                     (MARKET, 40)]  # fmt: skip
    some = iter_ticks(
        conn, since_ms=1_700_000_000_010, until_ms=1_700_000_000_030, markets=["OTHER"]
    )
    assert [r.ts_ms for r in some] == [1_700_000_000_015]
    trades = iter_trades(conn, until_ms=1_700_000_000_020, markets=[MARKET])
    assert [t.trade_id for t in trades] == ["t-0", "t-1"]


def test_count_rows_refuses_unknown_tables(db, reader):
    """count_rows only accepts tables of the schema (no SQL injection through it)."""
    open_database(db).close()
    with pytest.raises(ValueError, match="unknown table"):
        count_rows(reader(), "tickers; DROP TABLE trades")


async def test_rows_render_dollars_and_contracts_as_exact_decimal_strings(history, reader):
    """to_json renders micro-units as exact decimal strings, never floats."""
    tick = latest_ticker(reader(), MARKET)
    assert tick is not None
    doc = tick.to_json()
    assert (doc["price_dollars"], doc["yes_ask_dollars"], doc["volume"]) == (
        "0.45",
        "0.55",
        "40.00",
    )
    assert doc["yes_bid_size"] is None
    trade = trade_history(reader(), MARKET, limit=1)[0].to_json()
    assert (trade["yes_price_dollars"], trade["count"], trade["late"]) == ("0.36", "136.00", False)
    assert json.loads(json.dumps(doc)) == doc


@pytest.mark.parametrize(
    ("micros", "text"),
    [(450_000, "0.45"), (455_000, "0.455"), (1, "0.000001"), (136_000_000, "136.00"),
     (-54_000_000, "-54.00"), (0, "0.00"), (None, None)],
)  # fmt: skip
def test_decimal_text_is_exact_with_at_least_two_places(micros, text):
    """Micro-units render exactly, with at least two decimals."""
    assert decimal_text(micros) == text


def test_market_row_from_rest_converts_close_time_to_milliseconds():
    """A REST market's RFC 3339 close_time becomes Unix milliseconds; empty result is None."""
    market = RestMarket(ticker=MARKET, title="CPI", status="active",
                        close_time="2026-01-30T15:00:00.250Z", result="")  # fmt: skip
    row = MarketRow.from_rest(market, updated_ms=7)
    assert row == MarketRow(MARKET, "CPI", "active", 1_769_785_200_250, None, 7)
    assert row.to_json()["close_time_ms"] == 1_769_785_200_250


# The seed API


async def test_sqlite_storage_round_trips_the_seed_api(tmp_path):
    """connect, save, get_latest_ticker (Decimal dollars), get_trade_history, close."""
    storage = SQLiteStorage(str(tmp_path / "data" / "kalshi.db"))
    await storage.connect()
    try:
        assert await storage.get_latest_ticker("FED-23DEC-T3.00") is None
        await storage.save(load("ticker.json"), 1_700_000_000_000)
        await storage.save(load("trade.json"))
        await storage.save(load("subscribed.json"))
        latest = await storage.get_latest_ticker("FED-23DEC-T3.00")
        trades = await storage.get_trade_history("HIGHNY-22DEC23-B53.5", limit=5)
        assert "kalshi.db" in repr(storage)
    finally:
        await storage.close()
    await storage.close()
    assert latest == {
        "market_ticker": "FED-23DEC-T3.00",
        "ts_ms": 1669149841000,
        "price": Decimal("0.48"),
        "yes_bid": Decimal("0.45"),
        "yes_ask": Decimal("0.53"),
        "volume": Decimal("33896"),
        "open_interest": Decimal("20422"),
    }
    assert [(t["trade_id"], t["yes_price"], t["count"]) for t in trades] == [
        ("d91bc706-ee49-470d-82d8-11418bda6fed", Decimal("0.36"), Decimal("136"))
    ]


async def test_sqlite_storage_must_be_connected_first(tmp_path):
    """Using SQLiteStorage before connect() is a StorageError that says what to do."""
    storage = SQLiteStorage(str(tmp_path / "kalshi.db"))
    with pytest.raises(StorageError, match="call connect"):
        await storage.save(load("ticker.json"))
    with pytest.raises(StorageError, match="call connect"):
        await storage.get_latest_ticker("X")


async def test_market_written_without_updated_ms_is_stamped_now(db, reader):
    """A MarketRow left at updated_ms=0 is stored with the time of writing."""
    async with StoreWriter(db) as writer:
        await writer.write_market(MarketRow("KXA", status="active"))
    market = get_market(reader(), "KXA")
    assert market is not None and market.updated_ms > 1_700_000_000_000
