"""When the scheduled jobs run, and what the feed-health check decides (pure; no scheduler).

:class:`FeedMonitor` turns "when did the last frame arrive" into stale / recovered transitions,
:func:`feed_alert` words them, and :func:`digest_trigger` is the digest's daily trigger.
:mod:`watcher.service.jobs` runs them on APScheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from watcher.domain.alert import Severity
from watcher.rules.wording import clock_text, span_text

__all__ = [
    "DIGEST_GRACE",
    "FEED_CHECK_INTERVAL",
    "RETENTION_FIRST_DELAY",
    "RETENTION_INTERVAL",
    "FeedAlert",
    "FeedMonitor",
    "Transition",
    "digest_trigger",
    "feed_alert",
]

#: Longest time between two feed-health checks (and ``service_state`` heartbeats), seconds.
FEED_CHECK_INTERVAL = 5.0
#: Seconds between two retention runs.
RETENTION_INTERVAL = 6 * 3600.0
RETENTION_FIRST_DELAY = 60.0
#: A digest up to this late (the machine slept through it) is still sent; later, it is skipped.
DIGEST_GRACE = 3600

Transition = Literal["stale", "recovered"]


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


@dataclass(frozen=True, slots=True)
class FeedAlert:
    """The feed-stale or feed-recovered alert: its key, severity and text."""

    key: str
    severity: Severity
    title: str
    body: str


def feed_alert(
    change: Transition,
    *,
    stale_key: str,
    source: str,
    silence_ms: int,
    since_start: bool,
    now_ms: int,
    tz: ZoneInfo,
) -> FeedAlert:
    """The alert for a feed transition.

    Args:
        change: the transition.
        stale_key: the key of this episode's stale alert ("" if none was raised); a recovery
            is keyed after it, so each episode alerts once each way.
        source: where data comes from ("the Kalshi feed", "Kalshi's REST API").
        silence_ms: how long nothing arrived.
        since_start: nothing arrived since the service started.
        now_ms: the time of the check.
        tz: the time zone of the times shown.
    """
    if change == "recovered":
        return FeedAlert(
            f"{stale_key or f'feed-stale|{now_ms}'}|recovered",
            "info",
            "feed recovered: market data flowing again",
            f"data from {source} flowing again at {clock_text(now_ms, tz)}",
        )
    since = "since start" if since_start else f"since {clock_text(now_ms - silence_ms, tz)}"
    return FeedAlert(
        f"feed-stale|{now_ms}",
        "warning",
        "feed stale: no market data",
        f"no data from {source} for {span_text(silence_ms)} ({since}); watcher keeps retrying",
    )


def digest_trigger(hour: int, minute: int, tz: ZoneInfo) -> CronTrigger:
    """The daily trigger of the digest at ``hour:minute`` local time in ``tz``."""
    return CronTrigger(hour=hour, minute=minute, timezone=tz)
