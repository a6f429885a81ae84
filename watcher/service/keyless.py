"""REST polling of the watched markets: metadata refresh, and the keyless feed.

Kalshi's WebSocket needs a signed handshake, but ``GET /markets/{ticker}`` and
``GET /markets/trades`` are public. :class:`MarketPoller` reads them for every watched market:

* always, the market's metadata (title, status, close time, result) goes to the pipeline
  (:meth:`~watcher.service.pipeline.Pipeline.apply_market`); a REST 404 is reported once per ticker
  through ``on_unknown`` (Kalshi's WebSocket says nothing about a ticker it does not know);
* in keyless mode (``feed=True``) the quote is also turned into an ordinary
  :class:`~watcher.kalshi.messages.Ticker` frame (only when a field changed, as Kalshi's ticker
  channel does) and new public trades into :class:`~watcher.kalshi.messages.Trade` frames, and
  both are handed to ``emit``: the same queue the WebSocket handler fills, so the rules, the
  store and the ``tickers``/``trades`` tables see no difference.

The scheduler (:mod:`watcher.service.jobs`) calls :meth:`MarketPoller.poll` on an interval.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from watcher.errors import DecodeError, RateLimited, RestError
from watcher.kalshi import messages as m
from watcher.kalshi.rest import KalshiRestClient, trade_from_rest
from watcher.store.queries import MarketRow

__all__ = [
    "KEYLESS_NOTICE",
    "MarketPoller",
    "PollStats",
    "ticker_from_rest",
    "trade_from_rest",
]

logger = logging.getLogger("watcher.keyless")

#: Logged at start-up in keyless mode.
KEYLESS_NOTICE = (
    "no Kalshi API key: Kalshi only streams over a signed WebSocket, so watcher polls the"
    " public REST market endpoint every %s s instead. This is slower (prices are up to one"
    " poll old and only changes between polls are seen); rules and alerts still work."
    " To stream in real time, create an API key at kalshi.com (Account & security → API keys)"
    " and set KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH"
)
_SEEN_TRADES = 5000
_QUOTE_FIELDS = (
    "yes_bid_dollars",
    "yes_ask_dollars",
    "last_price_dollars",
    "volume_fp",
    "open_interest_fp",
    "yes_bid_size_fp",
    "yes_ask_size_fp",
)

Emit = Callable[[Any], Awaitable[None]]
OnMarket = Callable[[MarketRow], Awaitable[Any]]
OnUnknown = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class PollStats:
    """Counters of a :class:`MarketPoller`.

    Attributes:
        polls: rounds completed (every watched market asked once).
        requests: REST requests answered.
        errors: REST requests that failed (network, 5xx, 429, bad body).
        ticks: ticker frames emitted (keyless mode).
        trades: trade frames emitted (keyless mode).
        last_success_at: ``time.monotonic()`` of the last answered request, or None.
    """

    polls: int = 0
    requests: int = 0
    errors: int = 0
    ticks: int = 0
    trades: int = 0
    last_success_at: float | None = None


def ticker_from_rest(market: m.RestMarket, now_ms: int) -> m.Ticker | None:
    """A ``ticker`` frame built from a REST market, stamped ``now_ms``; None without a quote."""
    if market.yes_bid_dollars is None or market.yes_ask_dollars is None:
        return None
    last = market.last_price_dollars if market.last_price_dollars is not None else Decimal(0)
    msg = m.TickerMsg(
        market_ticker=market.ticker,
        price_dollars=last,
        yes_bid_dollars=market.yes_bid_dollars,
        yes_ask_dollars=market.yes_ask_dollars,
        volume_fp=market.volume_fp,
        open_interest_fp=market.open_interest_fp,
        yes_bid_size_fp=market.yes_bid_size_fp,
        yes_ask_size_fp=market.yes_ask_size_fp,
        ts=now_ms // 1000,
        ts_ms=now_ms,
    )
    return m.Ticker(msg=msg)


class MarketPoller:
    """Asks Kalshi's public REST API about every watched market, one round per :meth:`poll`.

    Args:
        rest: the REST client (signed or not: these endpoints are public).
        tickers: returns the tickers to poll now: every watched market, the positions' and
            the watched events' (``Pipeline.watched``), so in keyless mode the event rules
            see the watched events' quotes too.
        on_market: receives each market's metadata.
        on_unknown: called once per ticker Kalshi answers 404 for.
        emit: receives ticker and trade frames; None polls metadata only.
        clock: Unix time in seconds (frame times, the first trade window).
        monotonic: a monotonic clock (``stats.last_success_at``).
    """

    def __init__(
        self,
        *,
        rest: KalshiRestClient,
        tickers: Callable[[], Iterable[str]],
        on_market: OnMarket,
        on_unknown: OnUnknown,
        emit: Emit | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rest = rest
        self.tickers = tickers
        self.on_market = on_market
        self.on_unknown = on_unknown
        self.emit = emit
        self.clock = clock
        self.monotonic = monotonic
        self.stats = PollStats()
        self._started_s = int(clock())
        self._quotes: dict[str, tuple[Any, ...]] = {}
        self._trade_since: dict[str, int] = {}
        self._seen: deque[str] = deque(maxlen=_SEEN_TRADES)
        self._seen_set: set[str] = set()
        self._unknown: set[str] = set()

    def __repr__(self) -> str:
        mode = "feed" if self.emit is not None else "metadata"
        return f"<MarketPoller {mode} polls={self.stats.polls} errors={self.stats.errors}>"

    @property
    def is_feed(self) -> bool:
        """True in keyless mode: the poller is the market data feed."""
        return self.emit is not None

    # Public methods

    async def poll(self) -> None:
        """One round over the watched markets. A 429 ends the round early (Kalshi asks us to
        slow down); other errors are logged per market and the round goes on."""
        for ticker in list(self.tickers()):
            try:
                await self._poll_market(ticker)
            except RateLimited as exc:
                self.stats.errors += 1
                logger.warning("REST polling paused until the next round: %s", exc)
                break
            except (RestError, DecodeError, ValueError) as exc:
                self.stats.errors += 1
                logger.warning("cannot read market %s over REST: %s", ticker, exc)
        self.stats.polls += 1

    # Private methods

    async def _poll_market(self, ticker: str) -> None:
        try:
            market = await self.rest.get_market(ticker)
        except RestError as exc:
            if exc.status != 404:
                raise
            self._answered()
            if ticker not in self._unknown:
                self._unknown.add(ticker)
                await self.on_unknown(ticker)
            return
        self._answered()
        self._unknown.discard(ticker)
        now_ms = int(self.clock() * 1000)
        await self.on_market(MarketRow.from_rest(market, updated_ms=now_ms))
        if self.emit is None:
            return
        await self._emit_quote(market, now_ms)
        await self._emit_trades(ticker)

    async def _emit_quote(self, market: m.RestMarket, now_ms: int) -> None:
        assert self.emit is not None
        quote = tuple(getattr(market, name) for name in _QUOTE_FIELDS)
        if self._quotes.get(market.ticker) == quote:
            return  # like the ticker channel: a frame only when a field changed
        frame = ticker_from_rest(market, now_ms)
        if frame is None:
            logger.debug("market %s has no quote yet", market.ticker)
            return
        self._quotes[market.ticker] = quote
        self.stats.ticks += 1
        await self.emit(frame)

    async def _emit_trades(self, ticker: str) -> None:
        assert self.emit is not None
        since = self._trade_since.get(ticker, self._started_s)
        trades = await self.rest.get_trades(ticker, min_ts=since, limit=100, max_pages=1)
        self._answered()
        for trade in reversed(trades):  # Kalshi lists newest first
            if trade.trade_id in self._seen_set:
                continue
            self._remember(trade.trade_id)
            frame = trade_from_rest(trade)
            if frame.msg.ts_ms is not None:
                since = max(since, frame.msg.ts_ms // 1000)
            self.stats.trades += 1
            await self.emit(frame)
        self._trade_since[ticker] = since

    def _remember(self, trade_id: str) -> None:
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(trade_id)
        self._seen_set.add(trade_id)

    def _answered(self) -> None:
        self.stats.requests += 1
        self.stats.last_success_at = self.monotonic()
