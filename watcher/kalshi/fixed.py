"""Exact fixed-point numbers for Kalshi's dollar and contract strings.

Kalshi sends prices as dollar strings with 2 to 6 decimals (``"0.48"``, ``"0.4800"``,
``"0.010000"``) and contract counts with 2 (``"136.00"``). Binary floats cannot hold them
exactly, so watcher keeps them as :class:`~decimal.Decimal` in messages and as integers in
**micro-units** (value × 1,000,000) on the hot path and in SQLite: 45¢ is ``450_000``
micro-dollars, 136 contracts is ``136_000_000``. Integer comparisons are exact and cheap.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NewType

__all__ = [
    "CENT",
    "DOLLAR",
    "MICROS_PER_UNIT",
    "Micros",
    "cents_to_micros",
    "format_cents",
    "format_dollars",
    "micros_to_decimal",
    "parse_micros",
    "to_micros",
]

Micros = NewType("Micros", int)

MICROS_PER_UNIT = 1_000_000
DOLLAR = Micros(1_000_000)
CENT = Micros(10_000)
MAX_DECIMALS = 6


def parse_micros(text: str) -> Micros:
    """Parse a decimal string such as ``"0.4800"`` into micro-units, exactly.

    Raises:
        ValueError: ``text`` is not a plain decimal number or has more than 6 decimals
            that are not zero.
    """
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not a decimal number: {text!r}") from exc
    return to_micros(value)


#: Values converted lately: a feed repeats a few hundred prices and sizes, and a dict lookup
#: costs a tenth of a conversion. Cleared when full, so it stays small.
_CONVERTED: dict[Decimal | int, Micros] = {}
_CONVERTED_MAX = 16_384


def to_micros(value: Decimal | int) -> Micros:
    """Convert a Decimal (or int) to micro-units, refusing anything inexact."""
    try:
        found = _CONVERTED.get(value)
    except TypeError:  # a signalling NaN cannot be hashed: refused below
        found = None
    if found is not None:
        return found
    micros = _convert(value)
    if len(_CONVERTED) >= _CONVERTED_MAX:
        _CONVERTED.clear()
    _CONVERTED[value] = micros
    return micros


def _convert(value: Decimal | int) -> Micros:
    if isinstance(value, int):
        return Micros(value * MICROS_PER_UNIT)
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    scaled = value.scaleb(MAX_DECIMALS)
    whole = int(scaled)
    if whole != scaled:
        raise ValueError(f"more than {MAX_DECIMALS} decimals: {value}")
    return Micros(whole)


def cents_to_micros(cents: Decimal | int | float | str) -> Micros:
    """Convert a cents amount (possibly fractional, e.g. ``"30.5"``) to micro-dollars."""
    if isinstance(cents, float):
        cents = repr(cents)  # the shortest text that round-trips: 30.5 -> "30.5"
    return to_micros(Decimal(cents) / 100)


def micros_to_decimal(micros: int) -> Decimal:
    """Micro-units back to an exact Decimal (``450000`` → ``Decimal("0.45")``)."""
    return (Decimal(micros) / MICROS_PER_UNIT).normalize() if micros else Decimal(0)


def format_cents(micros: int) -> str:
    """Render micro-dollars as cents: ``450000`` → ``"45¢"``, ``455000`` → ``"45.5¢"``."""
    cents = Decimal(micros) / CENT
    text = f"{cents:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}¢"


def format_dollars(micros: int) -> str:
    """Render micro-dollars as signed dollars with cents: ``-1500000`` → ``"-$1.50"``."""
    sign = "-" if micros < 0 else ""
    value = Decimal(abs(micros)) / MICROS_PER_UNIT
    text = (
        f"{value:,.2f}" if value == value.quantize(Decimal("0.01")) else f"{value.normalize():,f}"
    )
    return f"{sign}${text}"
