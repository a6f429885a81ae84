"""The two reference clients the watcher is compared with, run in the benchmark's process.

* :func:`bare_receive` — the ceiling: a minimal websockets client (no compression offered, as
  watcher) that only counts frames.
* :func:`naive_client` — what a typical hand-written client does: websockets with its default
  compression, ``json.loads`` per frame, one ``INSERT`` per tick or trade and one SQLite commit per
  1,000 (Python's sqlite3 defaults). Its rate is counted from the rows it committed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from watcher.kalshi.auth import KalshiSigner

__all__ = ["Window", "bare_receive", "naive_client"]

SUBSCRIBE = json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["ticker", "trade"]}})
NAIVE_BATCH = 1000
_NAIVE_SCHEMA = (
    "CREATE TABLE ticks (market_ticker TEXT, ts_ms INTEGER, price REAL, yes_bid REAL,"
    " yes_ask REAL, volume REAL)",
    "CREATE TABLE trades (trade_id TEXT, market_ticker TEXT, ts_ms INTEGER, yes_price REAL,"
    " count REAL, taker_side TEXT)",
)


@dataclass
class Window:
    """Counts a client's progress and measures its rate over ``[warmup, warmup + duration]``."""

    warmup: float
    duration: float
    count: int = 0
    _started: float = 0.0
    _first: tuple[float, int] | None = None
    _last: tuple[float, int] | None = None

    def start(self) -> None:
        self._started = time.perf_counter()

    def tick(self, count: int) -> bool:
        """Record the count now; ``True`` once the window is over."""
        self.count = count
        now = time.perf_counter() - self._started
        if self._first is None:
            if now >= self.warmup:
                self._first = (now, count)
            return False
        if now >= self.warmup + self.duration:
            self._last = (now, count)
            return True
        return False

    @property
    def rate(self) -> float:
        """Messages per second over the window (0 if it never completed)."""
        if self._first is None or self._last is None:
            return 0.0
        (t0, n0), (t1, n1) = self._first, self._last
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


async def _subscribed(url: str, signer: KalshiSigner, **options: Any) -> ClientConnection:
    ws = await connect(url, additional_headers=signer.websocket_headers(), **options)
    await ws.send(SUBSCRIBE)
    return ws


def _abort(ws: ClientConnection) -> None:
    # A client that stops reading cannot see the close frame behind the data still in flight.
    ws.transport.abort()


async def bare_receive(url: str, signer: KalshiSigner, window: Window) -> float:
    """Count frames as fast as websockets delivers them; returns messages/s."""
    ws = await _subscribed(url, signer, compression=None, max_size=2**26)
    count = 0
    window.start()
    try:
        async for _ in ws:
            count += 1
            if count % 256 == 0 and window.tick(count):
                break
    finally:
        _abort(ws)
        with contextlib.suppress(Exception):
            await ws.wait_closed()
    return window.rate


async def naive_client(url: str, signer: KalshiSigner, db: Path, window: Window) -> float:
    """The typical client: json.loads, INSERT, commit per 1,000; returns committed rows/s."""
    conn = sqlite3.connect(db)
    for statement in _NAIVE_SCHEMA:
        conn.execute(statement)
    ws = await _subscribed(url, signer, max_size=2**26)  # default: offers permessage-deflate
    committed = pending = 0
    window.start()
    try:
        async for raw in ws:
            if not _naive_insert(conn, json.loads(raw)):
                continue
            pending += 1
            if pending == NAIVE_BATCH:
                conn.commit()
                committed += pending
                pending = 0
                if window.tick(committed):
                    break
    finally:
        _abort(ws)
        with contextlib.suppress(Exception):
            await ws.wait_closed()
        conn.commit()
        conn.close()
    return window.rate


def _naive_insert(conn: sqlite3.Connection, message: dict[str, Any]) -> bool:
    """Insert a ticker or trade the way a hand-written client would (floats and all)."""
    kind, body = message.get("type"), message.get("msg") or {}
    if kind == "ticker":
        conn.execute(
            "INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?)",
            (
                body["market_ticker"],
                body.get("ts_ms"),
                float(body["price_dollars"]),
                float(body["yes_bid_dollars"]),
                float(body["yes_ask_dollars"]),
                float(body.get("volume_fp") or 0),
            ),
        )
        return True
    if kind == "trade":
        conn.execute(
            "INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?)",
            (
                body["trade_id"],
                body["market_ticker"],
                body.get("ts_ms"),
                float(body["yes_price_dollars"]),
                float(body["count_fp"]),
                body.get("taker_side"),
            ),
        )
        return True
    return False
