"""The SQLite read model: the :class:`~watcher.store.ports.ReadModel` of a database file.

It opens its own read-only connection (``open_database(path, readonly=True)``) on its own thread,
on first use, and runs every query there: in WAL mode a reader never blocks the writer, and the
event loop never blocks on the reader. The queries themselves are :mod:`watcher.store.queries`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from pathlib import Path
from typing import Any, TypeVar

from watcher.domain.controls import ControlState
from watcher.domain.event import EventInfo
from watcher.errors import StorageError
from watcher.store import queries
from watcher.store.records import AlertRecord, MarketRow, ReplayEvent, TickerRow, TradeRow
from watcher.store.schema import open_database
from watcher.store.sqlite_controls import load_controls

__all__ = ["REPLAY_PAGE", "SQLiteReadModel"]

T = TypeVar("T")

#: Events handed from the reader thread to the event loop at a time during a replay.
REPLAY_PAGE = 1000


class SQLiteReadModel:
    """Read-only queries over a SQLite file, each run on the model's own thread.

    Args:
        path: the database file; it must exist (a read-only connection creates nothing).

    Raises:
        StorageError: the database cannot be opened or read (from any method).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # One thread owns the connection: sqlite3 objects are bound to their thread.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="read-model")
        self._conn: sqlite3.Connection | None = None  # used only on the worker thread
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._conn is not None else "new"
        return f"<SQLiteReadModel {str(self.path)!r} {state}>"

    async def __aenter__(self) -> SQLiteReadModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Public methods

    async def latest_ticker(self, ticker: str) -> TickerRow | None:
        """The newest ticker update of a market (by ``ts_ms``, then arrival), or ``None``."""
        return await self._call(queries.latest_ticker, ticker)

    async def last_alert(self, ticker: str) -> tuple[int, str] | None:
        """``(created_ms, rule)`` of the newest alert about a market, or ``None``."""
        return await self._call(queries.last_alert, ticker)

    async def service_state(self) -> dict[str, str]:
        """Every ``service_state`` key and its value."""
        return await self._call(queries.service_state)

    async def tick_history(
        self, ticker: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[TickerRow]:
        """Ticker updates of a market at or after ``since_ms``, newest first, at most ``limit``."""
        return await self._call(queries.tick_history, ticker, since_ms=since_ms, limit=limit)

    async def tick_series(
        self, ticker: str, *, since_ms: int | None = None, points: int = 300
    ) -> list[TickerRow]:
        """Ticker updates thinned for a chart, oldest first (see :func:`queries.tick_series`)."""
        return await self._call(queries.tick_series, ticker, since_ms=since_ms, points=points)

    async def trade_history(
        self, ticker: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[TradeRow]:
        """Trades of a market at or after ``since_ms``, newest first, at most ``limit``."""
        return await self._call(queries.trade_history, ticker, since_ms=since_ms, limit=limit)

    async def get_market(self, ticker: str) -> MarketRow | None:
        """The stored metadata of a market, or ``None``."""
        return await self._call(queries.get_market, ticker)

    async def events(self) -> list[EventInfo]:
        """Every stored event expansion, by event ticker."""
        return await self._call(queries.events)

    async def recent_alerts(
        self, *, since_ms: int | None = None, status: str | None = None, limit: int = 50
    ) -> list[AlertRecord]:
        """The newest alerts first, with their deliveries."""
        return await self._call(
            queries.recent_alerts, since_ms=since_ms, status=status, limit=limit
        )

    async def open_deliveries(self) -> int:
        """How many deliveries are still to send (``pending`` or ``retrying``)."""
        return await self._call(queries.open_deliveries)

    async def control_state(self) -> ControlState:
        """The stored mutes (ended ones too, until purged) and the pause."""
        return await self._call(load_controls)

    async def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each status."""
        return await self._call(queries.delivery_counts)

    async def count_events(
        self, *, since_ms: int | None, until_ms: int | None, markets: Collection[str]
    ) -> int:
        """How many ticks, trades and lifecycle events :meth:`replay_events` will yield."""
        span = {"since_ms": since_ms, "until_ms": until_ms, "markets": list(markets)}
        return await self._call(queries.count_events, **span)

    async def replay_events(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        markets: Collection[str],
    ) -> AsyncIterator[ReplayEvent]:
        """Ticks, trades and lifecycle frames merged in time order, :data:`REPLAY_PAGE` at a time.

        The merge runs lazily on the reader thread (one read transaction for the whole range);
        the loop receives one page per hop.
        """
        span = {"since_ms": since_ms, "until_ms": until_ms, "markets": list(markets)}
        events: Iterator[ReplayEvent] = await self._call(queries.iter_events, **span)
        try:
            while page := await self._in_thread(_take, events, REPLAY_PAGE):
                for event in page:
                    yield event
        finally:
            # The generator's cursors belong to the reader thread: close it there.
            if not self._closed:
                with contextlib.suppress(StorageError):
                    await self._in_thread(_close_iterator, events)

    async def close(self) -> None:
        """Close the connection and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):
            await asyncio.wrap_future(self._worker.submit(self._close_connection))
        self._worker.shutdown(wait=False)

    # Private methods

    async def _call(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``query(connection, *args, **kwargs)`` on the reader thread."""
        return await self._in_thread(self._query, query, args, kwargs)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageError(f"read model of {self.path} is closed")
        try:
            future = self._worker.submit(fn, *args)
        except RuntimeError as exc:  # the executor was shut down
            raise StorageError(f"read model of {self.path} is closed") from exc
        return await asyncio.wrap_future(future)

    def _query(self, query: Callable[..., T], args: tuple[Any, ...], kwargs: Any) -> T:
        if self._conn is None:
            self._conn = open_database(self.path, readonly=True)
        try:
            return query(self._conn, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _take(events: Iterator[ReplayEvent], count: int) -> list[ReplayEvent]:
    """The next ``count`` events (fewer at the end); runs on the reader thread."""
    try:
        return list(itertools.islice(events, count))
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read recorded events: {exc}") from exc


def _close_iterator(events: Iterator[ReplayEvent]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        close()
