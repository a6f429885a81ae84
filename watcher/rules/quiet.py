"""Quiet hours: a daily window, in the configured time zone, when alerts are held back.

Held-back alerts are still decided and recorded (``Alert.suppressed``), just not sent.
``critical`` always goes through; ``quiet_hours.except`` lets more severities through.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from watcher.domain.alert import Severity
from watcher.rules.model import QuietHours

__all__ = ["in_window", "is_quiet", "is_suppressed", "local_time"]

_UTC = ZoneInfo("UTC")


def local_time(now_ms: int, tz: ZoneInfo) -> datetime:
    """Unix milliseconds as an aware datetime in ``tz``."""
    seconds, millis = divmod(now_ms, 1000)
    return datetime.fromtimestamp(seconds, _UTC).replace(microsecond=millis * 1000).astimezone(tz)


def in_window(clock: time, start: time, end: time) -> bool:
    """True when ``clock`` is in ``[start, end)``; a window with ``start > end`` wraps
    midnight, one with ``start == end`` is empty."""
    if start <= end:
        return start <= clock < end
    return clock >= start or clock < end


def is_quiet(quiet: QuietHours | None, tz: ZoneInfo, now_ms: int) -> bool:
    """True when ``now_ms`` falls in the quiet hours (local wall-clock time in ``tz``)."""
    if quiet is None:
        return False
    clock = local_time(now_ms, tz).time().replace(tzinfo=None)
    return in_window(clock, quiet.start, quiet.end)


def is_suppressed(quiet: QuietHours | None, tz: ZoneInfo, now_ms: int, severity: Severity) -> bool:
    """True when an alert of ``severity`` at ``now_ms`` is held back by the quiet hours."""
    if quiet is None or severity == "critical" or severity in quiet.except_:
        return False
    return is_quiet(quiet, tz, now_ms)
