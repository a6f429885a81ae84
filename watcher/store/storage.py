"""The seed's ``SQLiteStorage`` API, kept working on top of :class:`StoreWriter`.

The seed's examples do ``storage = SQLiteStorage(path); await storage.connect()``, hand it to
``MessageHandlers`` which call ``save``, and read back with ``get_latest_ticker`` and
``get_trade_history``. Writes go through the batched writer; reads use their own read-only
connection on their own thread, after flushing pending writes so a ``save`` is visible at once.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, TypeVar

from watcher.errors import StorageError
from watcher.kalshi.fixed import micros_to_decimal
from watcher.kalshi.messages import Message, UnknownMessage
from watcher.store import queries
from watcher.store.schema import open_database
from watcher.store.writer import StoreWriter

__all__ = ["SQLiteStorage"]

_T = TypeVar("_T")


def _dollars(micros: int | None) -> Decimal | None:
    return None if micros is None else micros_to_decimal(micros)


class SQLiteStorage:
    """Persist Kalshi frames to SQLite and read recent ones back (the seed's API).

    Args:
        db_path: the database file; created (mode 0600) with its directory on :meth:`connect`.
    """

    def __init__(self, db_path: str = "data/kalshi.db") -> None:
        self.db_path = db_path
        self._writer: StoreWriter | None = None
        self._reader: sqlite3.Connection | None = None  # used only on the reader thread
        self._executor: ThreadPoolExecutor | None = None

    # Public methods

    async def connect(self) -> None:
        """Create or migrate the database and start the writer.

        Raises:
            StorageError: the database cannot be opened.
        """
        if self._writer is not None:
            return
        writer = StoreWriter(self.db_path)
        await writer.start()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watcher-store-read")
        try:
            loop = asyncio.get_running_loop()
            self._reader = await loop.run_in_executor(
                executor, functools.partial(open_database, self.db_path, readonly=True)
            )
        except BaseException:
            executor.shutdown(wait=False)
            await writer.close()
            raise
        self._writer, self._executor = writer, executor

    async def save(self, message: Message | UnknownMessage, received_ms: int | None = None) -> None:
        """Queue a frame for storage (types that are not stored are ignored).

        Args:
            message: a decoded frame.
            received_ms: when it arrived, Unix milliseconds (default: now).
        """
        stamp = time.time_ns() // 1_000_000 if received_ms is None else received_ms
        await self._require_writer().put(message, stamp)

    async def get_latest_ticker(self, market_ticker: str) -> dict[str, Any] | None:
        """The newest ticker of a market, prices as Decimal dollars, or ``None``.

        Returns:
            ``{"market_ticker", "ts_ms", "price", "yes_bid", "yes_ask", "volume",
            "open_interest"}``; ``volume`` and ``open_interest`` are Decimal contracts.
        """
        row = await self._read(queries.latest_ticker, market_ticker)
        if row is None:
            return None
        return {
            "market_ticker": row.market_ticker,
            "ts_ms": row.ts_ms,
            "price": _dollars(row.price_e6),
            "yes_bid": _dollars(row.yes_bid_e6),
            "yes_ask": _dollars(row.yes_ask_e6),
            "volume": _dollars(row.volume_e6),
            "open_interest": _dollars(row.open_interest_e6),
        }

    async def get_trade_history(self, market_ticker: str, limit: int = 100) -> list[dict[str, Any]]:
        """Recent trades of a market, newest first, prices as Decimal dollars."""
        rows = await self._read(
            functools.partial(queries.trade_history, limit=limit), market_ticker
        )
        return [
            {
                "trade_id": row.trade_id,
                "market_ticker": row.market_ticker,
                "ts_ms": row.ts_ms,
                "yes_price": micros_to_decimal(row.yes_price_e6),
                "no_price": micros_to_decimal(row.no_price_e6),
                "count": micros_to_decimal(row.count_e6),
                "taker_side": row.taker_side,
                "is_block_trade": row.is_block_trade,
                "late": row.late,
            }
            for row in rows
        ]

    async def close(self) -> None:
        """Write everything pending and close both connections; idempotent."""
        writer, executor = self._writer, self._executor
        self._writer = self._executor = None
        try:
            if writer is not None:
                await writer.close()
        finally:
            if executor is not None:
                await asyncio.get_running_loop().run_in_executor(executor, self._close_reader)
                executor.shutdown(wait=False)

    def __repr__(self) -> str:
        state = "closed" if self._writer is None else repr(self._writer)
        return f"<SQLiteStorage {self.db_path!r} {state}>"

    # Private methods

    def _require_writer(self) -> StoreWriter:
        if self._writer is None:
            raise StorageError(f"storage {self.db_path} is not connected: call connect() first")
        return self._writer

    async def _read(self, query: Callable[[sqlite3.Connection, str], _T], ticker: str) -> _T:
        await self._require_writer().flush()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._query, query, ticker)

    def _query(self, query: Callable[[sqlite3.Connection, str], _T], ticker: str) -> _T:
        assert self._reader is not None
        return query(self._reader, ticker)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
