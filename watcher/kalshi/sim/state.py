"""The state every connection of one simulated exchange shares.

:class:`ExchangeState` holds the markets (created on demand), the subscription-id counter, the
scripted sequence gaps, the counters and the "something changed" signal that the exchange's
``wait_*`` methods wait on. :class:`~watcher.kalshi.sim.exchange.SimulatedExchange` owns one and
hands it to each :class:`~watcher.kalshi.sim.session.SimSession`, so a session needs nothing
from the exchange itself.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Mapping

from watcher.kalshi.sim.market import MarketUpdate, SimMarket, SimMarketSpec, TradeRecord
from watcher.kalshi.sim.values import random_uuid
from watcher.kalshi.sim.wire import SimStats, now_ms

__all__ = ["ExchangeState"]


class ExchangeState:
    """Markets, sids, scripted gaps and counters of one simulated exchange.

    Args:
        stats: the exchange's counters.
        seed: seed of the random walk, for repeatable runs.
        specs: initial state of some markets (created at once); others are created on demand.
    """

    def __init__(
        self, *, stats: SimStats, seed: int | None, specs: Mapping[str, SimMarketSpec] | None
    ) -> None:
        self.stats = stats
        self.rng = random.Random(seed)
        self.specs = dict(specs or {})
        #: Specs of markets made on demand that ``specs`` does not name (configured events).
        self.spec_for: Callable[[str], SimMarketSpec | None] | None = None
        self.markets: dict[str, SimMarket] = {}
        self._by_id: dict[str, str] = {}
        self._sids = itertools.count(1)
        self._gaps: set[str] = set()
        self._changed = asyncio.Event()
        for ticker in self.specs:
            self.market(ticker)

    def __repr__(self) -> str:
        return f"<ExchangeState markets={len(self.markets)} gaps={sorted(self._gaps)}>"

    # Public methods

    def market(self, ticker: str) -> SimMarket:
        """The live state of a market, created on demand."""
        market = self.markets.get(ticker)
        if market is None:
            spec = self.specs.get(ticker)
            if spec is None and self.spec_for is not None:
                spec = self.spec_for(ticker)
            market = SimMarket(ticker, spec, self.rng, now_ms())
            self.markets[ticker] = market
            self._by_id[market.market_id] = ticker
        return market

    def ticker_for_id(self, market_id: str) -> str | None:
        return self._by_id.get(market_id)

    def quote(self, ticker: str) -> MarketUpdate:
        """A ticker update with the market's current quote."""
        return MarketUpdate(ticker, self.market(ticker).ticker_msg(now_ms()))

    def next_sid(self) -> int:
        return next(self._sids)

    def add_gap(self, channel: str) -> None:
        """Script a skipped ``seq`` number on the next frame of ``channel``."""
        self._gaps.add(channel)

    def take_gap(self, channel: str) -> bool:
        """True (once) if a gap is scripted for ``channel``."""
        if channel in self._gaps:
            self._gaps.discard(channel)
            return True
        return False

    def lost_trade(self, like: TradeRecord) -> None:
        """Record a trade like ``like`` that the feed skips but REST lists (for backfill)."""
        self.market(like.market_ticker).record_trade(
            like.yes_price, like.count, like.taker_side, like.ts_ms, random_uuid(self.rng)
        )

    def notify(self) -> None:
        """Wake whoever waits in :meth:`wait`: a connection, command or subscription changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, predicate: Callable[[], bool], limit: float, what: str) -> None:
        """Return once ``predicate()`` holds, checking after every :meth:`notify`.

        Raises:
            TimeoutError: ``limit`` seconds passed first; the message names ``what``.
        """
        try:
            async with asyncio.timeout(limit):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"timed out after {limit} s waiting for {what}") from None
