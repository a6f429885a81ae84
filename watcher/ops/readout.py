"""What the operator read-outs share: time arguments, ages and cents as they are printed.

Every read-out (``status``, ``history``, ``alerts``, ``replay``) prints times in the rules'
timezone, labelled, and prices in cents.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from watcher.kalshi.fixed import MICROS_PER_UNIT, format_cents
from watcher.rules.fields import parse_duration
from watcher.rules.quiet import local_time
from watcher.rules.wording import contracts_text, span_text

__all__ = ["ago_text", "cents_text", "count_text", "parse_when", "time_text"]

_EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))


def parse_when(text: str, *, now_ms: int, tz: ZoneInfo) -> int:
    """``2h``/``1d`` ago, or an ISO date or date-time (local to ``tz`` when naive) → Unix ms.

    Raises:
        ValueError: neither a duration nor an ISO date/time.
    """
    try:
        return now_ms - parse_duration(text.strip()) // timedelta(milliseconds=1)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a duration like 2h or 1d, or a date/time like 2026-01-15 or"
            f" 2026-01-15T09:30, but got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return (when - _EPOCH) // timedelta(milliseconds=1)


def cents_text(micros: int | None) -> str:
    """A price in cents (``45¢``, ``45.5¢``), or ``-`` when unknown."""
    return "-" if micros is None else format_cents(micros)


def count_text(micros: int | None) -> str:
    """A count of contracts from micro-units (``136``, ``2.5``), or ``-`` when unknown."""
    return "-" if micros is None else contracts_text(Decimal(micros) / MICROS_PER_UNIT)


def time_text(ms: int, tz: ZoneInfo, spec: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Unix ``ms`` as local time in ``tz``, labelled with the zone: ``2026-01-15 09:30:00 EST``.

    Every read-out prints its times this way, in the rules' timezone.
    """
    return local_time(ms, tz).strftime(f"{spec} %Z")


def ago_text(ms: int | None, now_ms: int) -> str:
    return "-" if ms is None else f"{span_text(now_ms - ms)} ago"
