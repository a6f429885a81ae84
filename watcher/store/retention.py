"""Retention: delete market data older than a cut-off, in small batches, beside the writer.

:func:`prune` runs on a worker thread (``asyncio.to_thread``) with its own connection. Each
batch is one short ``DELETE`` transaction of at most ``batch_size`` rows, followed by a short
pause, so the store writer (which waits up to its busy timeout for the lock) is never held up
for more than one batch. Rows are found oldest first by ``id`` (rows are appended in time
order), so each batch touches few pages. Alerts, rule state, fills, lifecycle events and
market metadata are never pruned. Freed pages are reused by SQLite; the file does not shrink.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence

from watcher.store.schema import TABLES, open_database

__all__ = ["BATCH_SIZE", "PRUNED_TABLES", "prune"]

logger = logging.getLogger("watcher.store")

#: The market-data tables retention applies to (each has ``id`` and ``ts_ms``).
PRUNED_TABLES = ("tickers", "trades", "orderbook_deltas", "orderbook_snapshots")
#: Rows deleted per transaction.
BATCH_SIZE = 2000
#: Seconds slept between two batches, so the writer gets the lock in between.
BATCH_PAUSE = 0.005


def prune(
    path: str | os.PathLike[str],
    *,
    cutoff_ms: int,
    tables: Sequence[str] = PRUNED_TABLES,
    batch_size: int = BATCH_SIZE,
    pause: float = BATCH_PAUSE,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Delete rows with ``ts_ms < cutoff_ms`` from ``tables``, ``batch_size`` rows at a time.

    Blocking: run it in a thread. Setting ``stop`` ends it after the current batch.

    Args:
        path: the database file (it must exist).
        cutoff_ms: rows strictly older than this Unix time in ms are deleted.
        tables: which tables; each must be one of :data:`PRUNED_TABLES`.
        batch_size: rows per ``DELETE`` transaction.
        pause: seconds slept after each full batch.
        stop: ends the work early when set (service shutdown).

    Returns:
        rows deleted per table.

    Raises:
        ValueError: a table is not prunable, or ``batch_size`` is below 1.
        StorageError: the database cannot be opened.
        sqlite3.Error: a batch failed (for example, the writer held the lock too long).
    """
    _check(tables, batch_size)
    deleted = dict.fromkeys(tables, 0)
    conn = open_database(path)
    try:
        for table in tables:
            deleted[table] = _prune_table(conn, table, cutoff_ms, batch_size, pause, stop)
    finally:
        conn.close()
    return deleted


def _check(tables: Sequence[str], batch_size: int) -> None:
    """Refuse bad arguments before opening the database."""
    for table in tables:
        if table not in PRUNED_TABLES or table not in TABLES:
            raise ValueError(f"table cannot be pruned: {table!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, but got {batch_size}")


def _prune_table(
    conn: sqlite3.Connection,
    table: str,
    cutoff_ms: int,
    batch_size: int,
    pause: float,
    stop: threading.Event | None,
) -> int:
    """Delete one table's old rows batch by batch; how many were deleted."""
    # ``table`` is one of PRUNED_TABLES (checked by _check), so formatting it in is safe.
    sql = (
        f"DELETE FROM {table} WHERE id IN"
        f" (SELECT id FROM {table} WHERE ts_ms < ? ORDER BY id LIMIT ?)"
    )
    deleted = 0
    while stop is None or not stop.is_set():
        # Autocommit connection: every statement is its own short transaction.
        count = conn.execute(sql, (cutoff_ms, batch_size)).rowcount
        deleted += count
        if count < batch_size:
            break
        time.sleep(pause)
    return deleted
