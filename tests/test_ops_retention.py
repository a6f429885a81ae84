"""Retention: old market data is pruned in small batches on its own connection, beside a
writer that keeps writing; everything else is kept."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.domain.alert import Alert
from watcher.kalshi import messages as m
from watcher.notify.outbox import Outbox
from watcher.store.retention import prune
from watcher.store.writer import StoreWriter

from .test_jobs import jobs_harness

DAY = 86_400_000
NOW = 1_780_000_000_000


def tick(ts_ms: int, ticker: str = "KXA-1") -> m.Ticker:
    msg = m.TickerMsg(
        market_ticker=ticker,
        price_dollars=Decimal("0.45"),
        yes_bid_dollars=Decimal("0.44"),
        yes_ask_dollars=Decimal("0.46"),
        ts_ms=ts_ms,
    )
    return m.Ticker(msg=msg)


def trade(ts_ms: int, n: int) -> m.Trade:
    msg = m.TradeMsg(
        trade_id=f"t-{ts_ms}-{n}",
        market_ticker="KXA-1",
        yes_price_dollars=Decimal("0.45"),
        no_price_dollars=Decimal("0.55"),
        count_fp=Decimal("10.00"),
        taker_side="yes",
        ts_ms=ts_ms,
    )
    return m.Trade(msg=msg)


def counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {
            table: conn.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("tickers", "trades", "alerts", "markets")
        }


async def fill(db: Path, *, old: int, new: int) -> None:
    async with StoreWriter(db) as store:
        for i in range(old):
            await store.put(tick(NOW - 40 * DAY + i), NOW)
            await store.put(trade(NOW - 40 * DAY + i, i), NOW)
        for i in range(new):
            await store.put(tick(NOW - DAY + i), NOW)
            await store.put(trade(NOW - DAY + i, i), NOW)


def test_prune_rejects_tables_outside_market_data(tmp_path: Path) -> None:
    """Only the market-data tables can be pruned; alerts and state never are."""
    with pytest.raises(ValueError, match="table cannot be pruned: 'alerts'"):
        prune(tmp_path / "w.db", cutoff_ms=NOW, tables=["alerts"])


async def test_prune_deletes_only_rows_older_than_the_cutoff_in_batches(tmp_path: Path) -> None:
    """Rows with ts_ms before the cut-off go, in batches of batch_size; newer rows, alerts and
    market metadata stay."""
    db = tmp_path / "w.db"
    await fill(db, old=25, new=5)
    with Outbox(db) as outbox:
        alert = Alert("k", "r", "KXA-1", "info", "t", "b", (), NOW - 90 * DAY)
        outbox.record([alert], now_ms=NOW - 90 * DAY)
    deleted = prune(db, cutoff_ms=NOW - 30 * DAY, batch_size=7, pause=0)
    assert deleted == {"tickers": 25, "trades": 25, "orderbook_deltas": 0, "orderbook_snapshots": 0}
    assert counts(db) == {"tickers": 5, "trades": 5, "alerts": 1, "markets": 0}
    assert prune(db, cutoff_ms=NOW - 30 * DAY)["tickers"] == 0


async def test_prune_beside_a_busy_writer_loses_nothing_and_blocks_nothing(tmp_path: Path) -> None:
    """Pruning in a thread while the writer commits batches: every new row is written, no
    write fails, and every old row is deleted."""
    db = tmp_path / "w.db"
    await fill(db, old=3000, new=0)
    async with StoreWriter(db, batch_size=50, flush_interval=0.001) as store:
        work = asyncio.create_task(
            asyncio.to_thread(prune, db, cutoff_ms=NOW - 30 * DAY, batch_size=100, pause=0.001)
        )
        n = 0
        while not work.done() or n < 500:
            await store.put(tick(NOW + n), NOW)
            n += 1
            if n % 50 == 0:
                await asyncio.sleep(0)
        deleted = await work
        await store.flush()
        assert store.stats.errors == 0
    assert deleted["tickers"] == 3000 and deleted["trades"] == 3000
    assert counts(db)["tickers"] == n


async def test_prune_stops_early_when_asked(tmp_path: Path) -> None:
    """A set stop event ends pruning after the current batch (service shutdown)."""
    db = tmp_path / "w.db"
    await fill(db, old=50, new=0)
    stop = threading.Event()
    stop.set()
    assert prune(db, cutoff_ms=NOW, batch_size=10, stop=stop) == {
        "tickers": 0,
        "trades": 0,
        "orderbook_deltas": 0,
        "orderbook_snapshots": 0,
    }


async def test_retention_job_uses_the_configured_days_and_the_injected_clock(tmp_path) -> None:
    """The retention job deletes what is older than --retention-days before its clock's now."""
    async with jobs_harness(tmp_path, retention_days="10") as h:
        h.clock.now = NOW / 1000
        for ts in (NOW - 11 * DAY, NOW - 9 * DAY):
            await h.store.put(tick(ts, "KXCPI-26JAN-T0.3"), NOW)
        await h.store.flush()
        done = await h.jobs.prune_old_data()
        assert done.deleted["tickers"] == 1
        assert (done.created, done.dropped) == ((), ())
        assert h.rows("select ts_ms from tickers") == [(NOW - 9 * DAY,)]
