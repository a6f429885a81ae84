"""The PostgreSQL committer of the store writer: each batch in one transaction, exactly once.

:class:`~watcher.store.writer.StoreWriter` keeps its queue, batching, backpressure and stats;
:class:`PostgresCommitter` only commits its batches, on ONE asyncpg connection named
``watcher-writer`` (:data:`APPLICATION_NAME`). One batch is one transaction:

1. ``INSERT INTO store_batches (batch_id, ...) ON CONFLICT DO NOTHING``: the batch's id, first;
2. the daily partitions of the batch's days (:func:`~watcher.store.pg.schema.ensure_partitions`;
   days already made are remembered, so this is usually nothing);
3. ``COPY`` of the append-only tables (tickers, order book, lifecycle events); trades and fills
   through a temporary staging table and ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` (a
   backfilled trade may repeat); market and ``service_state`` upserts with ``executemany``.

Exactly once across a dropped connection: a failed attempt (``on_error`` hears each one) is
retried after :func:`~watcher.store.writer_thread.retry_delays` on a new connection, with the
same batch id. When the previous attempt's COMMIT reached the server, the retry's first
statement finds the id in ``store_batches`` and writes nothing; when the old transaction is
still in flight on a backend that lost its client, that insert waits on the id's unique index
until the old transaction ends, so the answer is never a guess. Meanwhile the writer's bounded
queue keeps taking rows until it is full, and ``stats`` shows the queue growing and the errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from watcher.errors import StorageError
from watcher.store.pg.connect import connect, storage_error
from watcher.store.pg.dsn import mask_dsn
from watcher.store.pg.schema import day_of, ensure_partitions, migrate
from watcher.store.rows import COLUMNS
from watcher.store.writer_thread import Item, retry_delays

__all__ = ["APPLICATION_NAME", "PostgresCommitter"]

logger = logging.getLogger("watcher.store")

#: The writer connection's ``application_name`` (find it in ``pg_stat_activity``).
APPLICATION_NAME = "watcher-writer"
#: Days of partitions made ahead when the writer starts: today and the next two.
DAYS_AHEAD = 3

#: Tables written with ``COPY`` straight into the table (no unique key besides ``id``).
_COPIED = ("tickers", "orderbook_snapshots", "orderbook_deltas", "lifecycle_events")
#: Tables written through a staging table: their conflict target.
_STAGED = {"trades": "(trade_id, ts_ms)", "fills": "(trade_id)"}
#: Tables written with ``executemany``: the statement.
_UPSERTS = {
    # None keeps what is stored: a lifecycle event or a partial REST answer erases nothing.
    "markets": "INSERT INTO markets (market_ticker, title, status, close_time_ms, result,"
    " updated_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (market_ticker) DO UPDATE SET"
    " title = coalesce(excluded.title, markets.title),"
    " status = coalesce(excluded.status, markets.status),"
    " close_time_ms = coalesce(excluded.close_time_ms, markets.close_time_ms),"
    " result = coalesce(excluded.result, markets.result), updated_ms = excluded.updated_ms",
    "service_state": "INSERT INTO service_state (key, value, updated_ms) VALUES ($1, $2, $3)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
    "events": "INSERT INTO events (event_ticker, info, updated_ms) VALUES ($1, $2, $3)"
    " ON CONFLICT (event_ticker) DO UPDATE SET info = excluded.info,"
    " updated_ms = excluded.updated_ms",
}
_CLAIM = (
    "INSERT INTO store_batches (batch_id, committed_ms) VALUES ($1, $2)"
    " ON CONFLICT (batch_id) DO NOTHING"
)


def _staging(table: str) -> str:
    return f"watcher_in_{table}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Batch:
    """One batch's rows grouped by table (in write order), its days and its id."""

    __slots__ = ("days", "id", "rows", "written")

    def __init__(self, items: list[Item]) -> None:
        self.id = uuid.uuid4().hex
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for table, row in items:
            grouped.setdefault(table, []).append(row)
        self.rows = {table: grouped[table] for table in COLUMNS if table in grouped}
        self.days = {day_of(row[1]) for row in grouped.get("tickers", ())}
        self.days.update(day_of(row[2]) for row in grouped.get("trades", ()))
        #: Rows written per table by the attempt that reached COMMIT (None before one did).
        self.written: dict[str, int] | None = None

    def counts(self) -> dict[str, int]:
        return {table: len(rows) for table, rows in self.rows.items()}


class PostgresCommitter:
    """Commits a store writer's batches to PostgreSQL on one connection, exactly once each.

    Args:
        dsn: the ``postgresql://`` URL (never shown: messages use the masked one).
        on_error: called on the event loop with a :class:`StorageError` for each failed write
            attempt; the batch is kept and retried.
        application_name: the connection's name in ``pg_stat_activity``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        on_error: Callable[[Exception], None] | None = None,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        self._dsn = dsn
        self.location = mask_dsn(dsn)
        self.application_name = application_name
        #: Failed write attempts so far.
        self.errors = 0
        self._on_error = on_error
        self._conn: Any = None
        self._days: set[int] = set()  # days whose partitions are known to exist

    def __repr__(self) -> str:
        state = "connected" if self._conn is not None else "disconnected"
        return f"<PostgresCommitter {self.location!r} {state} errors={self.errors}>"

    # Public methods

    async def open(self) -> None:
        """Connect, migrate, and make today's and the next days' partitions.

        Raises:
            StorageError: the server cannot be reached, or the schema cannot be migrated.
        """
        conn = await connect(self._dsn, application_name=self.application_name)
        try:
            await migrate(conn, now_ms=_now_ms())
            await self._prepare(conn)
            today = day_of(_now_ms())
            await ensure_partitions(conn, range(today, today + DAYS_AHEAD))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, RuntimeError) as exc:
            conn.terminate()
            raise storage_error("open", self._dsn, exc) from exc
        self._days.update(range(today, today + DAYS_AHEAD))
        self._conn = conn

    async def commit(self, items: list[Item]) -> dict[str, int]:
        """Write one batch in one transaction, retrying on a new connection until it is written.

        Returns:
            Rows written per table (trades and fills ignored as duplicates are not counted).
        """
        batch = _Batch(items)
        failures = 0
        delays = retry_delays()
        while True:
            try:
                written = await self._attempt(batch)
                break
            except Exception as exc:
                failures += 1
                self._failed(exc, len(items), first=failures == 1)
                self._discard(exc)
                await asyncio.sleep(next(delays))
        if failures:
            logger.info(
                "store write to %s recovered after %d failed attempts", self.location, failures
            )
        return written

    async def close(self) -> None:
        """Close the connection (terminated if it does not close in time)."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=5)
        except Exception:
            conn.terminate()

    # Private methods

    async def _attempt(self, batch: _Batch) -> dict[str, int]:
        """One try: the whole batch in one transaction, or nothing if its id is stored."""
        conn = self._conn
        if conn is None:
            conn = self._conn = await self._reconnect()
        transaction = conn.transaction()
        await transaction.start()
        try:
            if await conn.execute(_CLAIM, batch.id, _now_ms()) == "INSERT 0 0":
                # An earlier attempt committed it; its COMMIT's answer was lost with the link.
                await transaction.rollback()
                logger.info("store batch %s was already committed; not writing it again", batch.id)
                return batch.written or batch.counts()
            if missing := batch.days - self._days:
                await ensure_partitions(conn, missing)
            written = {
                table: await _write_table(conn, table, rows) for table, rows in batch.rows.items()
            }
            batch.written = written
            await transaction.commit()
        except BaseException:
            # Report the first error, not the rollback's on a dead connection.
            with contextlib.suppress(Exception):
                await transaction.rollback()
            raise
        self._days |= batch.days
        return written

    async def _reconnect(self) -> Any:
        conn = await connect(self._dsn, application_name=self.application_name)
        try:
            await self._prepare(conn)
        except BaseException:
            conn.terminate()
            raise
        logger.info("store writer reconnected to %s", self.location)
        return conn

    async def _prepare(self, conn: Any) -> None:
        """The connection's staging tables (temporary: one set per connection)."""
        for table in _STAGED:
            await conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_staging(table)} ON COMMIT DELETE ROWS AS"
                f" SELECT {', '.join(COLUMNS[table])} FROM {table} WITH NO DATA"
            )

    def _discard(self, exc: Exception) -> None:
        """Drop the connection unless it is known to be healthy (a plain SQL error)."""
        conn = self._conn
        if conn is None:
            return
        if isinstance(exc, asyncpg.PostgresError) and not conn.is_closed():
            return  # the transaction was rolled back; the connection is fine
        self._conn = None
        conn.terminate()

    def _failed(self, exc: Exception, count: int, *, first: bool) -> None:
        self.errors += 1
        if isinstance(exc, StorageError):
            error = exc
        else:
            error = storage_error(f"write {count} rows to", self._dsn, exc)
        if first:
            logger.warning("%s; keeping them and retrying", error)
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                logger.exception("store on_error callback failed")


async def _write_table(conn: Any, table: str, rows: list[tuple[Any, ...]]) -> int:
    """Write one table's rows of the batch in the current transaction; the rows written."""
    columns = COLUMNS[table]
    if table in _COPIED:
        status = await conn.copy_records_to_table(table, records=rows, columns=columns)
        return _count(status)
    if table in _STAGED:
        staging = _staging(table)
        await conn.copy_records_to_table(staging, records=rows, columns=columns)
        names = ", ".join(columns)
        status = await conn.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ORDER BY ctid"
            f" ON CONFLICT {_STAGED[table]} DO NOTHING"
        )
        return _count(status)
    await conn.executemany(_UPSERTS[table], rows)
    return len(rows)


def _count(status: str) -> int:
    """The row count of a command tag (``COPY 5000``, ``INSERT 0 12``)."""
    return int(status.rsplit(" ", 1)[-1])
