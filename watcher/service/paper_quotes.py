"""The freshest quote there is, and the depth behind it, for paper orders (issue 12).

:class:`QuoteBoard` answers "what would this order fill at now":

1. the running service's latest stored ``ticker`` row (:meth:`ReadModel.latest_ticker`) when it
   was received less than ``fresh_ms`` (10 s) ago; the stored market row says whether the
   market still trades;
2. else Kalshi's ``GET /markets/{ticker}`` (signed when a key is configured);
3. and when the order is larger than the size at the best price, ``GET …/orderbook`` to walk
   the levels (:func:`watcher.domain.paper.fill_order`).

Kalshi's errors become :class:`~watcher.errors.PaperError` naming the market: an order without
a quote is refused, never guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Protocol, TypeVar

from watcher.domain.paper import Action, Fill, Quote, best_level, book_levels, fill_order
from watcher.domain.positions import Side
from watcher.errors import KalshiError, PaperError, RestError
from watcher.kalshi.fixed import micros_to_decimal
from watcher.kalshi.rest_bodies import RestMarket, RestOrderbook
from watcher.store.ports import ReadModel
from watcher.store.records import TickerRow

__all__ = ["FRESH_MS", "MarketSource", "QuoteBoard"]

logger = logging.getLogger("watcher.paper")

_T = TypeVar("_T")

#: A streamed quote older than this (ms) is not fresh: ask REST instead.
FRESH_MS = 10_000


class MarketSource(Protocol):
    """What the board needs of Kalshi's REST API (a ``KalshiRestClient``)."""

    async def get_market(self, ticker: str) -> RestMarket: ...

    async def get_orderbook(self, ticker: str, *, depth: int = 0) -> RestOrderbook: ...


class QuoteBoard:
    """Quotes and fills for paper orders.

    Args:
        rest: Kalshi's REST API (or the simulator's).
        read_model: the running service's database, for its latest streamed quotes (optional).
        clock_ms: the time now, Unix ms.
        fresh_ms: how old a streamed quote may be.
    """

    def __init__(
        self,
        *,
        rest: MarketSource,
        read_model: ReadModel | None,
        clock_ms: Callable[[], int],
        fresh_ms: int = FRESH_MS,
    ) -> None:
        self.rest = rest
        self.read_model = read_model
        self.clock_ms = clock_ms
        self.fresh_ms = fresh_ms

    def __repr__(self) -> str:
        stream = "stream and REST" if self.read_model is not None else "REST only"
        return f"<QuoteBoard {stream} fresh={self.fresh_ms}ms>"

    # Public methods

    async def quote(self, ticker: str) -> Quote:
        """The freshest quote of ``ticker``.

        Raises:
            PaperError: Kalshi does not know the market or could not be asked.
        """
        streamed = await self._streamed(ticker)
        if streamed is not None:
            return streamed
        market = await self._ask(ticker, "quote", self.rest.get_market(ticker))
        return Quote(
            ticker=ticker,
            yes_bid=market.yes_bid_dollars,
            yes_ask=market.yes_ask_dollars,
            yes_bid_size=market.yes_bid_size_fp,
            yes_ask_size=market.yes_ask_size_fp,
            status=market.status,
            ts_ms=self.clock_ms(),
            source="rest",
        )

    async def fill(
        self,
        quote: Quote,
        side: Side,
        action: Action,
        contracts: Decimal,
        *,
        limit: Decimal | None = None,
    ) -> Fill:
        """Fill ``contracts`` on ``quote``, walking the REST order book when the order is
        larger than the size at the best price.

        Raises:
            PaperError: the market does not trade, no price, or the limit cannot fill.
        """
        best = best_level(quote, side, action)
        if best.size is None or contracts <= best.size:
            return fill_order([best], contracts, side=side, action=action, limit=limit)
        book = await self._ask(quote.ticker, "order book", self.rest.get_orderbook(quote.ticker))
        levels = book_levels(
            side, action, yes_bids=book.yes_dollars or (), no_bids=book.no_dollars or ()
        )
        logger.debug("%s: walking %d %s levels for %s", quote.ticker, len(levels), side, contracts)
        return fill_order(levels, contracts, side=side, action=action, limit=limit)

    # Private methods

    async def _streamed(self, ticker: str) -> Quote | None:
        if self.read_model is None:
            return None
        row = await self.read_model.latest_ticker(ticker)
        now = self.clock_ms()
        if row is None or now - row.received_ms >= self.fresh_ms:
            return None
        market = await self.read_model.get_market(ticker)
        status = None if market is None else market.status
        if market is not None and market.close_time_ms is not None and now >= market.close_time_ms:
            status = "closed"
        return _row_quote(row, status)

    async def _ask(self, ticker: str, what: str, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except RestError as exc:
            if exc.status == 404:
                raise PaperError(f"market not found: {ticker}") from exc
            raise PaperError(f"no {what} for {ticker}: {exc}") from exc
        except KalshiError as exc:
            raise PaperError(f"no {what} for {ticker}: {exc}") from exc


def _row_quote(row: TickerRow, status: str | None) -> Quote:
    def dollars(micros: int | None) -> Decimal | None:
        return None if micros is None else micros_to_decimal(micros)

    return Quote(
        ticker=row.market_ticker,
        yes_bid=dollars(row.yes_bid_e6),
        yes_ask=dollars(row.yes_ask_e6),
        yes_bid_size=dollars(row.yes_bid_size_e6),
        yes_ask_size=dollars(row.yes_ask_size_e6),
        status=status,
        ts_ms=row.ts_ms,
        source="stream",
    )
