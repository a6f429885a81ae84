"""What a paper order says and takes: the order's inputs checked once, and its fill in words.

The desk (:mod:`watcher.service.paper`) normalises every input here at its entry point (a
ticker, ``yes``/``no``, a quantity, a limit in cents, who placed it) and describes its result
with :func:`buy_text` and :func:`close_text`, the words the command line prints and a rule's
alert carries.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from watcher.domain.paper import BuyResult, CloseResult, Fill, check_contracts
from watcher.domain.positions import SIDES, Side
from watcher.errors import PaperError
from watcher.kalshi.fixed import format_cents, to_micros
from watcher.rules.wording import contracts_text, dollars_text, signed_dollars
from watcher.service.jsonfile import RawNumber
from watcher.service.paper_file import iso_utc, price_text

__all__ = [
    "SOURCES",
    "buy_entry",
    "buy_text",
    "check_source",
    "close_text",
    "fill_key",
    "order_contracts",
    "order_limit",
    "order_side",
    "order_ticker",
]

#: Who placed an order (``paper_fills.source``).
SOURCES = ("cli", "rule", "web", "chat")


def buy_text(result: BuyResult) -> str:
    """``bought 10 YES KXCPI-26JAN-T0.3 at 45¢ (fee $0.18; depth not checked)``."""
    fill = result.fill
    return (
        f"bought {contracts_text(fill.contracts)} {fill.side} {result.ticker} at "
        f"{_cents(fill.price)} (fee {dollars_text(result.fee)}{_depth_note(fill)})"
    )


def close_text(result: CloseResult, *, ticker: bool = True) -> str:
    """``closed 50 YES KXCPI-26JAN-T0.3 at 20¢: realized -$11.25 after $0.70 fees``."""
    fill = result.fill
    market = f" {result.ticker}" if ticker else ""
    left = f"; {contracts_text(result.remaining)} still open" if result.remaining > 0 else ""
    note = _depth_note(fill).removeprefix("; ")
    return (
        f"closed {contracts_text(fill.contracts)} {fill.side}{market} at {_cents(fill.price)}: "
        f"realized {signed_dollars(result.realized)} after {dollars_text(result.fees)} fees"
        f"{left}{f' ({note})' if note else ''}"
    )


def buy_entry(
    position_id: str, ticker: str, fill: Fill, fee: Decimal, now_ms: int
) -> dict[str, Any]:
    return {
        "id": position_id,
        "ticker": ticker,
        "side": fill.side,
        "contracts": RawNumber(contracts_text(fill.contracts)),
        "entry_price_dollars": price_text(fill.price),
        "fees_dollars": f"{fee:.2f}",
        "status": "PENDING",
        "opened_at": iso_utc(now_ms),
        "source": "paper",
    }


def fill_key(source: str) -> str:
    return f"{source}:{uuid.uuid4()}"


def order_ticker(ticker: str) -> str:
    cleaned = ticker.strip().upper()
    if not cleaned:
        raise PaperError("ticker is empty")
    return cleaned


def order_side(side: str) -> Side:
    for name in SIDES:
        if side.strip().upper() == name:
            return name
    raise PaperError(f"side must be yes or no, but got {side!r}")


def order_contracts(value: Decimal | int | str) -> Decimal:
    return check_contracts(_decimal(value, "quantity"))


def order_limit(cents: Decimal | int | str | None) -> Decimal | None:
    """A limit in cents (``45``, ``"45.5"``) as dollars; more than 0 and less than 100."""
    if cents is None:
        return None
    value = _decimal(cents, "limit")
    if not 0 < value < 100:
        raise PaperError(
            f"limit is in cents and must be more than 0 and less than 100, but got {cents}"
        )
    return value / 100


def check_source(source: str) -> None:
    if source not in SOURCES:
        raise PaperError(f"source must be one of {', '.join(SOURCES)}, but got {source!r}")


# Private functions


def _depth_note(fill: Fill) -> str:
    if not fill.depth_checked:
        return "; depth not checked"
    if fill.levels_taken > 1:
        rounded = ", rounded against you" if fill.is_rounded else ""
        return f"; average of {fill.levels_taken} levels{rounded}"
    return ""


def _cents(price: Decimal) -> str:
    return format_cents(to_micros(price))


def _decimal(value: Decimal | int | str, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise PaperError(f"{what} must be a number, but got {value!r}")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise PaperError(f"{what} must be a number, but got {value!r}") from None
    if not number.is_finite():
        raise PaperError(f"{what} must be a number, but got {value!r}")
    return number
