"""The PostgreSQL backend: the ports over one ``postgresql://`` URL, and its upkeep.

:func:`watcher.store.open_backend` returns a :class:`PostgresBackend` for a ``postgresql://``
or ``postgres://`` ``--db``; this module (and asyncpg) is imported only then. The URL's password
is never shown: :attr:`PostgresBackend.location` and every error carry the masked URL.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from watcher.store.pg.connect import connect, storage_error
from watcher.store.pg.dsn import mask_dsn
from watcher.store.pg.schema import DAY_MS, day_of, drop_partitions_before, ensure_partitions
from watcher.store.ports import (
    AlertStore,
    ControlStore,
    Maintenance,
    PaperFills,
    ReadModel,
    TickSink,
)

__all__ = ["APPLICATION_NAME", "DAYS_AHEAD", "PostgresBackend"]

#: The maintenance connection's ``application_name``.
APPLICATION_NAME = "watcher-maintenance"
#: Partitions kept ready: today's and the next two days'.
DAYS_AHEAD = 3
#: Batch ids are needed only while a batch is being retried; older ones are deleted.
BATCH_IDS_KEPT_MS = DAY_MS
#: Rows deleted per statement from the tables that are not partitioned.
DELETE_BATCH = 10_000
#: Market-data tables that are not partitioned: retention deletes their old rows.
_UNPARTITIONED = ("orderbook_deltas", "orderbook_snapshots")


def _instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PostgresBackend:
    """The PostgreSQL implementations of the ports, on one database.

    Args:
        dsn: the ``postgresql://`` URL.
        instance: this process's name among instances sharing the database (delivery leases);
            defaults to ``host:pid``.
    """

    def __init__(self, dsn: str, *, instance: str | None = None) -> None:
        self._dsn = dsn
        self.instance = instance or _instance_name()

    def __repr__(self) -> str:
        return f"<PostgresBackend {self.location!r}>"

    @property
    def location(self) -> str:
        """The URL with its password masked."""
        return mask_dsn(self._dsn)

    def tick_sink(self, *, on_error: Callable[[Exception], None] | None = None) -> TickSink:
        """A new, unstarted store writer committing to PostgreSQL (one connection)."""
        from watcher.store.pg.writer import PostgresCommitter
        from watcher.store.writer import StoreWriter

        committer = PostgresCommitter(self._dsn, on_error=on_error)
        return StoreWriter(self.location, committer=committer)

    async def alert_store(self) -> AlertStore:
        """Open the PostgreSQL alert store (creating and migrating the schema)."""
        from watcher.store.pg.alerts import PostgresAlertStore

        store: AlertStore = await PostgresAlertStore.open(self._dsn, instance=self.instance)
        return store

    async def read_model(self) -> ReadModel:
        """A read model over a read-only pool; it connects on first use."""
        from watcher.store.pg.read import PostgresReadModel

        return PostgresReadModel(self._dsn)

    async def paper_fills(self) -> PaperFills:
        """Open the PostgreSQL paper fills (creating and migrating the schema)."""
        from watcher.store.pg.fills import PostgresFills

        return await PostgresFills.open(self._dsn)

    async def control_store(self) -> ControlStore:
        """Open the PostgreSQL mutes and pause (creating and migrating the schema)."""
        from watcher.store.pg.controls import PostgresControls

        return await PostgresControls.open(self._dsn)

    async def maintain(self, now_ms: int, retention_days: int) -> Maintenance:
        """Make today's and the next days' partitions; with ``retention_days`` > 0, drop whole
        partitions older than that and delete older order-book rows; forget old batch ids.

        Raises:
            StorageError: the database cannot be reached or changed.
        """
        conn = await connect(self._dsn, application_name=APPLICATION_NAME)
        try:
            today = day_of(now_ms)
            created = await ensure_partitions(conn, range(today, today + DAYS_AHEAD))
            await conn.execute(
                "DELETE FROM store_batches WHERE committed_ms < $1", now_ms - BATCH_IDS_KEPT_MS
            )
            if retention_days <= 0:
                return Maintenance(created=tuple(created))
            cutoff = now_ms - retention_days * DAY_MS
            dropped = await drop_partitions_before(conn, cutoff)
            deleted = {table: await _delete_before(conn, table, cutoff) for table in _UNPARTITIONED}
            return Maintenance(deleted=deleted, created=tuple(created), dropped=tuple(dropped))
        except Exception as exc:
            raise storage_error("maintain", self._dsn, exc) from exc
        finally:
            await conn.close()


async def _delete_before(conn: Any, table: str, cutoff_ms: int) -> int:
    """Delete ``table``'s rows older than ``cutoff_ms``, :data:`DELETE_BATCH` per statement."""
    sql = (
        f"DELETE FROM {table} WHERE id IN"
        f" (SELECT id FROM {table} WHERE ts_ms < $1 ORDER BY id LIMIT $2)"
    )
    deleted = 0
    while True:
        status = await conn.execute(sql, cutoff_ms, DELETE_BATCH)
        count = int(status.rsplit(" ", 1)[-1])
        deleted += count
        if count < DELETE_BATCH:
            return deleted
