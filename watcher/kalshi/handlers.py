"""The seed's ``MessageHandlers``: ready-made handlers that cache and persist what arrives.

Register them on a :class:`~watcher.kalshi.client.KalshiWebSocketClient`::

    handlers = MessageHandlers(storage)
    client.register_handler("ticker", handlers.handle_ticker)
    client.register_handler("orderbook_snapshot", handlers.handle_orderbook_snapshot)
    client.register_handler("orderbook_delta", handlers.handle_orderbook_delta)

Handlers receive the typed frames of :mod:`watcher.kalshi.messages` (not dicts).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from watcher.kalshi import messages as m
from watcher.kalshi.book import OrderBook, OrderBooks
from watcher.kalshi.errors import ProtocolError

__all__ = ["MessageHandlers", "MessageSink"]

logger = logging.getLogger("watcher.feed")


class MessageSink(Protocol):
    """Anything that persists frames (``SQLiteStorage`` does)."""

    async def save(self, message: Any, received_ms: int | None = None) -> None: ...


class MessageHandlers:
    """Caches the latest ticker and the order book per market; persists through ``storage``.

    Args:
        storage: optional; every ticker, trade, book frame and fill is saved through it.
        use_yes_price: must match the client's setting (how NO book prices arrive).
    """

    def __init__(self, storage: MessageSink | None = None, *, use_yes_price: bool = False) -> None:
        self.storage = storage
        self.books = OrderBooks(use_yes_price=use_yes_price)
        self.latest_tickers: dict[str, m.TickerMsg] = {}
        self.subscriptions: dict[int, str] = {}
        self.errors: list[m.ErrorMsg] = []

    def __repr__(self) -> str:
        return f"<MessageHandlers tickers={len(self.latest_tickers)} books={len(self.books)}>"

    # Public methods

    async def handle_subscribed(self, message: m.Subscribed) -> None:
        self.subscriptions[message.msg.sid] = message.msg.channel
        logger.info("subscribed to %s (sid %d)", message.msg.channel, message.msg.sid)

    async def handle_ticker(self, message: m.Ticker) -> None:
        self.latest_tickers[message.msg.market_ticker] = message.msg
        await self._save(message)

    async def handle_trade(self, message: m.Trade) -> None:
        await self._save(message)

    async def handle_orderbook_snapshot(self, message: m.OrderbookSnapshot) -> None:
        self.books.apply(message)
        await self._save(message)

    async def handle_orderbook_delta(self, message: m.OrderbookDelta) -> None:
        try:
            self.books.apply(message)
        except ProtocolError as exc:
            logger.warning("order book for %s invalid: %s", message.msg.market_ticker, exc)
        await self._save(message)

    async def handle_fill(self, message: m.Fill) -> None:
        await self._save(message)

    async def handle_error(self, message: m.ErrorReply) -> None:
        self.errors.append(message.msg)
        logger.warning("Kalshi error %d: %s", message.msg.code, message.msg.msg)

    def get_latest_ticker(self, market_ticker: str) -> m.TickerMsg | None:
        return self.latest_tickers.get(market_ticker)

    def get_orderbook(self, market_ticker: str) -> OrderBook | None:
        return self.books.get(market_ticker)

    # Private methods

    async def _save(self, message: Any) -> None:
        if self.storage is not None:
            await self.storage.save(message, int(time.time() * 1000))
