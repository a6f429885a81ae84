"""The SQLite paper fills: the :class:`~watcher.store.ports.PaperFills` of a database file.

One private thread owns a writing connection (``open_database``, which creates and migrates
the file) and runs every statement; each ``await`` hands one call to it. A fill is inserted
with ``ON CONFLICT (fill_key) DO NOTHING`` in one autocommitted statement, so a key is stored
once however many processes record it. Amounts are encoded by :mod:`.fill_values`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from watcher.errors import StorageError
from watcher.store.fill_values import COLUMNS, row_fields, to_row
from watcher.store.records import PaperFill
from watcher.store.schema import open_database

__all__ = ["SQLiteFills"]

T = TypeVar("T")

_INSERT_SQL = (
    f"INSERT INTO paper_fills ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT (fill_key) DO NOTHING"
)
_RECENT_SQL = (
    f"SELECT {', '.join(COLUMNS)} FROM paper_fills"
    " WHERE (?1 IS NULL OR ticker = ?1) AND (?2 IS NULL OR position_id = ?2)"
    " ORDER BY ts_ms DESC, id DESC LIMIT ?3"
)


class SQLiteFills:
    """``paper_fills`` of a SQLite file, every statement on the store's own thread.

    Use :meth:`open` (it connects, creating and migrating the file).

    Raises:
        StorageError: the database cannot be opened, read or written (from any method).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # One thread owns the connection: sqlite3 objects are bound to their thread.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fills")
        self._conn: sqlite3.Connection | None = None  # used only on the worker thread
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SQLiteFills:
        """Connect (creating and migrating the file) and return the store."""
        store = cls(path)
        try:
            await store._in_thread(store._connect)
        except BaseException:
            await store.close()
            raise
        return store

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._conn is not None else "new"
        return f"<SQLiteFills {str(self.path)!r} {state}>"

    # Public methods

    async def record(self, fill: PaperFill) -> bool:
        """Store ``fill``; False (nothing stored) when its ``fill_key`` is there already."""
        return await self._in_thread(self._insert, to_row(fill))

    async def recent(
        self, *, ticker: str | None = None, position_id: str | None = None, limit: int = 100
    ) -> list[PaperFill]:
        """The newest fills first, of one market and/or position when given."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, but got {limit}")
        rows = await self._in_thread(self._select, (ticker, position_id, limit))
        return [PaperFill(**row_fields(row)) for row in rows]

    async def close(self) -> None:
        """Close the connection and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):
            await asyncio.wrap_future(self._worker.submit(self._disconnect))
        self._worker.shutdown(wait=False)

    # Private methods: on the worker thread

    def _connect(self) -> None:
        if self._conn is None:
            self._conn = open_database(self.path)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _insert(self, row: tuple[Any, ...]) -> bool:
        return self._execute(_INSERT_SQL, row).rowcount == 1

    def _select(self, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._execute(_RECENT_SQL, args).fetchall()

    def _execute(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        self._connect()
        assert self._conn is not None
        try:
            return self._conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise StorageError(f"paper fills of {self.path}: {exc}") from exc

    # Private methods: on the event loop

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageError(f"paper fills of {self.path} are closed")
        try:
            future = self._worker.submit(fn, *args)
        except RuntimeError as exc:  # the executor was shut down
            raise StorageError(f"paper fills of {self.path} are closed") from exc
        return await asyncio.wrap_future(future)
