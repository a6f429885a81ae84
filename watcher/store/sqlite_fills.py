"""The SQLite paper fills: the :class:`~watcher.store.ports.PaperFills` of a database file.

One private thread owns a writing connection (``open_database``, which creates and migrates
the file) and runs every statement; each ``await`` hands one call to it. A fill is inserted
with ``ON CONFLICT (fill_key) DO NOTHING`` in one autocommitted statement, so a key is stored
once however many processes record it. Amounts are encoded by :mod:`.fill_values`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from watcher.store.fill_values import COLUMNS, row_fields, to_row
from watcher.store.records import PaperFill
from watcher.store.sqlite_thread import ThreadedSQLite

__all__ = ["SQLiteFills"]


_INSERT_SQL = (
    f"INSERT INTO paper_fills ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT (fill_key) DO NOTHING"
)
_RECENT_SQL = (
    f"SELECT {', '.join(COLUMNS)} FROM paper_fills"
    " WHERE (?1 IS NULL OR ticker = ?1) AND (?2 IS NULL OR position_id = ?2)"
    " ORDER BY ts_ms DESC, id DESC LIMIT ?3"
)


class SQLiteFills(ThreadedSQLite):
    """``paper_fills`` of a SQLite file, every statement on the store's own thread.

    Use :meth:`open` (it connects, creating and migrating the file).

    Raises:
        StorageError: the database cannot be opened, read or written (from any method).
    """

    WHAT = "paper fills"
    THREAD = "fills"

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

    # Private methods: on the worker thread

    def _insert(self, row: tuple[Any, ...]) -> bool:
        return self._execute(_INSERT_SQL, row).rowcount == 1

    def _select(self, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._execute(_RECENT_SQL, args).fetchall()

    def _execute(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        return self._connection().execute(sql, args)
