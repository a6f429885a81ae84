"""The SQLite controls: the :class:`~watcher.store.control_ports.ControlStore` of a database file.

One private thread owns a writing connection (``open_database``, which creates and migrates
the file) and runs every statement, each one autocommitted; another process on the same file
(``watcher web``, a second ``watcher`` command) sees a change as soon as it is made.
:func:`load_controls` reads both tables on any connection, read-only ones included.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection
from typing import Any

from watcher.domain.controls import ControlState, Mute, Pause
from watcher.store.sqlite_thread import ThreadedSQLite

__all__ = ["SQLiteControls", "load_controls"]


_MUTES_SQL = "SELECT target, until_ms, set_by, created_ms FROM mutes ORDER BY until_ms, target_key"
_PAUSE_SQL = "SELECT set_by, since_ms FROM paused WHERE id = 1"
_PUT_MUTE_SQL = """
INSERT INTO mutes (target_key, target, until_ms, set_by, created_ms) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (target_key) DO UPDATE SET target = excluded.target, until_ms = excluded.until_ms,
  set_by = excluded.set_by, created_ms = excluded.created_ms
"""
_DELETE_ALL_SQL = "DELETE FROM mutes"
_DELETE_KEYS_SQL = "DELETE FROM mutes WHERE target_key IN (SELECT value FROM json_each(?))"
_PURGE_SQL = "DELETE FROM mutes WHERE until_ms <= ?"
_PAUSE_INSERT_SQL = (
    "INSERT INTO paused (id, set_by, since_ms) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_RESUME_SQL = "DELETE FROM paused"


def load_controls(conn: sqlite3.Connection) -> ControlState:
    """The stored mutes (soonest end first) and pause, read on ``conn`` in one snapshot."""
    with contextlib.ExitStack() as stack:
        if not conn.in_transaction:
            conn.execute("BEGIN")
            stack.callback(conn.execute, "COMMIT")
        mutes = tuple(Mute(*row) for row in conn.execute(_MUTES_SQL))
        row = conn.execute(_PAUSE_SQL).fetchone()
    return ControlState(mutes, None if row is None else Pause(*row))


class SQLiteControls(ThreadedSQLite):
    """``mutes`` and ``paused`` of a SQLite file, every statement on the store's own thread.

    Use :meth:`open` (it connects, creating and migrating the file).

    Raises:
        StorageError: the database cannot be opened, read or written (from any method).
    """

    WHAT = "controls"
    THREAD = "controls"

    # Public methods

    async def load(self) -> ControlState:
        """Every stored mute (soonest end first) and the pause."""
        return await self._in_thread(lambda: load_controls(self._connection()))

    async def put_mute(self, mute: Mute) -> None:
        """Store ``mute``, replacing the mute of the same key."""
        row = (mute.key, mute.target, mute.until_ms, mute.by, mute.created_ms)
        await self._in_thread(self._execute, _PUT_MUTE_SQL, row)

    async def delete_mutes(self, keys: Collection[str] | None = None) -> int:
        """Remove the mutes of ``keys`` (None: every mute); how many went."""
        if keys is None:
            return await self._count(_DELETE_ALL_SQL, ())
        return await self._count(_DELETE_KEYS_SQL, (json.dumps(sorted(set(keys))),))

    async def purge_mutes(self, now_ms: int) -> int:
        """Remove the mutes that ended at or before ``now_ms``; how many went."""
        return await self._count(_PURGE_SQL, (now_ms,))

    async def pause(self, pause: Pause) -> bool:
        """Store ``pause`` unless alerts are paused already; True if new."""
        return await self._count(_PAUSE_INSERT_SQL, (pause.by, pause.since_ms)) == 1

    async def resume(self) -> bool:
        """Remove the pause; True when there was one."""
        return await self._count(_RESUME_SQL, ()) > 0

    # Private methods: on the worker thread

    def _execute(self, sql: str, args: tuple[Any, ...]) -> int:
        return self._connection().execute(sql, args).rowcount

    # Private methods: on the event loop

    async def _count(self, sql: str, args: tuple[Any, ...]) -> int:
        return await self._in_thread(self._execute, sql, args)
