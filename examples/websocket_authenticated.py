"""Seed example 2: a signed connection keeping a local order book from snapshot + deltas.

Needs KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH (RSA or Ed25519 PEM). Against the simulator:
``watcher simulate --public-key ID=public.pem`` and ``KALSHI_WS_URL=ws://127.0.0.1:8765/trade-api/ws/v2``.
Stops after ``EXAMPLE_SECONDS`` (default: run until Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from watcher.kalshi.client import KalshiWebSocketClient
from watcher.kalshi.handlers import MessageHandlers
from watcher.store.storage import SQLiteStorage

MARKET = "KXCPI-26JAN-T0.3"


async def main() -> None:
    storage = SQLiteStorage(os.environ.get("EXAMPLE_DB", "data/orderbook.db"))
    await storage.connect()
    handlers = MessageHandlers(storage)
    client = KalshiWebSocketClient(
        api_key_id=os.environ["KALSHI_API_KEY_ID"],
        private_key_path=os.environ.get("KALSHI_PRIVATE_KEY_PATH", "kalshi_private.pem"),
        demo=os.environ.get("KALSHI_ENV") == "demo",
        auto_reconnect=True,
        url=os.environ.get("KALSHI_WS_URL"),
    )
    client.register_handler("orderbook_snapshot", handlers.handle_orderbook_snapshot)
    client.register_handler("orderbook_delta", handlers.handle_orderbook_delta)
    client.register_handler("fill", handlers.handle_fill)
    await client.connect()
    await client.subscribe(channels=["orderbook_delta", "fill"], market_tickers=[MARKET])
    seconds = float(os.environ.get("EXAMPLE_SECONDS", "0")) or None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(client.run(), seconds)
    await client.disconnect()
    print(handlers.get_orderbook(MARKET))
    await storage.close()


if __name__ == "__main__":
    asyncio.run(main())
