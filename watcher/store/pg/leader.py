"""Which instance is active on a shared PostgreSQL database: a session-level advisory lock.

:class:`AdvisoryLeader` holds ``pg_try_advisory_lock(LEADER_LOCK)`` on a connection of its own,
named ``watcher <host> pid <pid>`` (its ``application_name``), so a standby can say who is active
by reading ``pg_locks`` joined with ``pg_stat_activity``. The lock lives exactly as long as that
session: a SIGKILLed or cut-off active loses it when the server ends the session, which is what
makes a takeover automatic.

A cut network leaves both ends waiting, so both ends shorten the wait: the server drops the
session after a few seconds without TCP answers (``tcp_keepalives_*``, ``tcp_user_timeout``,
set per session), and the active checks its own connection every second with a short timeout
(:meth:`AdvisoryLeader.check`), stepping down *before* the server can hand the lock to a standby.
The service's side of it (roles, logging, polling) is :mod:`watcher.service.leadership`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from watcher.store.pg.connect import CONNECT_TIMEOUT, storage_error

__all__ = ["LEADER_LOCK", "SESSION_SETTINGS", "AdvisoryLeader"]

#: The advisory lock key of the active instance (the migration lock is ...0001).
LEADER_LOCK = 0x57415443_00000002
#: Server-side limits on a dead client: the session ends ~6 s after the network goes silent.
SESSION_SETTINGS = {
    "tcp_keepalives_idle": "3",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "6000",
}
_PREFIX = "watcher "
_HOLDER_SQL = """
SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
  SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1
"""
_NOTE_SQL = """
INSERT INTO service_state (key, value, updated_ms) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms
"""
_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class AdvisoryLeader:
    """The active-instance lock on one dedicated connection (see the module).

    Args:
        dsn: the ``postgresql://`` URL.
        me: this instance, ``"<host> pid <pid>"``.
        check_timeout: seconds :meth:`check` waits for the server before giving up the lock.

    Raises:
        StorageError: (from the methods that connect) the server cannot be reached.
    """

    shared = True

    def __init__(self, dsn: str, *, me: str, check_timeout: float = 2.0) -> None:
        self.dsn = dsn
        self.me = me
        self.check_timeout = check_timeout
        self._conn: Any = None
        self._held = False

    def __repr__(self) -> str:
        state = "held" if self._held else "not held"
        return f"<AdvisoryLeader {self.me!r} {state}>"

    # Public methods

    async def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this instance holds it now."""
        conn = await self._connection()
        try:
            self._held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK))
        except _ERRORS as exc:
            await self._drop()
            raise storage_error("take the active lock on", self.dsn, exc) from exc
        return self._held

    async def holder(self) -> str | None:
        """Who holds the lock (``"<host> pid <pid>"``), or None when nobody does."""
        conn = await self._connection()
        high, low = LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFFFFFF
        try:
            name = await conn.fetchval(_HOLDER_SQL, high, low)
        except _ERRORS as exc:
            await self._drop()
            raise storage_error("read the active lock on", self.dsn, exc) from exc
        if name is None:
            return None
        return str(name).removeprefix(_PREFIX) or "another instance"

    async def check(self) -> bool:
        """True while the lock's session answers within ``check_timeout``; else drop it."""
        if self._conn is None or not self._held or self._conn.is_closed():
            self._held = False
            return False
        try:
            async with asyncio.timeout(self.check_timeout):
                await self._conn.fetchval("SELECT 1")
        except _ERRORS:
            await self._drop()
            return False
        return True

    async def note(self, key: str, value: str, *, now_ms: int) -> None:
        """Upsert ``service_state[key]`` on the lock's connection (a standby's heartbeat)."""
        conn = await self._connection()
        try:
            await conn.execute(_NOTE_SQL, key, value, now_ms)
        except _ERRORS as exc:
            await self._drop()
            raise storage_error("write service_state on", self.dsn, exc) from exc

    async def release(self) -> None:
        """Give the lock up at once (a clean hand-over); the connection stays open."""
        if self._conn is not None and self._held:
            self._held = False
            try:
                async with asyncio.timeout(self.check_timeout):
                    await self._conn.fetchval("SELECT pg_advisory_unlock($1)", LEADER_LOCK)
            except _ERRORS:
                await self._drop()  # ending the session frees the lock too

    async def close(self) -> None:
        """Release the lock and close the connection (idempotent)."""
        await self.release()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), self.check_timeout)
            except _ERRORS:
                conn.terminate()

    # Private methods

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._held = False  # a new session holds nothing
        settings = {"application_name": f"{_PREFIX}{self.me}"[:63], **SESSION_SETTINGS}
        try:
            self._conn = await asyncpg.connect(
                self.dsn, timeout=CONNECT_TIMEOUT, server_settings=settings
            )
        except (*_ERRORS, ValueError) as exc:
            raise storage_error("connect to", self.dsn, exc) from exc
        return self._conn

    async def _drop(self) -> None:
        """Forget a connection that failed; terminating it ends the session (and the lock)."""
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
