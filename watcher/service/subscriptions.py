"""What the service subscribes on the Kalshi feed, and how a positions change moves it.

The watched markets get the :data:`FEED_CHANNELS`; ``market_lifecycle_v2`` is subscribed for
every market (Kalshi has no per-market filter on it), and the pipeline keeps the watched ones.
"""

from __future__ import annotations

import logging
from collections.abc import Set

from watcher.domain.positions import Portfolio
from watcher.kalshi.client import KalshiWebSocketClient

__all__ = ["FEED_CHANNELS", "resubscribe", "subscribe_watched"]

logger = logging.getLogger("watcher.app")

#: What the service subscribes for the watched markets (plus market_lifecycle_v2, global).
FEED_CHANNELS = ("ticker", "trade")


def subscribe_watched(client: KalshiWebSocketClient, portfolio: Portfolio) -> None:
    """Queue the subscriptions of the first connection: the watched markets and lifecycle."""
    tickers = portfolio.tickers()
    if not tickers:
        logger.warning("no watched positions in %s; waiting for some", portfolio.path)
    else:
        client.protocol.subscribe(FEED_CHANNELS, tickers)
        logger.info("watching %d markets: %s", len(tickers), ", ".join(tickers[:10]))
    client.protocol.subscribe(["market_lifecycle_v2"])


async def resubscribe(client: KalshiWebSocketClient, old: Set[str], new: Set[str]) -> None:
    """Move the subscriptions from the ``old`` watched tickers to the ``new`` ones."""
    for channel in FEED_CHANNELS:
        if new - old:
            if channel in client.protocol.wanted:
                await client.add_markets(channel, new - old)
            else:
                await client.subscribe([channel], new - old)
        if old - new:
            await client.remove_markets(channel, old - new)
