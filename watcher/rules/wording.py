"""How alerts say things: cents, signed moves, dollars, spans of time, local times.

Everything is exact text from integers (micro-dollars, milliseconds) or Decimals; a NO position
is always described with NO prices (see :mod:`watcher.domain.positions`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from watcher.kalshi.fixed import MICROS_PER_UNIT, format_cents
from watcher.rules.quiet import local_time

__all__ = [
    "clock_text",
    "contracts_text",
    "dollars_text",
    "micros_dollars",
    "signed_cents",
    "signed_dollars",
    "span_text",
]

_CENTS = Decimal("0.01")
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))


def signed_cents(micros: int) -> str:
    """``60_000`` → ``"+6¢"``, ``-60_000`` → ``"-6¢"``, ``0`` → ``"0¢"``."""
    if micros > 0:
        return f"+{format_cents(micros)}"
    return format_cents(micros)


def dollars_text(value: Decimal) -> str:
    """Dollars rounded half-to-even to cents: ``Decimal("-10.505")`` → ``"-$10.50"``."""
    rounded = value.quantize(_CENTS, rounding=ROUND_HALF_EVEN)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.2f}"


def signed_dollars(value: Decimal) -> str:
    """Like :func:`dollars_text` with a ``+`` for gains: ``"+$1.50"``."""
    text = dollars_text(value)
    return f"+{text}" if value.quantize(_CENTS, rounding=ROUND_HALF_EVEN) > 0 else text


def micros_dollars(micros: int) -> Decimal:
    """Micro-dollars as exact Decimal dollars."""
    return Decimal(micros) / MICROS_PER_UNIT


def contracts_text(count: Decimal) -> str:
    """``Decimal("25.00")`` → ``"25"``, ``Decimal("2.50")`` → ``"2.5"``."""
    text = f"{count:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def span_text(ms: int) -> str:
    """A duration for people, two units at most: ``"1h 45m"``, ``"5m 12s"``, ``"0s"``."""
    ms = max(ms, 0)
    parts: list[str] = []
    for unit, size in _UNITS:
        amount, ms = divmod(ms, size)
        if amount or (parts and len(parts) < 2):
            parts.append(f"{amount}{unit}")
        if len(parts) == 2:
            break
    parts = [part for part in parts if not part.startswith("0")] or ["0s"]
    return " ".join(parts)


def clock_text(ms: int, tz: ZoneInfo) -> str:
    """Unix ms as local time: ``"2026-01-15 14:03 EST"``."""
    return local_time(ms, tz).strftime("%Y-%m-%d %H:%M %Z")
