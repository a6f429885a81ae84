"""Pick the store's implementations from ``--db``: :func:`open_backend`.

A path (the embedded default) gives the SQLite implementations; a ``postgresql://`` (or
``postgres://``) URL gives PostgreSQL's (:mod:`watcher.store.pg`, which alone imports asyncpg).
``app.py`` and ``cli.py`` go through here and never name a backend's classes, so adding one is a
change to this module only.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

from watcher.errors import StorageError
from watcher.store.pg.dsn import is_postgres
from watcher.store.ports import (
    AlertStore,
    Backend,
    ControlStore,
    Maintenance,
    PaperFills,
    ReadModel,
    TickSink,
)

__all__ = ["SQLiteBackend", "open_backend"]

_DAY_MS = 86_400_000


class SQLiteBackend:
    """The SQLite implementations of the ports, over one database file.

    Args:
        path: the database file (a writer creates it with mode 0600 and migrates it).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"<SQLiteBackend {str(self.path)!r}>"

    @property
    def location(self) -> str:
        """The database file, as given."""
        return str(self.path)

    def tick_sink(self, *, on_error: Callable[[Exception], None] | None = None) -> TickSink:
        """A new, unstarted :class:`~watcher.store.writer.StoreWriter`."""
        from watcher.store.writer import StoreWriter

        return StoreWriter(self.path, on_error=on_error)

    async def alert_store(self) -> AlertStore:
        """Open a :class:`~watcher.store.sqlite_alerts.SQLiteAlertStore` (creates, migrates)."""
        from watcher.store.sqlite_alerts import SQLiteAlertStore

        return await SQLiteAlertStore.open(self.path)

    async def read_model(self) -> ReadModel:
        """A :class:`~watcher.store.sqlite_read.SQLiteReadModel`; it connects on first use."""
        from watcher.store.sqlite_read import SQLiteReadModel

        return SQLiteReadModel(self.path)

    async def paper_fills(self) -> PaperFills:
        """Open a :class:`~watcher.store.sqlite_fills.SQLiteFills` (creates, migrates)."""
        from watcher.store.sqlite_fills import SQLiteFills

        return await SQLiteFills.open(self.path)

    async def control_store(self) -> ControlStore:
        """Open a :class:`~watcher.store.sqlite_controls.SQLiteControls` (creates, migrates)."""
        from watcher.store.sqlite_controls import SQLiteControls

        return await SQLiteControls.open(self.path)

    async def maintain(self, now_ms: int, retention_days: int) -> Maintenance:
        """Retention: delete market data older than ``retention_days`` in small batches on a
        thread (:func:`~watcher.store.retention.prune`); nothing to do when it is 0.

        Cancelling stops the pruning after its current batch.

        Raises:
            StorageError: the database cannot be opened or a batch failed.
        """
        import sqlite3

        from watcher.store.retention import prune

        if retention_days <= 0:
            return Maintenance()
        stop = threading.Event()
        cutoff = now_ms - retention_days * _DAY_MS
        try:
            deleted = await asyncio.to_thread(prune, self.path, cutoff_ms=cutoff, stop=stop)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot prune {self.path}: {exc}") from exc
        finally:
            stop.set()  # ends the thread's work early when this call was cancelled
        return Maintenance(deleted=deleted)


def open_backend(location: str | os.PathLike[str]) -> Backend:
    """The store implementations for ``--db``'s value.

    Args:
        location: a SQLite file path, or a ``postgresql://`` / ``postgres://`` URL.
    """
    text = os.fspath(location)
    if is_postgres(text):
        from watcher.store.pg.backend import PostgresBackend

        return PostgresBackend(text)
    return SQLiteBackend(text)
