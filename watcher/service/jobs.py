"""The service's periodic work, on one APScheduler 3.x ``AsyncIOScheduler`` (design.md §7).

=================  ===================================  ==========================================
job id             when                                 what
=================  ===================================  ==========================================
rules-clock        every 5 s                            ``closing_soon``/``stale``/``settled``
                                                        rules; market close from ``close_time``
metadata-refresh   every ``--refresh-interval``, now    REST title/status/close_time/result;
                                                        unknown tickers (404) alerted once
keyless-poll       every ``--poll-interval``, now       keyless mode instead of metadata-refresh:
                                                        the same, plus ticks and trades as frames
feed-health        every few seconds, now               stale-feed / recovered alerts; feed health
                                                        into ``service_state`` for ``status``
digest             daily at ``--digest-at`` (rules tz)  positions, marks, P&L, alerts of the day
retention          every 6 h, first after 1 min         prune market data older than N days
=================  ===================================  ==========================================

Every job body is a public coroutine method, so tests drive it directly with an injected clock;
the scheduler only decides when. A job that raises is logged and counted in :attr:`Jobs.stats`
and runs again at its next time: no job can stop the service. :meth:`Jobs.stop` shuts the
scheduler down and cancels and awaits a job still running, before the pipeline and the store
it uses are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, Literal
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from watcher.domain.market import MarketState
from watcher.rules import RulesConfig
from watcher.rules.wording import clock_text, span_text
from watcher.service.digest import build_digest, local_day_start_ms, view_position
from watcher.service.keyless import MarketPoller
from watcher.service.pipeline import CLOCK_INTERVAL, Pipeline
from watcher.settings import Settings
from watcher.store.retention import prune
from watcher.store.writer import StoreWriter

__all__ = [
    "FEED_CHECK_INTERVAL",
    "RETENTION_INTERVAL",
    "FeedMonitor",
    "JobStats",
    "Jobs",
    "digest_trigger",
]

logger = logging.getLogger("watcher.jobs")

#: Longest time between two feed-health checks (and ``service_state`` heartbeats), seconds.
FEED_CHECK_INTERVAL = 5.0
#: Seconds between two retention runs.
RETENTION_INTERVAL = 6 * 3600.0
RETENTION_FIRST_DELAY = 60.0
#: A digest up to this late (the machine slept through it) is still sent; later, it is skipped.
DIGEST_GRACE = 3600
_DAY_MS = 86_400_000

Transition = Literal["stale", "recovered"]


@dataclass(slots=True)
class JobStats:
    """Per job id: runs finished, runs that raised, and the last error text."""

    runs: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    last_error: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FeedMonitor:
    """Decides when the feed went stale and when it recovered (pure; monotonic seconds).

    The feed is stale once nothing arrived for ``stale_after`` seconds (counted from
    ``started_at`` until the first frame), and recovered as soon as something arrives again.

    Attributes:
        stale_after: the silence that makes the feed stale, seconds.
        started_at: when watching began.
        stale_at: when the current stale episode was declared, or None while live.
    """

    stale_after: float
    started_at: float
    stale_at: float | None = None

    def silence(self, last_data_at: float | None, now: float) -> float:
        """Seconds since the last frame (or since start when none came yet)."""
        return now - (self.started_at if last_data_at is None else last_data_at)

    def check(self, last_data_at: float | None, now: float) -> Transition | None:
        """``"stale"`` or ``"recovered"`` when the state changes now, else None."""
        silent = self.silence(last_data_at, now) >= self.stale_after
        if silent and self.stale_at is None:
            self.stale_at = now
            return "stale"
        if not silent and self.stale_at is not None:
            self.stale_at = None
            return "recovered"
        return None

    def status(self, last_data_at: float | None, now: float) -> str:
        """``live``, ``stale`` or ``waiting`` (nothing received yet)."""
        if self.stale_at is not None:
            return "stale"
        return "waiting" if last_data_at is None else "live"


def digest_trigger(hour: int, minute: int, tz: ZoneInfo) -> CronTrigger:
    """The daily trigger of the digest at ``hour:minute`` local time in ``tz``."""
    return CronTrigger(hour=hour, minute=minute, timezone=tz)


class Jobs:
    """The scheduled jobs of one service; an async context manager (start / stop).

    Args:
        settings: intervals, digest time, retention, the database.
        pipeline: market state, rules and the outbox the jobs feed.
        store: the store writer (market rows, ``service_state``).
        poller: REST polling (metadata only, or the keyless feed).
        last_data_at: ``time.monotonic()`` of the last frame from Kalshi, or None.
        mode: ``websocket``, ``simulate`` or ``keyless`` (shown by ``watcher status``).
        clock_interval: seconds between rules-clock ticks.
        clock: Unix time in seconds.
        monotonic: monotonic seconds (same clock as ``last_data_at``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: Pipeline,
        store: StoreWriter,
        poller: MarketPoller,
        last_data_at: Callable[[], float | None],
        mode: str,
        clock_interval: float = CLOCK_INTERVAL,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.store = store
        self.poller = poller
        self.last_data_at = last_data_at
        self.mode = mode
        self.clock_interval = clock_interval
        self.clock = clock
        self.monotonic = monotonic
        self.stats = JobStats()
        #: Called after every run with ``(job_id, failed)`` (metrics). Failures are caught
        #: here, so APScheduler's own events report every run as executed.
        self.on_run: Callable[[str, bool], None] | None = None
        self.feed = FeedMonitor(settings.stale_after, started_at=monotonic())
        self.scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._stop_pruning = threading.Event()
        self._digest_tz: ZoneInfo | None = None
        self._stale_key = ""  # the alert key of the current stale episode
        self._stopping = False
        self._started_ms = self._now_ms()

    def __repr__(self) -> str:
        jobs = len(self.scheduler.get_jobs()) if self.scheduler is not None else 0
        failures = sum(self.stats.failures.values())
        return f"<Jobs {self.mode} jobs={jobs} failures={failures}>"

    async def __aenter__(self) -> Jobs:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # Public methods: lifecycle

    async def start(self) -> None:
        """Record the service's start in ``service_state`` and start the scheduler."""
        await self.store.set_service_state("service.pid", str(os.getpid()))
        await self.store.set_service_state("service.started_ms", str(self._started_ms))
        await self.store.set_service_state("feed.mode", self.mode)
        # coalesce: after a stall (laptop asleep, loop blocked) a job runs once, not once per
        # missed period. max_instances=1: a slow REST round never overlaps itself.
        self.scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self._add_jobs(self.scheduler)
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop scheduling, cancel and await running jobs, and mark the feed stopped."""
        self._stopping = True
        self._stop_pruning.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # the shutdown runs as a loop callback
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.store.set_service_state("feed.status", "stopped")
            await self.store.set_service_state("service.heartbeat_ms", str(self._now_ms()))

    def schedule(
        self, job_id: str, func: Callable[[], Awaitable[None]], trigger: Any, **options: Any
    ) -> None:
        """Add a guarded job (logged and counted when it raises) to the running scheduler."""
        assert self.scheduler is not None
        self.scheduler.add_job(self._guarded(job_id, func), trigger, id=job_id, **options)

    def rules_changed(self, rules: RulesConfig) -> None:
        """Move the digest when the rules' timezone changed."""
        if self.scheduler is None or self._digest_tz is None or self._digest_tz == rules.tz:
            return
        assert self.settings.digest_at is not None
        self._digest_tz = rules.tz
        self.scheduler.reschedule_job(
            "digest", trigger=digest_trigger(*self.settings.digest_at, rules.tz)
        )

    # Public methods: job bodies

    async def tick_clock(self) -> None:
        """Time-driven rules, then markets whose close time passed."""
        await self.pipeline.on_clock()
        await self.pipeline.check_closed()

    async def poll_markets(self) -> None:
        """One REST round over the watched markets (metadata, or the keyless feed)."""
        await self.poller.poll()

    async def check_feed(self) -> None:
        """Alert when the feed goes stale or recovers; record feed health for ``status``."""
        now, now_ms = self.monotonic(), self._now_ms()
        last = self.last_data_at()
        change = self.feed.check(last, now)
        if change is not None:
            await self._feed_alert(change, last, now, now_ms)
        last_ms = None if last is None else now_ms - int((now - last) * 1000)
        await self.store.set_service_state("feed.status", self.feed.status(last, now))
        await self.store.set_service_state("feed.last_message_ms", str(last_ms or ""))
        await self.store.set_service_state("service.heartbeat_ms", str(now_ms))

    async def send_digest(self) -> None:
        """Record today's digest (once per local day) through the outbox like any alert."""
        pipeline = self.pipeline
        now_ms, tz = self._now_ms(), pipeline.rules.tz
        views = []
        for position in pipeline.portfolio.watched():
            state = pipeline.markets.get(position.ticker) or MarketState(position.ticker)
            views.append(
                view_position(
                    position, yes_bid=state.yes_bid, yes_ask=state.yes_ask, yes_last=state.yes_last
                )
            )
        outbox = pipeline.outbox
        assert outbox is not None
        since = local_day_start_ms(now_ms, tz)
        recent = await asyncio.to_thread(outbox.recent, since_ms=since, limit=500)
        alerts = sorted(recent, key=lambda record: record.created_ms)
        title, body = build_digest(
            views, alerts, now_ms=now_ms, tz=tz, portfolio=pipeline.portfolio
        )
        day = datetime.fromtimestamp(since / 1000, tz).strftime("%Y-%m-%d")
        alert = pipeline.service_alert(
            key=f"digest|{day}",
            rule="digest",
            title=title,
            body=body,
            severity="info",
            now_ms=now_ms,
            quiet=False,  # the user picked the hour: quiet hours do not hold it
        )
        await pipeline.record([alert], {}, now_ms)

    async def prune_old_data(self) -> dict[str, int]:
        """Delete market data older than ``retention_days`` (in a thread, in small batches)."""
        cutoff = self._now_ms() - self.settings.retention_days * _DAY_MS
        deleted = await asyncio.to_thread(
            prune, self.settings.db_path, cutoff_ms=cutoff, stop=self._stop_pruning
        )
        if any(deleted.values()):
            logger.info(
                "retention: deleted %s older than %d days",
                ", ".join(f"{n} {table}" for table, n in deleted.items() if n),
                self.settings.retention_days,
            )
        return deleted

    # Private methods

    def _add_jobs(self, scheduler: AsyncIOScheduler) -> None:
        s = self.settings
        now = datetime.now().astimezone()
        # misfire_grace_time: a periodic run more than one period late is dropped (the next one
        # is due anyway); retention has no deadline (None: run however late); the digest is
        # still worth sending up to an hour late, not at lunchtime.
        self.schedule(
            "rules-clock",
            self.tick_clock,
            IntervalTrigger(seconds=self.clock_interval),
            misfire_grace_time=max(1, int(self.clock_interval)),
        )
        poll_id, every = (
            ("keyless-poll", s.poll_interval)
            if self.poller.is_feed
            else ("metadata-refresh", s.refresh_interval)
        )
        self.schedule(
            poll_id,
            self.poll_markets,
            IntervalTrigger(seconds=every),
            next_run_time=now,
            misfire_grace_time=max(1, int(every)),
        )
        check = min(FEED_CHECK_INTERVAL, s.stale_after / 2)
        self.schedule(
            "feed-health",
            self.check_feed,
            IntervalTrigger(seconds=check),
            next_run_time=now,
            misfire_grace_time=max(1, int(check)),
        )
        if s.digest_at is not None:
            self._digest_tz = self.pipeline.rules.tz
            trigger = digest_trigger(*s.digest_at, self._digest_tz)
            self.schedule("digest", self.send_digest, trigger, misfire_grace_time=DIGEST_GRACE)
        if s.retention_days > 0:
            self.schedule(
                "retention",
                self._prune_job,
                IntervalTrigger(seconds=RETENTION_INTERVAL),
                next_run_time=now + timedelta(seconds=RETENTION_FIRST_DELAY),
                misfire_grace_time=None,
            )

    async def _prune_job(self) -> None:
        await self.prune_old_data()

    def _guarded(self, job_id: str, func: Callable[[], Awaitable[None]]) -> Callable[[], Any]:
        @wraps(func)
        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await func()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                logger.debug("job %s cancelled by shutdown", job_id)  # not an error: we stop
            except Exception as exc:  # a job never kills the service: log, count, next time
                self._ran(job_id, failed=True)
                self.stats.failures[job_id] += 1
                self.stats.last_error[job_id] = f"{type(exc).__name__}: {exc}"
                logger.error(
                    "job %s failed: %s: %s",
                    job_id,
                    type(exc).__name__,
                    exc,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
            else:
                self._ran(job_id, failed=False)
                self.stats.runs[job_id] += 1
            finally:
                self._running.discard(task)

        return run

    async def _feed_alert(
        self, change: Transition, last: float | None, now: float, now_ms: int
    ) -> None:
        tz = self.pipeline.rules.tz
        source = "Kalshi's REST API" if self.mode == "keyless" else "the Kalshi feed"
        silence_ms = int(self.feed.silence(last, now) * 1000)
        if change == "stale":
            self._stale_key = f"feed-stale|{now_ms}"
            since = (
                "since start" if last is None else f"since {clock_text(now_ms - silence_ms, tz)}"
            )
            logger.warning("no data from %s for %s", source, span_text(silence_ms))
            alert = self.pipeline.service_alert(
                key=self._stale_key,
                rule="feed-stale",
                severity="warning",
                title="feed stale: no market data",
                body=f"no data from {source} for {span_text(silence_ms)} ({since});"
                " watcher keeps retrying",
                now_ms=now_ms,
            )
        else:
            key = self._stale_key or f"feed-stale|{now_ms}"
            logger.info("data from %s flowing again", source)
            alert = self.pipeline.service_alert(
                key=f"{key}|recovered",
                rule="feed-stale",
                severity="info",
                title="feed recovered: market data flowing again",
                body=f"data from {source} flowing again at {clock_text(now_ms, tz)}",
                now_ms=now_ms,
            )
        await self.pipeline.record([alert], {}, now_ms)

    def _ran(self, job_id: str, *, failed: bool) -> None:
        if self.on_run is not None:
            try:
                self.on_run(job_id, failed)
            except Exception:  # a broken listener must not turn a run into a failure
                logger.exception("job listener failed for %s", job_id)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)
