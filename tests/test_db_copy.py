"""`watcher db copy`: a real SQLite history moved into a real PostgreSQL database, exactly,
re-runnable and resumable."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import FIXTURES
from watcher.cli import main
from watcher.domain.controls import Mute, Pause
from watcher.domain.event import EventInfo, EventMarket
from watcher.kalshi.messages import Ticker, TickerMsg, decode_message
from watcher.notify.outbox import Outbox
from watcher.store import MarketRow, StoreWriter, open_backend
from watcher.store.pg.copy import TABLES, HistoryCopy
from watcher.store.records import PaperFill

from .support import alert_for, trade_frame

DAY0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = DAY0 + 86_400_000 + 3_600_000
MARKET = "KXTEST-26JAN-T50"
#: Each table's columns in a stable order for comparing whole rows.
ORDER = {
    "markets": "market_ticker",
    "alert_deliveries": "alert_id, target",
    "rule_state": "rule, scope",
    "service_state": "key",
    "events": "event_ticker",
    "mutes": "target_key",
}
#: The stored event expansion of the history.
EVENT = EventInfo(
    "KXTEST-26JAN", "KXTEST", "Test", True,
    (EventMarket(MARKET, "greater", Decimal("50.25"), None, NOW, "active"), EventMarket("B")),
)  # fmt: skip
DETERMINED = (
    '{"type": "market_lifecycle_v2", "sid": 13, "seq": 9, "msg": {"market_ticker": "KXA",'
    ' "event_type": "determined", "result": "yes", "settlement_value": "1.0000",'
    ' "determination_ts": 1694721700}}'
)


def ticker(n: int) -> Ticker:
    """Tick n, every 10 minutes from DAY0 - 2h: the ticks span three UTC days."""
    return Ticker(
        sid=1,
        msg=TickerMsg(
            market_ticker=MARKET,
            price_dollars=Decimal("0.4512"),
            yes_bid_dollars=Decimal("0.45"),
            yes_ask_dollars=Decimal("0.4575"),
            volume_fp=Decimal(n) + Decimal("0.25"),
            ts_ms=DAY0 - 7_200_000 + n * 600_000,
        ),
    )


async def write_history(db: Path, ticks: int = 300) -> None:
    """A history as `watcher start` writes it: the StoreWriter and the Outbox."""
    async with StoreWriter(db, batch_size=50) as writer:
        for n in range(ticks):
            await writer.put(ticker(n), DAY0 + n)
            if n % 7 == 0:
                await writer.put(trade_frame(f"t-{n}", market=MARKET, ts_ms=DAY0 + n * 1000), n)
        await writer.put(trade_frame("late-1", market=MARKET, ts_ms=DAY0 - 5), 9, late=True)
        for name in ("orderbook_snapshot.json", "orderbook_delta.json", "fill.json"):
            await writer.put(decode_message((FIXTURES / "kalshi" / name).read_bytes()), NOW)
        await writer.put(decode_message(DETERMINED), NOW)
        await writer.write_market(MarketRow(MARKET, title="Test", status="open", updated_ms=NOW))
        await writer.set_service_state("feed", '{"connected": true}', updated_ms=NOW)
        await writer.write_events([EVENT])
    with Outbox(db) as box:
        box.record(
            [
                alert_for(1, ("phone", "team"), now=NOW),
                alert_for(2, (), now=NOW),
                alert_for(3, ("phone",), now=NOW, suppressed=True, suppressed_reason="quiet hours"),
                alert_for(4, ("team",), now=NOW),
            ],
            {("tight spread", "KXTEST-1"): '{"armed": false}'},
            now_ms=NOW,
        )
        box.mark_delivered([(1, "phone")], now_ms=NOW + 1)
        box.mark_retry([(1, "team")], next_attempt_ms=NOW + 9, error="HTTP 500", now_ms=NOW + 2)


def paper_fill(key: str, price: str, ts_ms: int) -> PaperFill:
    return PaperFill(
        key, f"pos-{key}", MARKET, "YES", "buy", Decimal("2.5"), Decimal(price), Decimal("0.04"),
        ts_ms, "cli",
    )  # fmt: skip


async def write_fills(db: Path) -> None:
    """Two paper fills: a whole-cent price and a 7-decimal depth average; two mutes and a
    pause."""
    fills = await open_backend(db).paper_fills()
    try:
        await fills.record(paper_fill("fill-1", "0.45", NOW))
        await fills.record(paper_fill("fill-2", "0.4533333", NOW + 1))
    finally:
        await fills.close()
    controls = await open_backend(db).control_store()
    try:
        await controls.put_mute(Mute(None, NOW + 3_600_000, "telegram:987", NOW))
        await controls.put_mute(Mute(MARKET.lower(), NOW + 60_000, "web", NOW))
        await controls.pause(Pause("telegram:987", NOW))
    finally:
        await controls.close()


def sqlite_rows(db: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        order = ORDER.get(table, "id")
        return conn.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY {order}").fetchall()


async def pg_fetch(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


def pg_rows(dsn: str, db: Path, table: str) -> list[tuple[Any, ...]]:
    """The target's rows with the source's columns (the lease columns left out)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    order = ORDER.get(table, "id")
    return asyncio.run(pg_fetch(dsn, f"SELECT {', '.join(names)} FROM {table} ORDER BY {order}"))


def copy(db: Path, dsn: str, **options: Any) -> Any:
    max_chunks = options.pop("max_chunks", None)

    async def go() -> Any:
        async with HistoryCopy(db, dsn, **options) as job:
            return await job.run(max_chunks=max_chunks)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("copy") / "watcher.db"
    asyncio.run(write_history(db))
    asyncio.run(write_fills(db))
    return db


@pytest.fixture
def target(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"watcher_test_copy_{secrets.token_hex(4)}"
    asyncio.run(pg_fetch(postgres_server, f'CREATE DATABASE "{name}"'))
    head, _, _ = postgres_server.rpartition("/")
    yield f"{head}/{name}"
    asyncio.run(pg_fetch(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# The copy


def test_copy_moves_every_table_with_identical_rows(history, target):
    """Counts are equal and every row is identical, ids and micro-unit values included."""
    report = copy(history, target)
    assert report.finished and report.is_complete
    for count in report.counts:
        assert count.target == count.source, count
        assert pg_rows(target, history, count.table) == sqlite_rows(history, count.table)
    assert {c.table for c in report.counts if c.source == 0} == set()
    [(price, volume)] = pg_rows_where(target, "price_e6, volume_e6", "tickers", "id = 2")
    assert (price, volume) == (451_200, 1_250_000)
    assert pg_rows_where(target, "late", "trades", "trade_id = 'late-1'") == [(1,)]
    assert pg_rows_where(target, "price_e6, price_dollars", "paper_fills", "id = 2") == [
        (453_333, "0.4533333")
    ]
    assert asyncio.run(stored_events(target)) == [EVENT]


async def stored_events(location: str) -> list[EventInfo]:
    reader = await open_backend(location).read_model()
    try:
        return await reader.events()
    finally:
        await reader.close()


def pg_rows_where(dsn: str, columns: str, table: str, where: str) -> list[tuple[Any, ...]]:
    return asyncio.run(pg_fetch(dsn, f"SELECT {columns} FROM {table} WHERE {where}"))


def test_copy_creates_the_daily_partitions_and_leaves_the_default_empty(history, target):
    """Ticks of three UTC days land in three daily partitions, none in the default one."""
    copy(history, target)
    names = asyncio.run(
        pg_fetch(
            target, "SELECT relname FROM pg_class WHERE relname LIKE 'tickers_p%' AND relkind = 'r'"
        )
    )
    assert sorted(n for (n,) in names) == [
        "tickers_p20251231",
        "tickers_p20260101",
        "tickers_p20260102",
    ]
    assert pg_rows_where(target, "count(*)", "tickers_default", "true") == [(0,)]
    assert pg_rows_where(target, "count(*)", "trades_default", "true") == [(0,)]


def test_sequences_continue_after_the_copied_ids(history, target):
    """A row inserted after the copy gets an id above every copied one."""
    copy(history, target)
    for table in ("tickers", "trades", "alerts", "fills", "paper_fills"):
        [(top,)] = pg_rows_where(target, "max(id)", table, "true")
        [(following,)] = asyncio.run(pg_fetch(target, f"SELECT nextval('{table}_id_seq')"))
        assert following > top


def test_running_the_copy_twice_adds_nothing(history, target):
    """A second run reads everything again and inserts no row."""
    first = copy(history, target)
    second = copy(history, target)
    assert first.inserted == first.read > 0
    assert second.inserted == 0 and second.read == first.read
    assert [c.target for c in second.counts] == [c.target for c in first.counts]
    assert all(c.target == c.source for c in second.counts)


def test_an_interrupted_copy_resumes_complete_without_duplicates(history, target):
    """Stopped after a few chunks, the copy is incomplete; run again, it ends exact."""
    stopped = copy(history, target, chunk_rows=40, max_chunks=3)
    assert not stopped.finished and not stopped.is_complete
    assert stopped.read == 120
    resumed = copy(history, target, chunk_rows=40)
    assert resumed.finished and resumed.is_complete
    assert resumed.inserted == resumed.read - 120
    for count in resumed.counts:
        assert count.target == count.source, count
    assert pg_rows(target, history, "tickers") == sqlite_rows(history, "tickers")


def test_deliveries_follow_their_alert_when_the_target_holds_other_alerts(history, target):
    """An alert whose id is taken gets a new id; its deliveries point at it by key."""
    copy(history, target, max_chunks=0)  # migrates only
    asyncio.run(
        pg_fetch(
            target,
            "INSERT INTO alerts (id, idempotency_key, rule, market_ticker, severity, title, body,"
            " targets, status, created_ms, updated_ms) VALUES (1, 'live|X|1', 'r', 'X', 'info',"
            " 't', 'b', '[]', 'console', 1, 1)",
        )
    )
    report = copy(history, target)
    assert report.is_complete
    [(moved,)] = pg_rows_where(target, "id", "alerts", "idempotency_key LIKE '%KXTEST-1|%'")
    assert moved != 1
    deliveries = pg_rows_where(target, "alert_id, target, status", "alert_deliveries", "true")
    assert sorted(d for d in deliveries if d[0] == moved) == [
        (moved, "phone", "delivered"),
        (moved, "team", "retrying"),
    ]
    assert len(pg_rows_where(target, "id", "alerts", "true")) == 5


def test_paper_fills_are_copied_by_key_when_the_target_holds_other_fills(history, target):
    """A fill whose key the target holds is skipped; one whose id is taken gets a new id;
    every fill reads back exact through the target's port."""
    copy(history, target, max_chunks=0)  # migrates only

    async def record_live() -> None:
        await pg_fetch(
            target,
            "INSERT INTO paper_fills (id, fill_key, position_id, ticker, side, action,"
            " contracts_e6, price_e6, fee_e6, ts_ms, source)"
            " VALUES (1, 'live-1', 'p', $1, 'NO', 'buy', 1000000, 300000, 0, $2, 'web')",
            MARKET, NOW + 5,
        )  # fmt: skip
        fills = await open_backend(target).paper_fills()
        try:
            await fills.record(paper_fill("fill-2", "0.4533333", NOW + 1))  # the source's too
        finally:
            await fills.close()

    async def read_back() -> list[PaperFill]:
        fills = await open_backend(target).paper_fills()
        try:
            return await fills.recent()
        finally:
            await fills.close()

    asyncio.run(record_live())
    assert copy(history, target).is_complete
    assert [f.fill_key for f in asyncio.run(read_back())] == ["live-1", "fill-2", "fill-1"]
    [(moved,)] = pg_rows_where(target, "id", "paper_fills", "fill_key = 'fill-1'")
    assert moved not in (1, 2)
    assert asyncio.run(read_back())[1] == paper_fill("fill-2", "0.4533333", NOW + 1)
    assert copy(history, target).inserted == 0


# The command


def test_db_copy_prints_counts_and_never_the_password(history, target, capsys):
    """The command shows a count table, masks the password everywhere and exits 0."""
    with_password = target.replace("postgres@", "postgres:s3cret-pw@", 1)
    assert main(["db", "copy", "--from", str(history), "--to", with_password]) == 0
    out = capsys.readouterr()
    assert "s3cret-pw" not in out.out + out.err
    assert "postgres:***@" in out.err
    lines = {line.split()[0]: line.split()[1:] for line in out.out.splitlines() if line}
    for table in TABLES:
        source, copied = lines[table]
        assert source == copied
    assert "complete" in out.out


def test_db_copy_stopped_early_exits_1_and_says_how_to_resume(history, target, capsys):
    """Fewer rows in the target than in the source: exit 1; a second run completes."""
    args = ["db", "copy", "--from", str(history), "--to", target, "--chunk-rows", "50"]
    assert main([*args, "--max-chunks", "2"]) == 1
    assert "resume" in capsys.readouterr().out
    assert main(args) == 0


def test_db_copy_to_an_unreachable_server_exits_4_with_the_password_masked(history, capsys):
    """A server that cannot be reached is one clear line, exit 4, no password."""
    dsn = "postgresql://someone:hunter2@127.0.0.1:9/nowhere"
    assert main(["db", "copy", "--from", str(history), "--to", dsn]) == 4
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "cannot connect to postgresql://someone:***@127.0.0.1:9/nowhere" in err


def test_db_copy_refuses_a_target_that_is_not_postgresql(history, tmp_path, capsys):
    """--to must be a postgresql:// URL: exit 2."""
    assert main(["db", "copy", "--from", str(history), "--to", str(tmp_path / "x.db")]) == 2
    assert "postgresql://" in capsys.readouterr().err


def test_db_copy_of_a_missing_source_exits_4(tmp_path, capsys):
    """A source file that does not exist is refused before connecting anywhere."""
    dsn = "postgresql://postgres@127.0.0.1:9/nowhere"
    assert main(["db", "copy", "--from", str(tmp_path / "none.db"), "--to", dsn]) == 4
    assert "no such file" in capsys.readouterr().err


def test_the_read_outs_of_the_copy_match_the_source(history, target, capsys):
    """`watcher history --json` and `watcher alerts --json` print the same on both databases."""
    copy(history, target)
    rules = ["--rules", str(Path(__file__).resolve().parents[1] / "rules" / "rules.yaml")]
    outputs = []
    for db in (str(history), target):
        assert main(["history", MARKET, "--limit", "500", "--json", "--db", db, *rules]) == 0
        assert main(["alerts", "--json", "--db", db, *rules]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") > 300


def test_db_copy_into_a_database_of_a_newer_watcher_exits_4(history, target, capsys):
    """A target migrated by a newer watcher is refused with its version, nothing copied."""
    sql = "CREATE TABLE watcher_schema (version integer PRIMARY KEY, applied_ms bigint NOT NULL)"
    asyncio.run(pg_fetch(target, sql))
    asyncio.run(pg_fetch(target, "INSERT INTO watcher_schema VALUES (99, 1)"))
    assert main(["db", "copy", "--from", str(history), "--to", target]) == 4
    assert "schema version 99" in capsys.readouterr().err
