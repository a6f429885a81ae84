"""``watcher db copy``: move a SQLite history into PostgreSQL, re-runnable and resumable.

:class:`HistoryCopy` reads the SQLite file through a read-only connection inside one read
transaction (a consistent snapshot; a running watcher keeps writing meanwhile), migrates the
target with :func:`~watcher.store.pg.schema.migrate`, and copies every table in chunks of
:data:`CHUNK_ROWS` rows. Each chunk is one PostgreSQL transaction: ``COPY`` into a temporary
table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` into the real one. Why this is
safe to run again, or to resume after it was killed:

- market rows keep their source ``id``: ``tickers`` are keyed by ``(id, ts_ms)``, ``trades``
  by ``(trade_id, ts_ms)`` too, the other tables by their primary keys, so a row copied before
  is skipped;
- ``alerts`` are keyed by ``idempotency_key`` and ``paper_fills`` by ``fill_key``: a row whose
  key the target holds is skipped, and a row keeps its source ``id`` unless the target already
  uses that id for another row; ``alert_deliveries.alert_id`` is mapped to the target's alert
  through the key; ``events`` are keyed by ``event_ticker`` (an event the target holds, as
  a running watcher on it wrote it, is kept); ``mutes`` by their target and ``paused`` by its
  one row (what the target holds is kept);
- the daily partitions of ``tickers`` and ``trades`` are created (:func:`ensure_partitions`)
  for the days of a chunk before it is written;
- every id sequence is moved past the largest source id before copying (a new alert never takes
  a source id) and past the largest stored id afterwards.

The report compares row counts table by table; a target count below the source's means
rows are missing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from watcher.errors import StorageError
from watcher.store.pg.dsn import mask_dsn
from watcher.store.pg.schema import DAY_MS, PARTITIONED, ensure_partitions, migrate
from watcher.store.schema import open_database

__all__ = ["CHUNK_ROWS", "TABLES", "CopyReport", "HistoryCopy", "TableCount", "report_lines"]

#: Rows read from SQLite and written to PostgreSQL per transaction.
CHUNK_ROWS = 5000
#: Every table, in copy order (``alerts`` before ``alert_deliveries``).
TABLES = (
    "tickers",
    "trades",
    "orderbook_snapshots",
    "orderbook_deltas",
    "fills",
    "lifecycle_events",
    "markets",
    "alerts",
    "alert_deliveries",
    "rule_state",
    "service_state",
    "paper_fills",
    "events",
    "mutes",
    "paused",
)
#: Tables with a bigint ``id`` drawn from the sequence ``{table}_id_seq``.
SEQUENCED = (
    "tickers",
    "trades",
    "orderbook_snapshots",
    "orderbook_deltas",
    "fills",
    "lifecycle_events",
    "alerts",
    "paper_fills",
)
#: Tables unique by a key besides ``id``: the key decides what is copied, not the id.
_KEYED = {"alerts": "idempotency_key", "paper_fills": "fill_key"}
_DELIVERY_COLUMNS = (
    "idempotency_key",
    "target",
    "status",
    "attempts",
    "next_attempt_ms",
    "last_error",
    "updated_ms",
)


@dataclass(frozen=True, slots=True)
class TableCount:
    """Rows of one table in the source snapshot and in the target after the copy."""

    table: str
    source: int
    target: int

    @property
    def is_complete(self) -> bool:
        return self.target >= self.source


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What one run of :meth:`HistoryCopy.run` did."""

    counts: tuple[TableCount, ...]
    inserted: int  # rows new to the target in this run
    read: int  # rows read from the source in this run
    chunks: int
    seconds: float
    finished: bool  # False when stopped early by ``max_chunks``

    @property
    def is_complete(self) -> bool:
        return all(count.is_complete for count in self.counts)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one table is read, staged and inserted."""

    table: str
    select: str  # SQLite: rowid first, then ``columns``; parameters (after_rowid, limit)
    columns: tuple[str, ...]
    stage: str  # PostgreSQL: the temporary table
    insert: str  # PostgreSQL: from the stage into the table


class HistoryCopy:
    """Copy the SQLite file ``source`` into the PostgreSQL database ``target``; an async
    context manager (entering opens both, migrates the target and counts the source).

    Args:
        source: the SQLite database file (read only; it must be at the current schema).
        target: a ``postgresql://`` URL (a password may come from PGPASSWORD or ~/.pgpass).
        chunk_rows: rows per chunk and per PostgreSQL transaction.
    """

    def __init__(
        self, source: str | os.PathLike[str], target: str, *, chunk_rows: int = CHUNK_ROWS
    ) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, but got {chunk_rows}")
        self.source = Path(source)
        self.target = target
        self._chunk_rows = chunk_rows
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None
        self._counts: dict[str, int] = {}
        self._days: set[int] = set()

    def __repr__(self) -> str:
        return f"<HistoryCopy {str(self.source)!r} → {mask_dsn(self.target)!r}>"

    # Public methods

    @property
    def total(self) -> int:
        """Rows in the source snapshot, all tables together."""
        return sum(self._counts.values())

    async def __aenter__(self) -> HistoryCopy:
        self._sqlite = open_database(self.source, readonly=True)
        try:
            self._sqlite.execute("BEGIN")  # one snapshot for the counts and every chunk
            self._counts = {t: _source_count(self._sqlite, t) for t in TABLES}
            self._pg = await self._connect()
            await self._pg_call(self._migrate)
            await self._pg_call(self._pg.execute, _STAGES)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def run(
        self, *, progress: Callable[[int], None] | None = None, max_chunks: int | None = None
    ) -> CopyReport:
        """Copy every table chunk by chunk, then count the target.

        Args:
            progress: called with the number of source rows of each chunk written.
            max_chunks: stop after this many chunks (a test's stand-in for a killed copy).
        """
        conn, started = self._require(), time.perf_counter()
        floors = {t: _source_max_id(conn, t) for t in SEQUENCED}
        await self._pg_call(self._pg.execute, _advance_sequences(floors))
        inserted = read = chunks = 0
        for plan in (_plan(conn, table) for table in TABLES):
            after = 0
            while max_chunks is None or chunks < max_chunks:
                rows = conn.execute(plan.select, (after, self._chunk_rows)).fetchall()
                if not rows:
                    break
                after = rows[-1][0]
                inserted += await self._pg_call(self._write, plan, [r[1:] for r in rows])
                read, chunks = read + len(rows), chunks + 1
                if progress is not None:
                    progress(len(rows))
        finished = max_chunks is None or chunks < max_chunks
        await self._pg_call(self._pg.execute, _advance_sequences({}))
        counts = await self._pg_call(self._target_counts)
        seconds = time.perf_counter() - started
        return CopyReport(counts, inserted, read, chunks, seconds, finished)

    async def close(self) -> None:
        """Close both connections (idempotent)."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            pg, self._pg = self._pg, None
            await pg.close()

    # Private methods

    def _require(self) -> sqlite3.Connection:
        if self._sqlite is None or self._pg is None:
            raise StorageError(f"{self!r} is not open: use `async with`")
        return self._sqlite

    async def _connect(self) -> Any:
        import asyncpg

        try:
            return await asyncpg.connect(self.target, timeout=10)
        except (OSError, TimeoutError, ValueError, asyncpg.PostgresError) as exc:
            raise StorageError(self._problem("cannot connect to", exc)) from exc

    async def _migrate(self) -> None:
        try:
            await migrate(self._pg, now_ms=time.time_ns() // 1_000_000)
        except RuntimeError as exc:  # the target is newer than this watcher
            raise StorageError(self._problem("cannot copy into", exc)) from exc

    async def _pg_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        import asyncpg

        try:
            return await fn(*args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(self._problem("cannot copy into", exc)) from exc

    def _problem(self, what: str, exc: BaseException) -> str:
        """An error line naming the target with its password masked, even inside ``exc``."""
        text = str(exc) or type(exc).__name__
        password = urlsplit(self.target).password
        if password:
            text = text.replace(password, "***").replace(unquote(password), "***")
        return f"{what} {mask_dsn(self.target)}: {text}"

    async def _write(self, plan: _Plan, rows: list[tuple[Any, ...]]) -> int:
        """One chunk in one transaction; returns the rows new to the target."""
        if plan.table in PARTITIONED:
            ts = plan.columns.index("ts_ms")
            days = {row[ts] // DAY_MS for row in rows} - self._days
            if days:
                await ensure_partitions(self._pg, days)
                self._days |= days
        async with self._pg.transaction():
            await self._pg.copy_records_to_table(plan.stage, records=rows, columns=plan.columns)
            status = await self._pg.execute(plan.insert)
        return int(str(status).rsplit(" ", 1)[-1])

    async def _target_counts(self) -> tuple[TableCount, ...]:
        found = []
        for table in TABLES:
            target = int(await self._pg.fetchval(f"SELECT count(*) FROM {table}"))
            found.append(TableCount(table, self._counts[table], target))
        return tuple(found)


def report_lines(report: CopyReport) -> list[str]:
    """The row counts side by side, then one summary line."""
    width = max(len(count.table) for count in report.counts)
    lines = [f"{'table':<{width}}  {'sqlite':>12}  {'postgresql':>12}"]
    for count in report.counts:
        mark = "" if count.is_complete else f"  MISSING {count.source - count.target}"
        lines.append(f"{count.table:<{width}}  {count.source:>12,}  {count.target:>12,}{mark}")
    rate = report.read / report.seconds if report.seconds > 0 else 0.0
    lines.append(
        f"read {report.read:,} rows in {report.chunks:,} chunks, {report.inserted:,} new,"
        f" in {report.seconds:.1f} s ({rate:,.0f} rows/s)"
    )
    if not report.finished:
        lines.append("stopped early: run the same command again to resume")
    elif report.is_complete:
        lines.append("complete: every table has at least the source's rows")
    return lines


# Private functions: the SQL of the copy

_STAGES = "\n".join(
    f"CREATE TEMP TABLE IF NOT EXISTS copy_{t} (LIKE {t}) ON COMMIT DELETE ROWS;"
    for t in TABLES
    if t != "alert_deliveries"
) + (
    "CREATE TEMP TABLE IF NOT EXISTS copy_alert_deliveries (idempotency_key text NOT NULL,"
    " target text NOT NULL, status text NOT NULL, attempts integer NOT NULL,"
    " next_attempt_ms bigint, last_error text, updated_ms bigint NOT NULL)"
    " ON COMMIT DELETE ROWS;"
)


def _source_count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _source_max_id(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])


def _source_columns(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))


def _plan(conn: sqlite3.Connection, table: str) -> _Plan:
    if table == "alert_deliveries":
        return _Plan(
            table,
            "SELECT d.rowid, a.idempotency_key, d.target, d.status, d.attempts,"
            " d.next_attempt_ms, d.last_error, d.updated_ms FROM alert_deliveries d"
            " JOIN alerts a ON a.id = d.alert_id WHERE d.rowid > ? ORDER BY d.rowid LIMIT ?",
            _DELIVERY_COLUMNS,
            "copy_alert_deliveries",
            "INSERT INTO alert_deliveries (alert_id, target, status, attempts, next_attempt_ms,"
            " last_error, updated_ms) SELECT a.id, c.target, c.status, c.attempts,"
            " c.next_attempt_ms, c.last_error, c.updated_ms FROM copy_alert_deliveries c"
            " JOIN alerts a ON a.idempotency_key = c.idempotency_key ON CONFLICT DO NOTHING",
        )
    columns = _source_columns(conn, table)
    names = ", ".join(columns)
    select = f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?"
    return _Plan(table, select, columns, f"copy_{table}", _insert(table, columns))


def _insert(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    key = _KEYED.get(table)
    if key is None:
        return (
            f"INSERT INTO {table} ({names}) SELECT {names} FROM copy_{table} ON CONFLICT DO NOTHING"
        )
    # A row keeps its id unless another row holds it; a key already present is skipped.
    values = ", ".join(
        f"CASE WHEN EXISTS (SELECT 1 FROM {table} t WHERE t.id = c.id)"
        f" THEN nextval('{table}_id_seq') ELSE c.id END"
        if name == "id"
        else f"c.{name}"
        for name in columns
    )
    return (
        f"INSERT INTO {table} ({names}) SELECT {values} FROM copy_{table} c"
        f" WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{key} = c.{key})"
        f" ORDER BY c.id ON CONFLICT ({key}) DO NOTHING"
    )


def _advance_sequences(floors: dict[str, int]) -> str:
    """Move each id sequence past the table's largest id and ``floors[table]`` (never back)."""
    return "\n".join(
        f"SELECT setval('{t}_id_seq', GREATEST((SELECT last_value FROM {t}_id_seq),"
        f" (SELECT coalesce(max(id), 0) FROM {t}), {int(floors.get(t, 0))}));"
        for t in SEQUENCED
    )
