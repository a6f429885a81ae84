"""Paper fills at executable prices, and the arithmetic of closing (design.md §11). Pure.

A paper order takes liquidity the way a real one would. Kalshi quotes and publishes bids only
(kalshi-protocol.md §7), so every price a side trades at comes from the YES quote or a book:

=========  ====================================  ==========================================
order      best price                            levels it takes from ``GET …/orderbook``
=========  ====================================  ==========================================
buy YES    YES ask                               NO bids, as YES asks: 1 − NO bid, lowest first
buy NO     NO ask = 1 − YES bid                  YES bids, as NO asks: 1 − YES bid, lowest first
sell YES   YES bid                               YES bids, highest first
sell NO    NO bid = 1 − YES ask                  NO bids, highest first
=========  ====================================  ==========================================

:func:`fill_order` walks the levels (best first) until the order is filled and returns the
exact average price. A limit never fills past it (a buy above, a sell below), and there are no
partial fills: the whole order fills within the limit or it is refused with
:class:`~watcher.errors.PaperError`. When the size at the best price is unknown the order fills
there whole and the fill says ``depth_checked=False``.

Prices here are :class:`~decimal.Decimal` dollars of the side traded, contracts Decimal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Final, Literal, TypeAlias

from watcher.domain.fees import CENT_DOLLARS
from watcher.domain.positions import Side, exact_decimal
from watcher.errors import PaperError

__all__ = [
    "CONTRACT_STEP",
    "TRADING_STATUSES",
    "Action",
    "BuyResult",
    "CloseResult",
    "Fill",
    "Level",
    "Quote",
    "at_least_cents",
    "best_level",
    "book_levels",
    "check_contracts",
    "fee_share",
    "fill_order",
    "realized_pnl",
]

Action: TypeAlias = Literal["buy", "sell"]

#: The smallest order size Kalshi accepts (fractional trading): 0.01 contracts.
CONTRACT_STEP: Final = Decimal("0.01")
#: Market statuses that trade; ``None`` (a streamed quote says nothing of it) counts as trading.
TRADING_STATUSES: Final = frozenset({"active", "open"})
#: Averages are written to trades.json with at most 6 decimals (micro-dollars).
_MICROS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Level:
    """One price level of the side being taken: a price in dollars, and its size (None: unknown)."""

    price: Decimal
    size: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    """A market's YES quote, the freshest there was, and where it came from.

    Attributes:
        ticker: the market.
        yes_bid, yes_ask: best YES bid and ask in dollars (None or out of 0–1: no such side).
        yes_bid_size, yes_ask_size: contracts at those prices (None: unknown).
        status: the market's REST status, or None when the quote does not say (a streamed row).
        ts_ms: when the quote was true (Unix ms).
        source: ``"stream"`` (the running service's latest row) or ``"rest"``.
    """

    ticker: str
    yes_bid: Decimal | None
    yes_ask: Decimal | None
    yes_bid_size: Decimal | None = None
    yes_ask_size: Decimal | None = None
    status: str | None = None
    ts_ms: int = 0
    source: str = "rest"

    @property
    def is_trading(self) -> bool:
        """False when the market's status says it does not trade (closed, settled, paused)."""
        return self.status is None or self.status in TRADING_STATUSES


@dataclass(frozen=True, slots=True)
class Fill:
    """A paper order as it filled.

    Attributes:
        side: ``"YES"`` or ``"NO"``: the contracts traded.
        action: ``"buy"`` or ``"sell"``.
        contracts: the whole order (there are no partial fills).
        parts: ``(price, contracts)`` taken at each level, best first.
        price: the average price in dollars: exact when it has at most 6 decimals, else rounded
            to the micro-dollar against the trader (a buy up, a sell down; ``is_rounded``).
        cost: Σ price × contracts, exact.
        depth_checked: False when the size at the best price was unknown.
    """

    side: Side
    action: Action
    contracts: Decimal
    parts: tuple[tuple[Decimal, Decimal], ...]
    price: Decimal
    cost: Decimal
    depth_checked: bool

    @property
    def is_rounded(self) -> bool:
        """True when :attr:`price` is not the exact average (a repeating decimal)."""
        return self.price * self.contracts != self.cost

    @property
    def levels_taken(self) -> int:
        return len(self.parts)


@dataclass(frozen=True, slots=True)
class BuyResult:
    """A paper buy: the new position's id, its fill and the entry fee."""

    position_id: str
    ticker: str
    fill: Fill
    fee: Decimal


@dataclass(frozen=True, slots=True)
class CloseResult:
    """What closing (part of) a paper position did.

    Attributes:
        position_id: the entry sold from (it stays open with ``remaining`` contracts when
            the close was partial).
        closed_id: the CLOSED entry: ``position_id`` itself on a full close, else the new
            entry appended with ``parent_id``.
        ticker: the market.
        fill: the sell.
        entry_price: the position's entry price (dollars, its side's).
        entry_fee: the share of the entry fee carried by the contracts sold.
        exit_fee: the fee of the sell.
        realized: (exit − entry) × contracts − entry_fee − exit_fee, exact.
        remaining: contracts still open in ``position_id`` (0 on a full close).
    """

    position_id: str
    closed_id: str
    ticker: str
    fill: Fill
    entry_price: Decimal
    entry_fee: Decimal
    exit_fee: Decimal
    realized: Decimal
    remaining: Decimal

    @property
    def fees(self) -> Decimal:
        """Entry fee share plus exit fee."""
        return self.entry_fee + self.exit_fee


def check_contracts(contracts: Decimal) -> Decimal:
    """``contracts`` if it is an order size Kalshi accepts (more than 0, steps of 0.01).

    Raises:
        PaperError: it is not.
    """
    if not contracts.is_finite() or contracts <= 0 or contracts % CONTRACT_STEP:
        raise PaperError(
            f"quantity must be more than 0 in steps of {CONTRACT_STEP}, but got {contracts}"
        )
    return contracts


def best_level(quote: Quote, side: Side, action: Action) -> Level:
    """The best price (and its size) at which ``action`` trades ``side`` on ``quote``.

    Raises:
        PaperError: the market does not trade, or that side of the book is empty.
    """
    if not quote.is_trading:
        raise PaperError(f"{quote.ticker} is {quote.status}: it does not trade")
    takes_ask = (action == "buy") == (side == "YES")
    yes_price, size = (
        (quote.yes_ask, quote.yes_ask_size) if takes_ask else (quote.yes_bid, quote.yes_bid_size)
    )
    if yes_price is None or not 0 < yes_price < 1:
        wanted = "ask" if action == "buy" else "bid"
        raise PaperError(f"{quote.ticker} has no {side} {wanted} to {action} at")
    price = yes_price if side == "YES" else 1 - yes_price
    return Level(price, size if size is None or size > 0 else None)


def book_levels(
    side: Side,
    action: Action,
    *,
    yes_bids: Iterable[tuple[Decimal, Decimal]],
    no_bids: Iterable[tuple[Decimal, Decimal]],
) -> list[Level]:
    """The levels ``action`` on ``side`` takes from an order book of bids, best first.

    Args:
        side, action: the order.
        yes_bids: ``(YES price, contracts)`` bids, in any order (REST gives them ascending).
        no_bids: ``(NO price, contracts)`` bids (NO-leg pricing), in any order.
    """
    if action == "sell":
        own = yes_bids if side == "YES" else no_bids
        return sorted((Level(p, s) for p, s in own if s > 0), key=_price, reverse=True)
    other = no_bids if side == "YES" else yes_bids
    return sorted((Level(1 - p, s) for p, s in other if s > 0), key=_price)


def fill_order(
    levels: Sequence[Level],
    contracts: Decimal,
    *,
    side: Side,
    action: Action,
    limit: Decimal | None = None,
) -> Fill:
    """Fill ``contracts`` from ``levels`` (best first), within ``limit`` if given.

    A level of unknown size (only ever the best alone) takes the whole order; the fill then
    says ``depth_checked=False``.

    Raises:
        PaperError: nothing to fill from, or the levels within the limit hold fewer contracts
            than ordered (nothing fills: no partial fills).
    """
    if not levels:
        raise PaperError(f"no {side} liquidity to {action}: the book is empty")
    usable = [level for level in levels if limit is None or _within(level.price, limit, action)]
    if not usable:
        best = _cents(levels[0].price)
        raise PaperError(f"limit {_cents(limit)} cannot fill: the best {side} price is {best}")
    parts, left = _walk(usable, contracts)
    if left > 0:
        within = "" if limit is None else f" within the limit {_cents(limit)}"
        offered = f"only {_count(contracts - left)} of {_count(contracts)} {side} contracts"
        raise PaperError(f"{offered} are offered{within}: nothing filled (no partial fills)")
    cost = sum((price * size for price, size in parts), Decimal(0))
    return Fill(
        side=side,
        action=action,
        contracts=contracts,
        parts=tuple(parts),
        price=_average(cost, contracts, action),
        cost=cost,
        depth_checked=all(level.size is not None for level in usable[: len(parts)]),
    )


def fee_share(fee: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """The part of ``fee`` carried by ``part`` of ``whole`` contracts, rounded half-even to the
    cent (the rest stays with the remainder, so the shares always add up to ``fee``)."""
    if part >= whole:
        return fee
    return (fee * part / whole).quantize(CENT_DOLLARS, rounding=ROUND_HALF_EVEN)


def realized_pnl(
    *,
    entry_price: Decimal,
    exit_price: Decimal,
    contracts: Decimal,
    entry_fee: Decimal,
    exit_fee: Decimal,
) -> Decimal:
    """(exit − entry) × contracts − entry fee − exit fee, exactly (at least two decimals)."""
    value = (exit_price - entry_price) * contracts - entry_fee - exit_fee
    return at_least_cents(value)


# Private functions


def at_least_cents(value: Decimal) -> Decimal:
    """``value`` with at least two decimals (``Decimal("-11")`` → ``Decimal("-11.00")``)."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        return value.quantize(CENT_DOLLARS)
    return value


def _price(level: Level) -> Decimal:
    return level.price


def _within(price: Decimal, limit: Decimal, action: Action) -> bool:
    return price <= limit if action == "buy" else price >= limit


def _walk(
    levels: Sequence[Level], contracts: Decimal
) -> tuple[list[tuple[Decimal, Decimal]], Decimal]:
    parts: list[tuple[Decimal, Decimal]] = []
    left = contracts
    for level in levels:
        take = left if level.size is None else min(left, level.size)
        parts.append((level.price, take))
        left -= take
        if left <= 0:
            break
    return parts, left


def _average(cost: Decimal, contracts: Decimal, action: Action) -> Decimal:
    """cost / contracts exactly when that fits in 6 decimals, else rounded against the trader."""
    scaled = Fraction(cost) / Fraction(contracts) * _MICROS
    micros = math.ceil(scaled) if action == "buy" else math.floor(scaled)
    return exact_decimal(micros, -6).normalize()


def _count(contracts: Decimal) -> str:
    text = f"{contracts:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _cents(price: Decimal | None) -> str:
    if price is None:
        return "?"
    cents = (price * 100).normalize()
    return f"{cents:f}¢"
