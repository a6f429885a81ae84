"""Scheduled jobs: driven directly with an injected clock against the simulator's REST, a real
SQLite file and the real pipeline; plus the scheduler wiring (options, failures, shutdown).

The helpers here (FakeClock, JobsHarness, the ``harness`` fixture) are reused by the other
``test_ops_*`` files.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from watcher.domain.trades_file import parse_positions
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.exchange import SimMarketSpec, SimulatedExchange
from watcher.notify.outbox import Outbox
from watcher.rules import parse_rules
from watcher.service.jobs import Jobs
from watcher.service.keyless import MarketPoller
from watcher.service.pipeline import Pipeline
from watcher.service.schedule import FeedMonitor, digest_trigger
from watcher.settings import settings_from_env
from watcher.store import open_backend
from watcher.store.writer import StoreWriter

from .conftest import MS
from .support import poll as until

WAIT = 10_000 * MS

TRADES = {
    "trades": [
        {"ticker": "KXCPI-26JAN-T0.3", "side": "YES", "entry_price": 40, "contracts": 10},
        {"ticker": "KXUNKNOWN-26-X", "side": "NO", "entry_price": 30, "contracts": 5},
        {"ticker": "KXSOON-26-A", "side": "YES", "entry_price": 50, "contracts": 2},
    ]
}

RULES = """\
version: 1
timezone: UTC
rules:
  - {name: closing soon, type: closing_soon, before: 2h}
  - {name: settled, type: settled}
"""


class FakeClock:
    """Wall and monotonic time that only move when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.mono = 1_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


@dataclass
class JobsHarness:
    """A pipeline, store, REST poller and Jobs over one SQLite file, with a fake clock."""

    sim: SimulatedExchange
    clock: FakeClock
    pipeline: Pipeline
    store: StoreWriter
    poller: MarketPoller
    jobs: Jobs
    db: Path
    last_data: list[float | None] = field(default_factory=lambda: [None])

    def alerts(self, rule: str | None = None) -> list[Any]:
        with Outbox(self.db) as outbox:
            found = outbox.recent(limit=1000)
        return [a for a in found if rule is None or a.rule == rule]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return conn.execute(sql).fetchall()


def write_trades(folder: Path, trades: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trades.json"
    path.write_text(json.dumps(trades, indent=2))
    return path


@contextlib.asynccontextmanager
async def jobs_harness(
    tmp_path: Path,
    *,
    trades: dict[str, Any] = TRADES,
    rules: str = RULES,
    markets: dict[str, SimMarketSpec] | None = None,
    feed: bool = False,
    **options: str,
) -> AsyncIterator[JobsHarness]:
    """Everything Jobs needs, started; the scheduler itself is not started."""
    trades_path = write_trades(tmp_path, trades)
    settings = settings_from_env(
        trades=str(trades_path), rules=None, db=str(tmp_path / "w.db"), environ={}, **options
    )
    clock = FakeClock()
    last_data: list[float | None] = [None]
    queue: asyncio.Queue[Any] = asyncio.Queue()
    async with (
        SimulatedExchange(markets=markets or {}, seed=5) as sim,
        StoreWriter(settings.db_path, flush_interval=0.01) as store,
        KalshiRestClient(sim.api_url) as rest,
    ):
        pipeline = Pipeline(
            open_alert_store=open_backend(settings.db_path).alert_store,
            store=store,
            portfolio=parse_positions(trades_path.read_text(), filename=str(trades_path)),
            rules=parse_rules(rules, env={}),
            clock=clock.time,
        )
        async with pipeline:
            poller = MarketPoller(
                rest=rest,
                tickers=lambda: pipeline.portfolio.tickers(),
                on_market=pipeline.apply_market,
                on_unknown=pipeline.unknown_market,
                emit=queue.put if feed else None,
                clock=clock.time,
                monotonic=clock.monotonic,
            )
            jobs = Jobs(
                host=pipeline,
                store=store,
                poller=poller,
                last_data_at=lambda: last_data[0],
                mode="keyless" if feed else "websocket",
                maintain=open_backend(settings.db_path).maintain,
                stale_after=settings.stale_after,
                refresh_interval=settings.refresh_interval,
                poll_interval=settings.poll_interval,
                digest_at=settings.digest_at,
                retention_days=settings.retention_days,
                clock=clock.time,
                monotonic=clock.monotonic,
            )
            yield JobsHarness(
                sim, clock, pipeline, store, poller, jobs, settings.db_path, last_data
            )


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[JobsHarness]:
    soon = datetime.now(UTC) + timedelta(minutes=30)
    async with jobs_harness(tmp_path, markets={"KXSOON-26-A": SimMarketSpec(close_time=soon)}) as h:
        yield h


# FeedMonitor and the digest trigger: pure


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (last_data_at, now) per check → transition
        ([(None, 10), (None, 59), (None, 60), (None, 90)], [None, None, "stale", None]),
        ([(5, 10), (5, 64), (5, 65), (70, 71), (70, 72)], [None, None, "stale", "recovered", None]),
        ([(0, 61), (0, 200), (150, 201), (150, 205)], ["stale", None, "recovered", None]),
        ([(0, 61), (100, 101), (100, 161)], ["stale", "recovered", "stale"]),
    ],
)
def test_feed_monitor_goes_stale_after_the_silence_and_recovers_on_data(steps, expected) -> None:
    """Stale once after `stale_after` s without data (from start until the first frame);
    recovered as soon as data is recent again; each transition is reported once."""
    monitor = FeedMonitor(60.0, started_at=0.0)
    assert [monitor.check(last, now) for last, now in steps] == expected


@pytest.mark.parametrize(
    ("now", "hour", "minute", "tz", "expected"),
    [
        ("2026-03-07T14:00:00+00:00", 8, 0, "America/New_York", "2026-03-08T08:00:00-04:00"),
        ("2026-03-07T12:59:00+00:00", 8, 0, "America/New_York", "2026-03-07T08:00:00-05:00"),
        ("2026-06-01T06:59:00+00:00", 7, 0, "UTC", "2026-06-01T07:00:00+00:00"),
        ("2026-06-01T07:00:01+00:00", 7, 0, "UTC", "2026-06-02T07:00:00+00:00"),
        ("2026-01-01T23:30:00+00:00", 0, 15, "Europe/Berlin", "2026-01-03T00:15:00+01:00"),
    ],
)
def test_digest_fires_daily_at_the_local_time_of_the_rules_timezone(
    now, hour, minute, tz, expected
) -> None:
    """The digest trigger's next time is HH:MM local in the rules' zone, across DST changes."""
    trigger = digest_trigger(hour, minute, ZoneInfo(tz))
    fire = trigger.get_next_fire_time(None, datetime.fromisoformat(now))
    assert fire == datetime.fromisoformat(expected)


# Job bodies with an injected clock


async def test_metadata_refresh_stores_metadata_and_feeds_closing_soon(harness) -> None:
    """The REST refresh puts title, status and close time into market state and the markets
    table; the clock then fires `closing_soon` from that close time."""
    h = harness
    await h.jobs.poll_markets()
    state = h.pipeline.markets["KXSOON-26-A"]
    assert state.status == "active" and state.title == "Simulated market KXSOON-26-A"
    assert state.close_time_ms == h.sim.market("KXSOON-26-A").close_ms // 1000 * 1000
    await h.store.flush()
    rows = dict(h.rows("select market_ticker, close_time_ms from markets"))
    assert rows["KXSOON-26-A"] == state.close_time_ms
    assert "KXUNKNOWN-26-X" not in rows
    await h.jobs.tick_clock()
    closing = h.alerts("closing soon")
    assert [a.market_ticker for a in closing] == ["KXSOON-26-A"]


async def test_unknown_ticker_alerts_once_naming_the_trades_json_entry(harness) -> None:
    """A REST 404 gives one warning alert that names `trades.json:LINE: trade #N (TICKER)`,
    however many refreshes see it."""
    h = harness
    for _ in range(3):
        await h.jobs.poll_markets()
    unknown = h.alerts("unknown-market")
    assert len(unknown) == 1
    assert unknown[0].severity == "warning"
    assert "trades.json:9: trade #2 (KXUNKNOWN-26-X)" in unknown[0].body
    assert h.poller.stats.errors == 0


async def test_market_close_is_detected_from_the_close_time_and_from_rest(tmp_path) -> None:
    """Kalshi sends no event when a market closes: once its close time passes (the clock)
    or REST says `closed`, the market is marked closed in state and DB and alerted once."""
    past = datetime.now(UTC) - timedelta(minutes=5)
    soon = datetime.now(UTC) + timedelta(minutes=10)
    specs = {"KXCPI-26JAN-T0.3": SimMarketSpec(close_time=past)}
    specs["KXSOON-26-A"] = SimMarketSpec(close_time=soon)
    async with jobs_harness(tmp_path, markets=specs) as h:
        await h.jobs.poll_markets()
        assert h.pipeline.markets["KXCPI-26JAN-T0.3"].status == "closed"
        await h.jobs.tick_clock()
        assert [a.market_ticker for a in h.alerts("market-closed")] == ["KXCPI-26JAN-T0.3"]
        h.clock.advance(11 * 60)
        await h.jobs.tick_clock()
        await h.jobs.tick_clock()
        closed = sorted(a.market_ticker for a in h.alerts("market-closed"))
        assert closed == ["KXCPI-26JAN-T0.3", "KXSOON-26-A"]
        assert h.pipeline.markets["KXSOON-26-A"].status == "closed"
        await h.store.flush()
        assert h.rows("select status from markets where market_ticker = 'KXSOON-26-A'") == [
            ("closed",)
        ]


async def test_stale_feed_alerts_once_and_sends_a_recovery(harness) -> None:
    """No frame for `stale_after` s: one warning; data again: one info recovery. Feed health
    goes to service_state on every check."""
    h = harness
    await h.jobs.check_feed()
    h.clock.advance(59)
    await h.jobs.check_feed()
    assert h.alerts("feed-stale") == []
    h.clock.advance(2)
    await h.jobs.check_feed()
    h.clock.advance(30)
    await h.jobs.check_feed()
    [stale] = h.alerts("feed-stale")
    assert stale.severity == "warning" and "no data from the Kalshi feed for 1m 1s" in stale.body
    await h.store.flush()
    assert dict(h.rows("select key, value from service_state"))["feed.status"] == "stale"
    h.last_data[0] = h.clock.monotonic()
    await h.jobs.check_feed()
    recovered = [a for a in h.alerts("feed-stale") if a.severity == "info"]
    assert len(recovered) == 1 and "flowing again" in recovered[0].body
    await h.store.flush()
    state = dict(h.rows("select key, value from service_state"))
    assert state["feed.status"] == "live"
    assert int(state["feed.last_message_ms"]) == int(h.clock.now * 1000)
    assert int(state["service.heartbeat_ms"]) == int(h.clock.now * 1000)


async def test_daily_digest_lists_positions_with_mark_and_pnl_and_the_days_alerts(
    harness,
) -> None:
    """The digest marks each watched position (NO at NO prices), totals the P&L, lists the
    day's alerts, and is recorded once per local day through the outbox."""
    h = harness
    now = int(h.clock.now * 1000)
    h.pipeline.markets.apply_ticker("KXCPI-26JAN-T0.3", now, 440_000, 460_000, 450_000)
    h.pipeline.markets.apply_ticker("KXUNKNOWN-26-X", now, 600_000, 620_000, 610_000)
    await h.jobs.poll_markets()  # one unknown-market alert today
    await h.jobs.send_digest()
    await h.jobs.send_digest()
    [digest] = h.alerts("digest")
    assert digest.title.startswith("daily digest ") and "3 positions" in digest.title
    lines = digest.body.splitlines()
    assert "  KXCPI-26JAN-T0.3 YES 10 @ 40¢ · mark 45¢ · +$0.50" in lines
    assert "  KXUNKNOWN-26-X NO 5 @ 30¢ · mark 39¢ · +$0.45" in lines
    assert "  KXSOON-26-A YES 2 @ 50¢ · no price yet" in lines
    assert lines[0] == "positions (3), paper P&L +$0.95:"
    assert "alerts today: 1:" in lines
    assert any("KXUNKNOWN-26-X · unknown market" in line for line in lines)
    assert digest.severity == "info"


# The scheduler


async def test_scheduler_registers_each_job_with_deliberate_options(tmp_path) -> None:
    """coalesce and max_instances=1 everywhere; misfire grace one period (digest 1 h,
    retention unbounded); metadata refresh and feed health run at once; digest and retention
    only when configured."""
    async with jobs_harness(tmp_path, digest_at="07:30", retention_days="7") as h:
        await h.jobs.start()
        try:
            jobs = {job.id: job for job in h.jobs.scheduler.get_jobs()}
            assert set(jobs) == {
                "rules-clock",
                "metadata-refresh",
                "feed-health",
                "digest",
                "retention",
            }
            assert all(job.coalesce and job.max_instances == 1 for job in jobs.values())
            assert jobs["rules-clock"].misfire_grace_time == 5
            assert jobs["metadata-refresh"].misfire_grace_time == 300
            assert jobs["digest"].misfire_grace_time == 3600
            assert jobs["retention"].misfire_grace_time is None
            assert str(jobs["digest"].trigger) == "cron[hour='7', minute='30']"
        finally:
            await h.jobs.stop()
    async with jobs_harness(tmp_path / "k", feed=True, retention_days="0") as h:
        await h.jobs.start()
        try:
            assert {job.id for job in h.jobs.scheduler.get_jobs()} == {
                "rules-clock",
                "keyless-poll",
                "feed-health",
            }
        finally:
            await h.jobs.stop()


async def test_the_digest_follows_a_timezone_change_in_reloaded_rules(tmp_path) -> None:
    """Reloaded rules with another timezone move the digest to HH:MM in the new zone."""
    async with jobs_harness(tmp_path, digest_at="08:00") as h:
        await h.jobs.start()
        try:
            rules = parse_rules(RULES.replace("UTC", "America/New_York"), env={})
            h.jobs.rules_changed(rules)
            trigger = h.jobs.scheduler.get_job("digest").trigger
            assert trigger.timezone == ZoneInfo("America/New_York")
        finally:
            await h.jobs.stop()


async def test_a_failing_job_is_logged_and_counted_and_never_stops_the_others(
    tmp_path, caplog
) -> None:
    """An exception in a job is logged on watcher.service.jobs, counted and reported to the run
    listener (metrics); the job runs again at its next time and the other jobs keep running."""

    async def broken() -> None:
        raise RuntimeError("boom")

    async with jobs_harness(tmp_path) as h:
        h.jobs.clock_interval = 0.02
        reported: list[tuple[str, bool]] = []
        h.jobs.on_run = lambda job, failed: reported.append((job, failed))
        await h.jobs.start()
        try:
            h.jobs.schedule("broken", broken, IntervalTrigger(seconds=0.02))
            stats = h.jobs.stats
            await until(lambda: stats.failures["broken"] >= 2 and stats.runs["rules-clock"] >= 2)
        finally:
            await h.jobs.stop()
    assert h.jobs.stats.last_error["broken"] == "RuntimeError: boom"
    assert h.jobs.stats.failures["rules-clock"] == 0
    assert ("broken", True) in reported and ("rules-clock", False) in reported
    assert "job broken failed: RuntimeError: boom" in caplog.text


async def test_stop_cancels_a_running_job_and_nothing_runs_after(tmp_path) -> None:
    """Stopping cancels and awaits a job still running; the scheduler no longer runs jobs."""
    started = asyncio.Event()
    cancelled = []

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async with jobs_harness(tmp_path) as h:
        await h.jobs.start()
        h.jobs.schedule("slow", slow, IntervalTrigger(seconds=60), next_run_time=datetime.now(UTC))
        await asyncio.wait_for(started.wait(), WAIT)
        await h.jobs.stop()
        runs = dict(h.jobs.stats.runs)
        await asyncio.sleep(0.05)
        assert dict(h.jobs.stats.runs) == runs
        assert not h.jobs.scheduler.running
        await h.store.flush()
        assert dict(h.rows("select key, value from service_state"))["feed.status"] == "stopped"
    assert cancelled == [True]


@pytest.mark.parametrize(
    "name",
    [
        "watcher.service.jobs",
        "watcher.service.keyless",
        "watcher.service.digest",
        "watcher.service.writeback",
        "watcher.ops.status",
        "watcher.ops.history",
        "watcher.ops.replay",
        "watcher.ops.readout",
        "watcher.store.retention",
        "watcher.settings",
        "watcher.service.pipeline",
        "watcher.service.alerts",
        "watcher.service.schedule",
        "watcher.service.guard",
        "watcher.service.endpoint",
        "watcher.service.subscriptions",
        "watcher.service.store_alarm",
        "watcher.rules.session",
        "watcher.rules.feed",
        "watcher.rules.kinds",
        "watcher.rules.coverage",
        "watcher.app",
    ],
)
def test_every_exported_name_of_the_ops_modules_exists(name: str) -> None:
    """Every name in `__all__` of the operations modules exists."""
    module = importlib.import_module(name)
    assert all(hasattr(module, attr) for attr in module.__all__)
