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
retention          every 6 h, first after 1 min         the backend's upkeep: market data older
                                                        than N days removed (PostgreSQL: whole
                                                        partitions), next days' partitions made
=================  ===================================  ==========================================

Every job body is a public coroutine method, so tests drive it directly with an injected clock;
the scheduler only decides when. A job that raises is logged and counted in :attr:`Jobs.stats`
and runs again at its next time: no job can stop the service. :meth:`Jobs.stop` shuts the
scheduler down and cancels and awaits a job still running, before the pipeline and the store
it uses are closed.

The jobs see the running service only through :class:`JobsHost` (the pipeline implements it);
the pure parts of their policy (feed health, the digest trigger) are in
:mod:`watcher.service.schedule`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from watcher.domain.alert import Severity
from watcher.rules import RulesConfig
from watcher.rules.session import CLOCK_INTERVAL
from watcher.rules.wording import span_text
from watcher.service.digest import AlertLike, PositionView, build_digest, local_day_start_ms
from watcher.service.guard import JobGuard
from watcher.service.keyless import MarketPoller
from watcher.service.schedule import (
    DIGEST_GRACE,
    FEED_CHECK_INTERVAL,
    RETENTION_FIRST_DELAY,
    RETENTION_INTERVAL,
    FeedMonitor,
    Transition,
    digest_trigger,
    feed_alert,
)
from watcher.store.ports import Maintenance, TickSink

__all__ = ["Jobs", "JobsHost"]

logger = logging.getLogger("watcher.jobs")


class JobsHost(Protocol):
    """What the jobs need of the running service; :class:`~watcher.service.pipeline.Pipeline`
    implements it."""

    @property
    def tz(self) -> ZoneInfo:
        """The rules' time zone (the digest's hour, times in alert texts)."""
        ...

    @property
    def positions_path(self) -> str:
        """Where the positions in force were read from (named by an empty digest)."""
        ...

    async def on_clock(self) -> None:
        """Run the time-driven rules now."""
        ...

    async def check_closed(self) -> list[str]:
        """Mark and alert markets that stopped trading; return their tickers."""
        ...

    def position_views(self) -> list[PositionView]:
        """Every watched position marked at its market's current prices."""
        ...

    async def record_service_alert(
        self,
        *,
        key: str,
        rule: str,
        title: str,
        body: str,
        severity: Severity,
        now_ms: int,
        quiet: bool = True,
    ) -> int:
        """Record an alert of the service itself; 1 if new, 0 if its key was seen before."""
        ...

    async def recent_alerts(self, *, since_ms: int, limit: int = 500) -> Sequence[AlertLike]:
        """Alerts recorded at or after ``since_ms``, newest first."""
        ...


class Jobs:
    """The scheduled jobs of one service; an async context manager (start / stop).

    Args:
        host: what the jobs drive and read in the running service (the pipeline).
        store: the tick sink (``service_state``).
        poller: REST polling (metadata only, or the keyless feed).
        last_data_at: ``time.monotonic()`` of the last frame from Kalshi, or None.
        mode: ``websocket``, ``simulate`` or ``keyless`` (shown by ``watcher status``).
        maintain: the backend's upkeep (:meth:`~watcher.store.ports.Backend.maintain`), called
            with ``(now_ms, retention_days)`` by the retention job.
        stale_after: seconds without data before the feed is stale.
        refresh_interval: seconds between two metadata refreshes.
        poll_interval: seconds between two keyless polls.
        digest_at: ``(hour, minute)`` of the daily digest in the rules' time zone, or None.
        retention_days: market data older than this is pruned; 0 keeps everything.
        clock_interval: seconds between rules-clock ticks.
        clock: Unix time in seconds.
        monotonic: monotonic seconds (same clock as ``last_data_at``).
        refresh_watch: re-expands the watched events and series (with the metadata refresh).
    """

    def __init__(
        self,
        *,
        host: JobsHost,
        store: TickSink,
        poller: MarketPoller,
        last_data_at: Callable[[], float | None],
        mode: str,
        maintain: Callable[[int, int], Awaitable[Maintenance]],
        stale_after: float,
        refresh_interval: float,
        poll_interval: float,
        digest_at: tuple[int, int] | None = None,
        retention_days: int = 0,
        clock_interval: float = CLOCK_INTERVAL,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        refresh_watch: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.refresh_watch = refresh_watch
        self.host, self.store, self.poller, self.mode = host, store, poller, mode
        self.last_data_at = last_data_at
        self.maintain, self.retention_days = maintain, retention_days
        self.refresh_interval, self.poll_interval = refresh_interval, poll_interval
        self.stale_after, self.digest_at = stale_after, digest_at
        self.clock_interval, self.clock, self.monotonic = clock_interval, clock, monotonic
        #: Failures are caught here, so APScheduler's own events report every run as executed.
        self.guard = JobGuard()
        self.stats = self.guard.stats
        self.feed = FeedMonitor(stale_after, started_at=monotonic())
        self.scheduler: AsyncIOScheduler | None = None
        self._digest_tz: ZoneInfo | None = None
        self._stale_key = ""  # the alert key of the current stale episode
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

    @property
    def on_run(self) -> Callable[[str, bool], None] | None:
        """Called after every run with ``(job_id, failed)`` (metrics)."""
        return self.guard.on_run

    @on_run.setter
    def on_run(self, listener: Callable[[str, bool], None] | None) -> None:
        self.guard.on_run = listener

    # Public methods: lifecycle

    async def start(self) -> None:
        """Record the service's start in ``service_state`` and start the scheduler."""
        await self.store.set_service_state("service.pid", str(os.getpid()))
        await self.store.set_service_state("service.started_ms", str(self._started_ms))
        await self.store.set_service_state("feed.mode", self.mode)
        # coalesce: after a stall (laptop asleep, loop blocked) a job runs once, not once per
        # missed period. max_instances=1: a slow REST round never overlaps itself.
        self.scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self._add_jobs()
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop scheduling, cancel and await running jobs, and mark the feed stopped."""
        self.guard.stopping = True
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # the shutdown runs as a loop callback
        await self.guard.stop()
        with contextlib.suppress(Exception):
            await self.store.set_service_state("feed.status", "stopped")
            await self.store.set_service_state("service.heartbeat_ms", str(self._now_ms()))

    def schedule(
        self, job_id: str, func: Callable[[], Awaitable[None]], trigger: Any, **options: Any
    ) -> None:
        """Add a guarded job (logged and counted when it raises) to the running scheduler."""
        assert self.scheduler is not None
        self.scheduler.add_job(self.guard.wrap(job_id, func), trigger, id=job_id, **options)

    def rules_changed(self, rules: RulesConfig) -> None:
        """Move the digest when the rules' timezone changed."""
        if self.scheduler is None or self._digest_tz is None or self._digest_tz == rules.tz:
            return
        assert self.digest_at is not None
        self._digest_tz = rules.tz
        self.scheduler.reschedule_job("digest", trigger=digest_trigger(*self.digest_at, rules.tz))

    # Public methods: job bodies

    async def tick_clock(self) -> None:
        """Time-driven rules, then markets whose close time passed."""
        await self.host.on_clock()
        await self.host.check_closed()

    async def poll_markets(self) -> None:
        """One REST round over the watched markets (metadata, or the keyless feed)."""
        await self.poller.poll()

    async def refresh_metadata(self) -> None:
        """The metadata refresh: the watched markets, then the watched events' expansion."""
        await self.poller.poll()
        if self.refresh_watch is not None:
            await self.refresh_watch()

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
        host = self.host
        now_ms, tz = self._now_ms(), host.tz
        since = local_day_start_ms(now_ms, tz)
        recent = await host.recent_alerts(since_ms=since, limit=500)
        alerts = sorted(recent, key=lambda record: record.created_ms)
        title, body = build_digest(
            host.position_views(), alerts, now_ms=now_ms, tz=tz, positions_path=host.positions_path
        )
        day = datetime.fromtimestamp(since / 1000, tz).strftime("%Y-%m-%d")
        await host.record_service_alert(
            key=f"digest|{day}",
            rule="digest",
            title=title,
            body=body,
            severity="info",
            now_ms=now_ms,
            quiet=False,  # the user picked the hour: quiet hours do not hold it
        )

    async def prune_old_data(self) -> Maintenance:
        """Remove market data older than ``retention_days`` and prepare the coming days, through
        the backend's :meth:`~watcher.store.ports.Backend.maintain` (stopped by :meth:`stop`)."""
        done = await self.maintain(self._now_ms(), self.retention_days)
        if any(done.deleted.values()) or done.dropped:
            gone = [f"{n} {table}" for table, n in done.deleted.items() if n]
            gone += [f"partition {name}" for name in done.dropped]
            logger.info(
                "retention: removed %s older than %d days", ", ".join(gone), self.retention_days
            )
        if done.created:
            logger.info("retention: created partitions %s", ", ".join(done.created))
        return done

    # Private methods

    def _add_jobs(self) -> None:
        # misfire_grace_time: a periodic run more than one period late is dropped (the next one
        # is due anyway); retention has no deadline (None: run however late); the digest is
        # still worth sending up to an hour late, not at lunchtime.
        now = datetime.now().astimezone()
        self._every("rules-clock", self.tick_clock, self.clock_interval)
        if self.poller.is_feed:
            self._every("keyless-poll", self.poll_markets, self.poll_interval, first=now)
        else:
            self._every("metadata-refresh", self.refresh_metadata, self.refresh_interval, first=now)
        check = min(FEED_CHECK_INTERVAL, self.stale_after / 2)
        self._every("feed-health", self.check_feed, check, first=now)
        if self.digest_at is not None:
            self._digest_tz = self.host.tz
            trigger = digest_trigger(*self.digest_at, self._digest_tz)
            self.schedule("digest", self.send_digest, trigger, misfire_grace_time=DIGEST_GRACE)
        if self.retention_days > 0:
            self.schedule(
                "retention",
                self._prune_job,
                IntervalTrigger(seconds=RETENTION_INTERVAL),
                next_run_time=now + timedelta(seconds=RETENTION_FIRST_DELAY),
                misfire_grace_time=None,
            )

    def _every(
        self,
        job_id: str,
        func: Callable[[], Awaitable[None]],
        seconds: float,
        *,
        first: datetime | None = None,
    ) -> None:
        """A periodic job; a run more than one period late is dropped."""
        options: dict[str, Any] = {"misfire_grace_time": max(1, int(seconds))}
        if first is not None:
            options["next_run_time"] = first
        self.schedule(job_id, func, IntervalTrigger(seconds=seconds), **options)

    async def _prune_job(self) -> None:
        await self.prune_old_data()

    async def _feed_alert(
        self, change: Transition, last: float | None, now: float, now_ms: int
    ) -> None:
        source = "Kalshi's REST API" if self.mode == "keyless" else "the Kalshi feed"
        silence_ms = int(self.feed.silence(last, now) * 1000)
        alert = feed_alert(
            change,
            stale_key=self._stale_key,
            source=source,
            silence_ms=silence_ms,
            since_start=last is None,
            now_ms=now_ms,
            tz=self.host.tz,
        )
        if change == "stale":
            self._stale_key = alert.key
            logger.warning("no data from %s for %s", source, span_text(silence_ms))
        else:
            logger.info("data from %s flowing again", source)
        await self.host.record_service_alert(
            key=alert.key,
            rule="feed-stale",
            title=alert.title,
            body=alert.body,
            severity=alert.severity,
            now_ms=now_ms,
        )

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)
