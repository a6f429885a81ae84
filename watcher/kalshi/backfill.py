"""Trades the feed missed, recovered over REST: after a ``trade`` sequence gap or a reconnect.

:class:`TradeBackfill` remembers the ids of recent trades and the time of the last trade seen in
each market. After a gap (or a reconnect, which restarts ``seq`` so that no gap can reveal what
was missed) it asks ``GET /markets/trades`` for what came after, and hands on each trade it had
not seen, as a :class:`~watcher.kalshi.dispatch.LateTrade`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from watcher.kalshi import messages as m
from watcher.kalshi.dispatch import LateTrade
from watcher.kalshi.errors import KalshiError
from watcher.kalshi.events import SequenceGapEvent
from watcher.kalshi.rest import trade_from_rest

__all__ = ["SEEN_TRADES", "TradeBackfill"]

logger = logging.getLogger("watcher.feed")

#: Trade ids remembered to skip trades the feed delivered already.
SEEN_TRADES = 20_000


class TradeBackfill:
    """Remembers recent trades and fetches the missed ones over REST.

    Args:
        rest: a :class:`~watcher.kalshi.rest.KalshiRestClient` (or anything with its
            ``get_trades``).
        deliver: awaited with every recovered trade the feed had not delivered.
    """

    def __init__(self, rest: Any, deliver: Callable[[LateTrade], Awaitable[None]]) -> None:
        self.rest = rest
        self._deliver = deliver
        self._seen_trades: OrderedDict[str, None] = OrderedDict()
        self._last_trade_ts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<TradeBackfill markets={len(self._last_trade_ts)} seen={len(self._seen_trades)}>"

    # Public methods

    def remember(self, trade: m.Trade) -> None:
        """Note a delivered trade: its id, and its time as the market's latest."""
        seen = self._seen_trades
        seen[trade.msg.trade_id] = None
        if len(seen) > SEEN_TRADES:
            seen.popitem(last=False)
        ts = m.timestamp_ms(trade.msg.ts_ms, trade.msg.ts, trade.sending_ts_ms)
        if ts is not None:
            self._last_trade_ts[trade.msg.market_ticker] = ts

    async def after_gap(self, gap: SequenceGapEvent) -> None:
        """Fetch the trades a ``trade`` gap skipped and hand them on as late."""
        await self.fetch(gap.market_tickers or tuple(self._last_trade_ts))
        logger.info("trade backfill after gap on sid %d done", gap.sid)

    async def after_reconnect(self, wanted: Mapping[str, set[str] | None]) -> None:
        """Trades made while the connection was down: a new connection restarts ``seq``, so
        no gap can reveal them. Fetch what came after the last trade seen in each market.

        Args:
            wanted: the protocol's wanted subscriptions (channel → markets, ``None``: all).
        """
        markets_wanted = wanted.get("trade")
        markets = (
            tuple(self._last_trade_ts) if markets_wanted is None else tuple(sorted(markets_wanted))
        )
        await self.fetch([t for t in markets if t in self._last_trade_ts])

    async def fetch(self, markets: Iterable[str]) -> None:
        """Fetch each market's trades since the last one seen; deliver those not seen."""
        for ticker in markets:
            since = self._last_trade_ts.get(ticker)
            min_ts = since // 1000 if since is not None else None
            try:
                trades = await self.rest.get_trades(ticker, min_ts=min_ts)
            except KalshiError as exc:
                logger.warning("trade backfill for %s failed: %s", ticker, exc)
                continue
            for rest_trade in sorted(trades, key=lambda t: t.ts_ms or 0):
                if rest_trade.trade_id in self._seen_trades:
                    continue
                frame = trade_from_rest(rest_trade)
                self.remember(frame)
                await self._deliver(LateTrade(frame))
