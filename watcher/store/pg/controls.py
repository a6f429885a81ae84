"""The PostgreSQL controls: the :class:`~watcher.store.control_ports.ControlStore` of a database.

A one-connection asyncpg pool (:func:`~watcher.store.pg.connect.create_pool`); opening migrates
the schema under its advisory lock, as the other stores do. Every instance sharing the database
reads and writes the same rows, so a mute set through one is in force on all of them as soon as
their :class:`~watcher.service.controls.Controls` re-reads it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from watcher.domain.controls import ControlState, Mute, Pause
from watcher.store.pg.pooled import PooledStore

__all__ = ["APPLICATION_NAME", "PostgresControls", "load_controls"]


#: The pool's ``application_name``.
APPLICATION_NAME = "watcher-controls"

_MUTES_SQL = "SELECT target, until_ms, set_by, created_ms FROM mutes ORDER BY until_ms, target_key"
_PAUSE_SQL = "SELECT set_by, since_ms FROM paused WHERE id = 1"
_PUT_MUTE_SQL = """
INSERT INTO mutes (target_key, target, until_ms, set_by, created_ms) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (target_key) DO UPDATE SET target = excluded.target, until_ms = excluded.until_ms,
  set_by = excluded.set_by, created_ms = excluded.created_ms
"""
_DELETE_ALL_SQL = "DELETE FROM mutes"
_DELETE_KEYS_SQL = "DELETE FROM mutes WHERE target_key = ANY($1::text[])"
_PURGE_SQL = "DELETE FROM mutes WHERE until_ms <= $1"
_PAUSE_INSERT_SQL = (
    "INSERT INTO paused (id, set_by, since_ms) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING"
)
_RESUME_SQL = "DELETE FROM paused"


async def load_controls(conn: Any) -> ControlState:
    """The stored mutes (soonest end first) and pause, read on ``conn`` in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        mutes = tuple(Mute(*row) for row in await conn.fetch(_MUTES_SQL))
        row = await conn.fetchrow(_PAUSE_SQL)
    return ControlState(mutes, None if row is None else Pause(*row))


class PostgresControls(PooledStore):
    """``mutes`` and ``paused`` of a PostgreSQL database (see the module).

    Args:
        pool: an asyncpg pool on a migrated database (see :meth:`open`).
    """

    WHAT = "controls"
    APPLICATION_NAME = APPLICATION_NAME
    POOL_SIZE = 1

    # Public methods

    async def load(self) -> ControlState:
        """Every stored mute (soonest end first) and the pause."""
        return await self._call(load_controls)

    async def put_mute(self, mute: Mute) -> None:
        """Store ``mute``, replacing the mute of the same key."""
        row = (mute.key, mute.target, mute.until_ms, mute.by, mute.created_ms)
        await self._call(lambda conn: conn.execute(_PUT_MUTE_SQL, *row))

    async def delete_mutes(self, keys: Collection[str] | None = None) -> int:
        """Remove the mutes of ``keys`` (None: every mute); how many went."""
        if keys is None:
            return await self._count(_DELETE_ALL_SQL)
        return await self._count(_DELETE_KEYS_SQL, sorted(set(keys)))

    async def purge_mutes(self, now_ms: int) -> int:
        """Remove the mutes that ended at or before ``now_ms``; how many went."""
        return await self._count(_PURGE_SQL, now_ms)

    async def pause(self, pause: Pause) -> bool:
        """Store ``pause`` unless alerts are paused already; True if new."""
        return await self._count(_PAUSE_INSERT_SQL, pause.by, pause.since_ms) == 1

    async def resume(self) -> bool:
        """Remove the pause; True when there was one."""
        return await self._count(_RESUME_SQL) > 0

    # Private methods

    async def _count(self, sql: str, *args: Any) -> int:
        """Run one statement; how many rows it changed."""
        status = await self._call(lambda conn: conn.execute(sql, *args))
        return int(str(status).rsplit(" ", 1)[-1])
