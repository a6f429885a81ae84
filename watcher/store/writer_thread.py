"""The store writer's thread: one SQLite connection, one transaction per batch, retried.

Every SQLite call of a :class:`~watcher.store.writer.StoreWriter` runs on the single thread of
its :class:`WriterThread`, which owns the connection (sqlite3 objects are bound to their
thread), so the event loop never blocks on the database. A batch is one ``BEGIN IMMEDIATE``
transaction of multi-row ``INSERT`` statements (:func:`~watcher.store.rows.insert_rows`). Within
a batch, tick, trade and delta rows are written grouped by market, so ``id`` grows with arrival
within each market (ties of ``ts_ms`` keep their order) but not across markets.

A failed write (disk full, read-only file, lock held too long) never drops rows:
:meth:`WriterThread.commit` keeps the batch and retries it with :func:`retry_delays` until it is
written, and ``on_error`` hears about each failed attempt. Meanwhile the writer's bounded queue
pushes back on producers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import operator
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeAlias, TypeVar

from watcher.errors import StorageError
from watcher.kalshi.backoff import backoff
from watcher.store.rows import INSERTS, insert_rows
from watcher.store.schema import open_database

__all__ = ["WRITER_CACHE_KIB", "Committer", "Item", "WriterThread", "retry_delays"]

logger = logging.getLogger("watcher.store")

_T = TypeVar("_T")

#: A row for a table, in INSERTS column order.
Item: TypeAlias = tuple[str, tuple[Any, ...]]

#: SQLite page cache of the writer's connection, KiB (SQLite's default is 2,000). Appends touch
#: few pages; a miss is refilled from the OS page cache. 512 KiB lowered peak RSS by ~1.5 MB in
#: make bench and wrote as fast as 2,000 and 8,000 KiB at 1,000 markets (issue 5).
WRITER_CACHE_KIB = 512

#: High-volume tables whose rows are written grouped by market: the market_ticker column.
_MARKET_OF = {
    "tickers": operator.itemgetter(0),
    "trades": operator.itemgetter(1),
    "orderbook_deltas": operator.itemgetter(0),
}


class Committer(Protocol):
    """What writes a :class:`~watcher.store.writer.StoreWriter`'s batches: the seam between
    its queue (batching, backpressure, stats) and a database.

    :class:`WriterThread` is SQLite's; :class:`~watcher.store.pg.writer.PostgresCommitter` is
    PostgreSQL's. Only the writer task calls it, one batch at a time; the hot path
    (``put_nowait``) never does.
    """

    @property
    def errors(self) -> int:
        """Failed write attempts so far."""
        ...

    async def open(self) -> None:
        """Open (create, migrate) the database; raises StorageError when it cannot."""
        ...

    async def commit(self, items: list[Item]) -> dict[str, int]:
        """Write one batch exactly once, retrying until it is written; rows per table."""
        ...

    async def close(self) -> None:
        """Release the database."""
        ...


def retry_delays() -> Iterator[float]:
    """Seconds to wait before each retry of a failed write: 0.5, 1, 2, 4, 8, 10, 10, ..."""
    return backoff(min_delay=0.5, max_delay=10.0, jitter=0)


class WriterThread:
    """One thread and the SQLite connection it owns; every write of a store writer runs there.

    Args:
        path: the database file (created with mode 0600 and migrated by :meth:`open`).
        busy_timeout_ms: how long one attempt waits for another connection's lock.
        on_error: called on the event loop with a :class:`StorageError` for each failed write
            attempt; the batch is kept and retried.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.path = path
        #: Failed write attempts so far.
        self.errors = 0
        #: The connection; used only on the thread (``None`` before :meth:`open`, after close).
        self.conn: sqlite3.Connection | None = None
        self._busy_timeout_ms = busy_timeout_ms
        self._on_error = on_error
        self._executor: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        state = "closed" if self.conn is None else "open"
        return f"<WriterThread {str(self.path)!r} {state} errors={self.errors}>"

    # Public methods

    async def open(self) -> None:
        """Start the thread and open (create, migrate) the database on it.

        Raises:
            StorageError: the database cannot be opened; the thread is stopped again.
        """
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watcher-store")
        try:
            self.conn = await self.call(self._open_connection)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def commit(self, items: list[Item]) -> dict[str, int]:
        """Write one batch in one transaction, retrying failed writes until one succeeds.

        Returns:
            Rows written per table (rows ignored as duplicates are not counted).
        """
        failures = 0
        delays = retry_delays()
        while True:
            try:
                written = await self.call(self._write_rows, items)
                break
            except Exception as exc:
                failures += 1
                self._failed(exc, len(items), first=failures == 1)
                await asyncio.sleep(next(delays))
        if failures:
            logger.info("store write to %s recovered after %d failed attempts", self.path, failures)
        return written

    async def close(self) -> None:
        """Close the connection on the thread, then stop the thread."""
        try:
            await self.call(self._close_connection)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False)

    async def call(self, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run ``func(*args, **kwargs)`` on the thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    # Private methods: the event loop

    def _failed(self, exc: Exception, count: int, *, first: bool) -> None:
        self.errors += 1
        error = StorageError(f"cannot write {count} rows to {self.path}: {exc}")
        error.__cause__ = exc
        if first:
            logger.warning("%s; keeping them and retrying", error)
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                logger.exception("store on_error callback failed")

    # Private methods: the thread

    def _write_rows(self, items: list[Item]) -> dict[str, int]:
        """One transaction for the whole batch."""
        conn = self.conn
        assert conn is not None
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for table, row in items:
            rows.setdefault(table, []).append(row)
        for table, market_of in _MARKET_OF.items():
            if batch := rows.get(table):
                # Stable sort by market: arrival order is kept within each market, and the
                # (market_ticker, ts_ms) index is updated page by page instead of all over.
                batch.sort(key=market_of)
        written: dict[str, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in INSERTS:
                if batch := rows.get(table):
                    written[table] = insert_rows(conn, table, batch)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return written

    def _open_connection(self) -> sqlite3.Connection:
        conn = open_database(self.path, busy_timeout_ms=self._busy_timeout_ms)
        try:
            conn.execute(f"PRAGMA cache_size = {-WRITER_CACHE_KIB}")  # negative: KiB, not pages
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot configure database {self.path}: {exc}") from exc
        return conn

    def _close_connection(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
