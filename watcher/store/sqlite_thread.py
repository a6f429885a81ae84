"""One SQLite connection owned by one private thread: the base of the small stores (paper
fills, controls) that write a few rows now and then, apart from the batched tick writer.

sqlite3 objects are bound to the thread that made them, so every statement runs on the store's
own thread and each ``await`` hands it one call. The connection is ``open_database``'s (it
creates and migrates the file); each statement is autocommitted, so another process on the same
file sees a change as soon as it is made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

from watcher.errors import StorageError
from watcher.store.schema import open_database

__all__ = ["ThreadedSQLite"]

T = TypeVar("T")


class ThreadedSQLite:
    """A database file's writing connection, used only on the store's own thread.

    Subclasses name what they hold (``WHAT``, in error messages) and their thread. Use
    :meth:`open` (it connects, creating and migrating the file).

    Raises:
        StorageError: the database cannot be opened, read or written (from any method).
    """

    #: What the store holds, for messages: ``"paper fills of data/w.db are closed"``.
    WHAT = "database"
    THREAD = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=self.THREAD)
        self._conn: sqlite3.Connection | None = None  # used only on the worker thread
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> Self:
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
        return f"<{type(self).__name__} {str(self.path)!r} {state}>"

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

    def _connection(self) -> sqlite3.Connection:
        self._connect()
        assert self._conn is not None
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # Private methods: on the event loop

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the store's thread; a SQLite error becomes a StorageError."""
        if self._closed:
            raise StorageError(f"{self.WHAT} of {self.path} are closed")
        try:
            future = self._worker.submit(fn, *args)
        except RuntimeError as exc:  # the executor was shut down
            raise StorageError(f"{self.WHAT} of {self.path} are closed") from exc
        try:
            return await asyncio.wrap_future(future)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.WHAT} of {self.path}: {exc}") from exc
