"""A local Kalshi order book per market, built from snapshot and delta frames (§7).

Sans-I/O: no asyncio, no sockets. Frames go in, best bids and asks come out.

Kalshi publishes only bids, for both legs. A YES bid at X is a NO ask at 1 − X and a NO bid at
Y is a YES ask at 1 − Y, so::

    best YES ask = $1 − best NO bid        best NO ask = $1 − best YES bid

Invariants kept by :class:`OrderBook`:

- prices and counts are integers in micro-units (``watcher.kalshi.fixed``), never floats;
- ``no_bids`` is always keyed by the NO-leg price, whichever ``use_yes_price`` convention the
  subscription used (a NO level reported at yes-leg price ``p`` is stored at ``1 − p``);
- every stored level holds a positive count: a level that reaches zero is removed, and a delta
  that would drive a level below zero raises :class:`~watcher.kalshi.errors.ProtocolError` and
  leaves the book invalid, because clamping would hide a lost message;
- an invalid book holds no levels and ignores deltas until the next snapshot (or REST resync).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Literal, TypeAlias

from watcher.kalshi.errors import ProtocolError
from watcher.kalshi.fixed import DOLLAR, format_cents, micros_to_decimal, to_micros
from watcher.kalshi.messages import (
    OrderbookDelta,
    OrderbookDeltaMsg,
    OrderbookSnapshot,
    OrderbookSnapshotMsg,
    RestOrderbook,
)

__all__ = ["BookSide", "BookState", "OrderBook", "OrderBooks"]

BookSide: TypeAlias = Literal["yes", "no"]
Level: TypeAlias = tuple[int, int]


@dataclass(frozen=True)
class BookState:
    """An immutable copy of a book, for comparisons in tests and for logging.

    Attributes:
        market_ticker: the market.
        is_valid: whether the book was in sync when copied.
        yes: YES bids as ``(price micros, contracts micros)``, best (highest) first.
        no: NO bids in NO-leg prices, best (highest) first.
    """

    market_ticker: str
    is_valid: bool
    yes: tuple[Level, ...]
    no: tuple[Level, ...]


class OrderBook:
    """The order book of one market.

    Args:
        market_ticker: the market this book belongs to; frames for another market are refused.
    """

    def __init__(self, market_ticker: str) -> None:
        self.market_ticker = market_ticker
        self._yes: dict[int, int] = {}
        self._no: dict[int, int] = {}
        self._valid = False

    # Public methods

    def apply_snapshot(self, msg: OrderbookSnapshotMsg, *, use_yes_price: bool = False) -> None:
        """Replace the whole book with a snapshot and mark it valid.

        Args:
            msg: the ``orderbook_snapshot`` payload.
            use_yes_price: the subscription reports NO prices in yes-leg terms.

        Raises:
            ProtocolError: a price or count is out of range; the book is left invalid.
            ValueError: the snapshot is for another market.
        """
        self._check_market(msg.market_ticker)
        self._replace(msg.yes_dollars_fp, msg.no_dollars_fp, convert_no=use_yes_price)

    def apply_rest(self, book: RestOrderbook) -> None:
        """Resync from ``GET /markets/{ticker}/orderbook`` (NO prices are NO-leg there).

        Raises:
            ProtocolError: a price or count is out of range; the book is left invalid.
        """
        self._replace(book.yes_dollars or [], book.no_dollars or [], convert_no=False)

    def apply_delta(self, msg: OrderbookDeltaMsg, *, use_yes_price: bool = False) -> bool:
        """Add ``delta_fp`` contracts to the level at (``side``, ``price_dollars``).

        Args:
            msg: the ``orderbook_delta`` payload.
            use_yes_price: the subscription reports NO prices in yes-leg terms.

        Returns:
            ``True`` if applied; ``False`` if ignored because the book is invalid (no snapshot
            yet, or invalidated after a gap). The caller should request a snapshot.

        Raises:
            ProtocolError: the level would go negative, or a value is out of range; the book is
                invalidated first, so the caller only has to resync.
            ValueError: the delta is for another market.
        """
        self._check_market(msg.market_ticker)
        if not self._valid:
            return False
        try:
            self._add(msg, convert_no=use_yes_price)
        except ProtocolError:
            self.invalidate()
            raise
        return True

    def invalidate(self) -> None:
        """Drop every level and ignore deltas until the next snapshot (call it on a gap)."""
        self._yes.clear()
        self._no.clear()
        self._valid = False

    def levels(self, side: BookSide) -> list[Level]:
        """Bids of one side as ``(price micros, contracts micros)``, best (highest) first."""
        return sorted(self._side(side).items(), reverse=True)

    def state(self) -> BookState:
        """An immutable copy of the book; two books are equal when their states are."""
        return BookState(
            market_ticker=self.market_ticker,
            is_valid=self._valid,
            yes=tuple(self.levels("yes")),
            no=tuple(self.levels("no")),
        )

    @property
    def is_valid(self) -> bool:
        """Whether the book is in sync (a snapshot was applied and nothing broke since)."""
        return self._valid

    @property
    def yes_bids(self) -> Mapping[int, int]:
        """Read-only view: YES price micros → contracts micros."""
        return MappingProxyType(self._yes)

    @property
    def no_bids(self) -> Mapping[int, int]:
        """Read-only view: NO-leg price micros → contracts micros."""
        return MappingProxyType(self._no)

    @property
    def best_yes_bid(self) -> int | None:
        """Highest YES bid in micros, or ``None`` when there is none."""
        return max(self._yes) if self._yes else None

    @property
    def best_no_bid(self) -> int | None:
        """Highest NO bid (NO-leg price) in micros, or ``None``."""
        return max(self._no) if self._no else None

    @property
    def best_yes_ask(self) -> int | None:
        """Lowest YES ask = $1 − best NO bid, or ``None``."""
        best = self.best_no_bid
        return None if best is None else DOLLAR - best

    @property
    def best_no_ask(self) -> int | None:
        """Lowest NO ask = $1 − best YES bid, or ``None``."""
        best = self.best_yes_bid
        return None if best is None else DOLLAR - best

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OrderBook):
            return NotImplemented
        return self.state() == other.state()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        status = "valid" if self._valid else "invalid"
        return (
            f"<OrderBook {self.market_ticker} {status}"
            f" yes={len(self._yes)} levels best {_show(self.best_yes_bid)}"
            f" no={len(self._no)} levels best {_show(self.best_no_bid)}>"
        )

    # Private methods

    def _check_market(self, market_ticker: str) -> None:
        if market_ticker != self.market_ticker:
            raise ValueError(f"order book of {self.market_ticker} got a frame for {market_ticker}")

    def _side(self, side: BookSide) -> dict[int, int]:
        return self._yes if side == "yes" else self._no

    def _replace(
        self,
        yes: Iterable[tuple[Decimal, Decimal]],
        no: Iterable[tuple[Decimal, Decimal]],
        *,
        convert_no: bool,
    ) -> None:
        # Build both sides first so that a bad level cannot leave half a snapshot behind.
        self.invalidate()
        new_yes = self._build_side("yes", yes, convert=False)
        new_no = self._build_side("no", no, convert=convert_no)
        self._yes, self._no, self._valid = new_yes, new_no, True

    def _build_side(
        self, side: BookSide, pairs: Iterable[tuple[Decimal, Decimal]], *, convert: bool
    ) -> dict[int, int]:
        levels: dict[int, int] = {}
        for price_dollars, count_fp in pairs:
            price = self._price(side, price_dollars, convert=convert)
            count = self._micros(side, "count", count_fp)
            if count < 0:
                raise ProtocolError(
                    f"orderbook snapshot has a negative level: market {self.market_ticker},"
                    f" side {side}, price {price_dollars}, count {count_fp}"
                )
            if count:  # a zero level is no level; duplicates add up
                levels[price] = levels.get(price, 0) + count
        return levels

    def _add(self, msg: OrderbookDeltaMsg, *, convert_no: bool) -> None:
        side: BookSide = msg.side
        price = self._price(side, msg.price_dollars, convert=convert_no and side == "no")
        delta = self._micros(side, "delta", msg.delta_fp)
        levels = self._side(side)
        before = levels.get(price, 0)
        after = before + delta
        if after < 0:
            raise ProtocolError(
                f"orderbook delta makes a level negative: market {self.market_ticker},"
                f" side {side}, price {micros_to_decimal(price)}:"
                f" {micros_to_decimal(before)} contracts + delta {msg.delta_fp}"
                f" = {micros_to_decimal(after)}"
            )
        if after:
            levels[price] = after
        else:
            levels.pop(price, None)

    def _price(self, side: BookSide, value: Decimal, *, convert: bool) -> int:
        price = self._micros(side, "price", value)
        if not 0 < price < DOLLAR:
            raise ProtocolError(
                f"orderbook price out of range: market {self.market_ticker}, side {side},"
                f" price {value} (must be between 0 and 1 dollar)"
            )
        return DOLLAR - price if convert else price

    def _micros(self, side: BookSide, what: str, value: Decimal) -> int:
        try:
            return to_micros(value)
        except ValueError as exc:
            raise ProtocolError(
                f"orderbook {what} is not exact: market {self.market_ticker}, side {side},"
                f" {what} {value}: {exc}"
            ) from exc


class OrderBooks:
    """One :class:`OrderBook` per market, fed with ``orderbook_snapshot``/``_delta`` frames.

    Args:
        use_yes_price: the ``use_yes_price`` value the subscription was made with (pin it).
    """

    def __init__(self, *, use_yes_price: bool = False) -> None:
        self.use_yes_price = use_yes_price
        self._books: dict[str, OrderBook] = {}

    # Public methods

    def get(self, market_ticker: str) -> OrderBook | None:
        """The book of a market, or ``None`` before its first snapshot."""
        return self._books.get(market_ticker)

    def apply(self, frame: OrderbookSnapshot | OrderbookDelta) -> bool:
        """Apply one frame to the book of its market.

        Returns:
            ``True`` if applied; ``False`` for a delta ignored because its book has no valid
            snapshot yet (the caller should request one).

        Raises:
            ProtocolError: see :meth:`OrderBook.apply_delta`; the book is left invalid.
        """
        ticker = frame.msg.market_ticker
        if isinstance(frame, OrderbookSnapshot):
            book = self._books.setdefault(ticker, OrderBook(ticker))
            book.apply_snapshot(frame.msg, use_yes_price=self.use_yes_price)
            return True
        book_or_none = self._books.get(ticker)
        if book_or_none is None:
            return False
        return book_or_none.apply_delta(frame.msg, use_yes_price=self.use_yes_price)

    def apply_rest(self, market_ticker: str, book: RestOrderbook) -> None:
        """Resync one market from a REST order book (creates the book if needed)."""
        self._books.setdefault(market_ticker, OrderBook(market_ticker)).apply_rest(book)

    def invalidate(self, market_tickers: Iterable[str] | None = None) -> None:
        """Invalidate some books (all when ``market_tickers`` is ``None``), e.g. after a gap."""
        tickers = self._books.keys() if market_tickers is None else market_tickers
        for ticker in tickers:
            book = self._books.get(ticker)
            if book is not None:
                book.invalidate()

    def remove(self, market_ticker: str) -> None:
        """Forget a market (after unsubscribing from it)."""
        self._books.pop(market_ticker, None)

    def __contains__(self, market_ticker: object) -> bool:
        return market_ticker in self._books

    def __iter__(self) -> Iterator[str]:
        return iter(self._books)

    def __len__(self) -> int:
        return len(self._books)

    def __repr__(self) -> str:
        valid = sum(book.is_valid for book in self._books.values())
        return (
            f"<OrderBooks {len(self._books)} markets, {valid} valid,"
            f" use_yes_price={self.use_yes_price}>"
        )


def _show(micros: int | None) -> str:
    return "-" if micros is None else format_cents(micros)
