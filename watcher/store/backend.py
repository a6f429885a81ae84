"""Pick the store's implementations from ``--db``: :func:`open_backend`.

A path (the embedded default) gives the SQLite implementations; a later issue adds
``postgresql://`` URLs. ``app.py`` and ``cli.py`` go through here and never name a backend's
classes, so adding one is a change to this module only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from watcher.errors import ConfigError
from watcher.store.ports import AlertStore, Backend, ReadModel, TickSink

__all__ = ["SQLiteBackend", "open_backend"]

#: ``--db`` prefixes of database servers, not supported yet.
_SERVER_SCHEMES = ("postgresql://", "postgres://")


class SQLiteBackend:
    """The SQLite implementations of the three ports, over one database file.

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


def open_backend(location: str | os.PathLike[str]) -> Backend:
    """The store implementations for ``--db``'s value.

    Args:
        location: a SQLite file path.

    Raises:
        ConfigError: ``location`` is a database URL this version cannot use.
    """
    text = os.fspath(location)
    if text.lower().startswith(_SERVER_SCHEMES):
        scheme = text.split("://", 1)[0]
        raise ConfigError(f"--db: {scheme}:// databases are not supported yet")
    return SQLiteBackend(text)
