"""A small asyncpg pool on a migrated database: the base of the PostgreSQL stores that write a
few rows now and then (paper fills, controls), apart from the COPY writer and the alert store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

from watcher.errors import StorageError
from watcher.store.pg import schema
from watcher.store.pg.connect import close_pool, create_pool, on_pool, storage_error

__all__ = ["PooledStore"]

T = TypeVar("T")


class PooledStore:
    """A pool on a database whose schema :meth:`open` migrated (under its advisory lock).

    Subclasses name what they hold (``WHAT``, in error messages), their ``application_name``
    and the pool's size.

    Args:
        pool: an asyncpg pool on a migrated database (see :meth:`open`).
    """

    WHAT = "database"
    APPLICATION_NAME = "watcher"
    POOL_SIZE = 1

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, dsn: str) -> Self:
        """Connect, migrate the schema (under its advisory lock), and return the store.

        Raises:
            StorageError: the database cannot be reached or migrated, or is newer than this
                watcher.
        """
        pool = await create_pool(dsn, application_name=cls.APPLICATION_NAME, max_size=cls.POOL_SIZE)
        store = cls(pool)
        try:
            now_ms = int(time.time() * 1000)
            await store._call(lambda conn: schema.migrate(conn, now_ms=now_ms))
        except RuntimeError as exc:  # the database is newer than this watcher
            await store.close()
            raise storage_error("use", dsn, exc) from exc
        except BaseException:
            await store.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'closed' if self._closed else 'open'}>"

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await close_pool(self._pool)

    # Private methods

    async def _call(self, body: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``body(connection)`` on a pooled connection; driver errors → StorageError."""
        if self._closed:
            raise StorageError(f"{self.WHAT} are closed")
        return await on_pool(self._pool, body, what=self.WHAT)
