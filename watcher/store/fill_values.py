"""How a :class:`~watcher.store.records.PaperFill` is checked, and stored exactly.

Both backends store a fill the same way (see the ``paper_fills`` table in
:mod:`watcher.store.schema`): ``contracts_e6`` holds the exact micro-contracts; ``price_e6``
and ``fee_e6`` hold micro-dollars rounded half-even to the nearest micro-dollar (for sorting
and sums in SQL), and ``price_dollars`` / ``fee_dollars`` are NULL when that integer is exact,
else the exact decimal text. Read back, an amount is its text when there is one, else its
integer over 10⁶: a 7-decimal depth average comes back as it went in.

No SQL and no database driver here: the values module imports it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from watcher.kalshi.fixed import MICROS_PER_UNIT

if TYPE_CHECKING:
    from watcher.store.records import PaperFill

__all__ = ["COLUMNS", "check_fill", "decode", "encode", "exact_amount", "row_fields", "to_row"]

#: The stored columns of a fill, in the order of :func:`to_row` (``id`` is the database's).
COLUMNS = (
    "fill_key", "position_id", "ticker", "side", "action", "contracts_e6",
    "price_e6", "price_dollars", "fee_e6", "fee_dollars", "ts_ms", "source",
)  # fmt: skip

_FILL_CHOICES = {"side": "YES NO", "action": "buy sell", "source": "cli rule web chat"}
_BIGINT_MAX = 2**63 - 1


def exact_amount(name: str, value: object) -> Decimal:
    """``value`` as a finite Decimal (an int is accepted, a float or bool is not).

    Raises:
        TypeError: ``value`` is neither a Decimal nor an int.
        ValueError: ``value`` is NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}: {value!r}")
    if not Decimal(value).is_finite():
        raise ValueError(f"{name} must be a finite number, not {value}")
    return Decimal(value)


def check_fill(fill: PaperFill) -> None:
    """Refuse a fill the store cannot keep exactly, or whose fields are not the known values.

    Raises:
        ValueError: see :class:`~watcher.store.records.PaperFill`.
        TypeError: ``ts_ms`` is not an int.
    """
    for name, allowed in _FILL_CHOICES.items():
        if getattr(fill, name) not in allowed.split():
            raise ValueError(f"{name} must be one of {allowed}: {getattr(fill, name)!r}")
    for name in ("fill_key", "position_id", "ticker"):
        if not isinstance(getattr(fill, name), str) or not getattr(fill, name):
            raise ValueError(f"{name} must be a non-empty string: {getattr(fill, name)!r}")
    if isinstance(fill.ts_ms, bool) or not isinstance(fill.ts_ms, int):
        raise TypeError(f"ts_ms must be an int (Unix milliseconds): {fill.ts_ms!r}")
    scaled = fill.contracts.scaleb(6)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"contracts {fill.contracts} has more than 6 decimals (the store's limit)")
    if not 0 < scaled <= _BIGINT_MAX:
        raise ValueError(f"contracts must be positive (and below 9.2e12): {fill.contracts}")
    if not 0 <= fill.price_dollars <= 1:
        raise ValueError(f"price_dollars must be between 0 and 1 dollar: {fill.price_dollars}")
    if not 0 <= fill.fee_dollars.scaleb(6) <= _BIGINT_MAX:
        raise ValueError(f"fee_dollars must not be negative (nor above 9.2e12): {fill.fee_dollars}")


def encode(value: Decimal) -> tuple[int, str | None]:
    """``(micro-units rounded half-even, None)`` when exact, else with the exact text."""
    scaled = value.scaleb(6)
    whole = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    return int(whole), None if whole == scaled else f"{value:f}"


def decode(micros: int, text: str | None) -> Decimal:
    """The exact amount :func:`encode` stored."""
    return Decimal(text) if text is not None else Decimal(micros) / MICROS_PER_UNIT


def to_row(fill: PaperFill) -> tuple[Any, ...]:
    """The values of :data:`COLUMNS` for ``fill``."""
    price_e6, price_text = encode(fill.price_dollars)
    fee_e6, fee_text = encode(fill.fee_dollars)
    return (
        fill.fill_key, fill.position_id, fill.ticker, fill.side, fill.action, fill.contracts_e6,
        price_e6, price_text, fee_e6, fee_text, fill.ts_ms, fill.source,
    )  # fmt: skip


def row_fields(row: Any) -> dict[str, Any]:
    """The :class:`~watcher.store.records.PaperFill` fields of a row of :data:`COLUMNS`."""
    key, position, ticker, side, action, contracts_e6, *amounts, ts_ms, source = tuple(row)
    price_e6, price_text, fee_e6, fee_text = amounts
    return {
        "fill_key": key, "position_id": position, "ticker": ticker, "side": side,
        "action": action, "contracts": Decimal(contracts_e6) / MICROS_PER_UNIT,
        "price_dollars": decode(price_e6, price_text), "fee_dollars": decode(fee_e6, fee_text),
        "ts_ms": ts_ms, "source": source,
    }  # fmt: skip
