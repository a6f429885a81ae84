"""Paper positions and how they are valued: side-aware prices and exact P&L (design.md §4).

A position's entry price is a price of its side: for NO, a NO price. Kalshi quotes only YES, so
every price shown for a NO position is converted: NO bid = 1 − YES ask, NO ask = 1 − YES bid,
NO last = 1 − YES last. Prices are integer micro-dollars (see :mod:`watcher.kalshi.fixed`);
contracts and P&L are exact :class:`~decimal.Decimal` values, never binary floats.

``trades.json`` is read by :mod:`watcher.domain.trades_file`. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from watcher.kalshi.fixed import DOLLAR

__all__ = [
    "DEFAULT_STATUS",
    "SIDES",
    "STATUSES",
    "UNWATCHED",
    "WATCHED_STATUSES",
    "Portfolio",
    "Position",
    "PriceBasis",
    "Side",
    "SideQuote",
    "exact_decimal",
    "mark_price",
    "move_micros",
    "pnl_dollars",
    "side_quote",
]

Side: TypeAlias = Literal["YES", "NO"]
PriceBasis: TypeAlias = Literal["last", "bid", "mid"]

SIDES: Final[tuple[Side, ...]] = ("YES", "NO")
#: Positions in these states are watched (subscribed to, evaluated by rules).
WATCHED_STATUSES: Final = frozenset({"PENDING", "OPEN"})
#: Positions in these states are kept but not watched.
UNWATCHED: Final = frozenset({"SETTLED", "CLOSED", "CANCELLED"})
STATUSES: Final = WATCHED_STATUSES | UNWATCHED
#: The status of an entry that has none.
DEFAULT_STATUS: Final = "PENDING"

STATUS_LIST: Final = "PENDING, OPEN, SETTLED, CLOSED, CANCELLED"


@dataclass(frozen=True, slots=True)
class Position:
    """One paper position, one entry of ``trades.json``.

    Attributes:
        index: 1-based trade number in the file (``trade #N`` in messages).
        line: line of ``trades.json`` where the entry starts.
        ticker: Kalshi market ticker, stripped and upper-cased.
        side: ``"YES"`` or ``"NO"``.
        entry_micros: entry price of this side in micro-dollars (a NO position's is a NO price).
        contracts: exact number of contracts; from ``contracts``/``quantity``, or
            ``position_size`` dollars divided by the entry price, rounded down to 0.01.
        status: upper-case status; ``PENDING`` when the entry has none.
        id: the entry's ``id`` (a number becomes its text), if any.
        title: the entry's ``title``, if any.
        settles: the entry's ``settles`` (or else ``expiration``) text, if any.
        raw: the entry as read, with every unknown field (numbers are int or Decimal), read-only.
    """

    index: int
    line: int
    ticker: str
    side: Side
    entry_micros: int
    contracts: Decimal
    status: str = DEFAULT_STATUS
    id: str | None = None
    title: str | None = None
    settles: str | None = None
    raw: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be YES or NO, but got {self.side!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUS_LIST}, but got {self.status!r}")

    @property
    def is_watched(self) -> bool:
        """True when the status is ``PENDING`` or ``OPEN``."""
        return self.status in WATCHED_STATUSES


@dataclass(frozen=True)
class Portfolio:
    """Every position of one ``trades.json``, in file order."""

    positions: tuple[Position, ...]
    path: str = "trades.json"

    def watched(self) -> tuple[Position, ...]:
        """The positions to watch (``PENDING`` or ``OPEN``), in file order."""
        return self._watched

    def tickers(self) -> list[str]:
        """Tickers of the watched positions, each once, in file order (what to subscribe to)."""
        return list(self._watched_index)

    def by_ticker(self, ticker: str, *, watched_only: bool = False) -> tuple[Position, ...]:
        """Every position in ``ticker`` (watched or not, unless ``watched_only``), in file order."""
        index = self._watched_index if watched_only else self._index
        return index.get(ticker, ())

    # Computed once per portfolio: the rule engine asks on every tick.

    @cached_property
    def _watched(self) -> tuple[Position, ...]:
        return tuple(position for position in self.positions if position.is_watched)

    @cached_property
    def _index(self) -> dict[str, tuple[Position, ...]]:
        return _group(self.positions)

    @cached_property
    def _watched_index(self) -> dict[str, tuple[Position, ...]]:
        return _group(self._watched)

    def __repr__(self) -> str:
        return (
            f"Portfolio(path={self.path!r}, positions={len(self.positions)}, "
            f"watched={len(self.watched())})"
        )


def _group(positions: Iterable[Position]) -> dict[str, tuple[Position, ...]]:
    groups: dict[str, list[Position]] = {}
    for position in positions:
        groups.setdefault(position.ticker, []).append(position)
    return {ticker: tuple(group) for ticker, group in groups.items()}


# Side-aware prices and P&L


@dataclass(frozen=True, slots=True)
class SideQuote:
    """Best bid, best ask and last price of one side, in micro-dollars (None when unknown)."""

    bid: int | None
    ask: int | None
    last: int | None


def side_quote(
    side: Side, *, yes_bid: int | None, yes_ask: int | None, yes_last: int | None
) -> SideQuote:
    """The market's quote seen from ``side``.

    Kalshi quotes only the YES side; the book is reciprocal, so for NO:
    NO bid = 1 − YES ask, NO ask = 1 − YES bid, NO last = 1 − YES last.
    YES bid 62¢ / ask 64¢ is NO bid 36¢ / ask 38¢. None stays None.

    Raises:
        ValueError: ``side`` is not ``"YES"`` or ``"NO"``.
    """
    if side == "YES":
        return SideQuote(bid=yes_bid, ask=yes_ask, last=yes_last)
    if side == "NO":
        return SideQuote(bid=_other(yes_ask), ask=_other(yes_bid), last=_other(yes_last))
    raise ValueError(f"side must be YES or NO, but got {side!r}")


def _other(yes_micros: int | None) -> int | None:
    return None if yes_micros is None else DOLLAR - yes_micros


def mark_price(quote: SideQuote, basis: PriceBasis = "last") -> int | None:
    """The price a position is marked at, in micro-dollars, or None when unknown.

    ``mid`` is ``(bid + ask) / 2``; when that falls on half a micro-dollar it is rounded
    half-to-even to a whole micro-dollar (so prices stay integral and unbiased). ``mid`` is
    None unless both bid and ask are known.

    Raises:
        ValueError: ``basis`` is not ``last``, ``bid`` or ``mid``.
    """
    if basis == "last":
        return quote.last
    if basis == "bid":
        return quote.bid
    if basis != "mid":
        raise ValueError(f"price basis must be last, bid or mid, but got {basis!r}")
    if quote.bid is None or quote.ask is None:
        return None
    half, odd = divmod(quote.bid + quote.ask, 2)
    return half + 1 if odd and half % 2 else half


def move_micros(position: Position, mark_micros: int) -> int:
    """How far ``mark_micros`` (a price of the position's side) is from the entry: mark − entry."""
    return mark_micros - position.entry_micros


def pnl_dollars(position: Position, mark_micros: int) -> Decimal:
    """Paper profit or loss in dollars: contracts × (mark − entry), exactly.

    ``mark_micros`` is a price of the position's side (see :func:`side_quote`). The result has
    at least two decimals and no trailing zeros beyond them: ``Decimal("1.45")``,
    ``Decimal("16.6665")``, ``Decimal("0.00")``.
    """
    sign, digits, exponent = position.contracts.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"contracts must be finite, but got {position.contracts}")
    coefficient = int("".join(map(str, digits))) * (-1 if sign else 1)
    product = coefficient * move_micros(position, mark_micros)
    exponent -= 6  # micro-dollars to dollars
    if exponent > -2:
        product, exponent = product * 10 ** (exponent + 2), -2
    while exponent < -2 and product % 10 == 0:
        product, exponent = product // 10, exponent + 1
    return exact_decimal(product, exponent)


def exact_decimal(coefficient: int, exponent: int) -> Decimal:
    """``coefficient × 10**exponent`` as a Decimal, exactly, whatever the context precision."""
    digits = tuple(int(digit) for digit in str(abs(coefficient)))
    return Decimal((int(coefficient < 0), digits, exponent))
