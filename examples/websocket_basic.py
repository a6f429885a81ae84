"""Seed example 1: stream ticker and trade frames for two markets into SQLite.

Against Kalshi: set KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH (Kalshi signs every
connection). Against the simulator: run ``watcher simulate`` in another terminal and
``KALSHI_WS_URL=ws://127.0.0.1:8765/trade-api/ws/v2 python examples/websocket_basic.py``.
Stops after ``EXAMPLE_SECONDS`` (default: run until Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from watcher.kalshi.client import KalshiWebSocketClient
from watcher.kalshi.handlers import MessageHandlers
from watcher.store.storage import SQLiteStorage

MARKETS = ["KXCPI-26JAN-T0.3", "KXGDP-26JAN30-T2.5"]


async def main() -> None:
    storage = SQLiteStorage(os.environ.get("EXAMPLE_DB", "data/market_data.db"))
    await storage.connect()
    handlers = MessageHandlers(storage)
    client = KalshiWebSocketClient(
        api_key_id=os.environ.get("KALSHI_API_KEY_ID"),
        private_key_path=os.environ.get("KALSHI_PRIVATE_KEY_PATH"),
        demo=os.environ.get("KALSHI_ENV") == "demo",
        auto_reconnect=True,
        url=os.environ.get("KALSHI_WS_URL"),
    )
    client.register_handler("ticker", handlers.handle_ticker)
    client.register_handler("trade", handlers.handle_trade)
    client.register_handler("error", handlers.handle_error)
    await client.connect()
    await client.subscribe(channels=["ticker", "trade"], market_tickers=MARKETS)
    seconds = float(os.environ.get("EXAMPLE_SECONDS", "0")) or None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(client.run(), seconds)
    await client.disconnect()
    for market in MARKETS:
        print(market, await storage.get_latest_ticker(market))
    print(len(await storage.get_trade_history(MARKETS[0], limit=100)), "trades stored")
    await storage.close()


if __name__ == "__main__":
    asyncio.run(main())
