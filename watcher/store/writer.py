"""The single store writer: a bounded queue in front of one SQLite connection on its own thread.

:meth:`StoreWriter.put` turns a frame into its row (exact integers, :func:`~watcher.store.rows.
row_for`) and queues it; every SQLite call happens on the writer's dedicated thread, so the event
loop never blocks on the database. One transaction per batch, written when ``batch_size`` rows
wait or ``flush_interval`` seconds after the first unwritten one, with multi-row ``INSERT``
statements (:func:`~watcher.store.rows.insert_rows`). Within a batch, tick, trade and delta
rows are written grouped by market, so ``id`` grows with arrival within each market (ties of
``ts_ms`` keep their order) but not across markets.

Why rows are made on the event loop and not on the writer thread: making a row is pure Python,
so it holds the GIL wherever it runs. On the writer thread it made the two threads fight for the
GIL (each handover can wait the interpreter's 5 ms switch interval), which both slowed the feed
and delayed rule decisions; a queued row is also about a third of the memory of a decoded
frame. The writer thread now holds the GIL only to bind parameters; SQLite itself runs without it.

A failed write (disk full, read-only file, lock held too long) never drops rows: the batch is
kept and retried with :func:`retry_delays`, ``on_error`` hears about each failed attempt, and the
bounded queue pushes back on producers meanwhile. Frames that can never be stored (a price
with more than 6 decimals) are logged, counted in ``stats.rejected`` and skipped by ``put``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import operator
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, TypeAlias, TypeVar

from watcher.errors import StorageError
from watcher.kalshi.backoff import backoff
from watcher.kalshi.messages import (
    Fill,
    MarketLifecycle,
    Message,
    OrderbookDelta,
    OrderbookSnapshot,
    Ticker,
    Trade,
    UnknownMessage,
)
from watcher.store.queries import MarketRow
from watcher.store.rows import INSERTS, ROW_BUILDERS, insert_rows
from watcher.store.schema import BUSY_TIMEOUT_MS, open_database

__all__ = [
    "STORED_TYPES",
    "StoreWriter",
    "WriterState",
    "WriterStats",
    "retry_delays",
]

logger = logging.getLogger("watcher.store")

#: Frame types the writer stores; :meth:`StoreWriter.put` ignores every other type.
STORED_TYPES = (Ticker, Trade, OrderbookSnapshot, OrderbookDelta, Fill, MarketLifecycle)

_T = TypeVar("_T")

#: Rows per transaction: 5,000 rather than 1,000 write about 1.4× the rows per second (issue 5).
DEFAULT_BATCH_SIZE = 5000
#: Queued rows before ``put`` waits. The batch being written has already left the queue, so one
#: batch of room keeps the writer busy (two batches in memory: one being written, one filling).
#: 10,000 raised peak RSS by ~3 MB (a row is ~600 B) and wrote no faster, even when saturated.
DEFAULT_QUEUE_SIZE = DEFAULT_BATCH_SIZE
#: SQLite page cache of the writer's connection, KiB (SQLite's default is 2,000). Appends touch
#: few pages; a miss is refilled from the OS page cache. 512 KiB lowered peak RSS by ~1.5 MB in
#: make bench and wrote as fast as 2,000 and 8,000 KiB at 1,000 markets (issue 5).
WRITER_CACHE_KIB = 512


def retry_delays() -> Iterator[float]:
    """Seconds to wait before each retry of a failed write: 0.5, 1, 2, 4, 8, 10, 10, ..."""
    return backoff(min_delay=0.5, max_delay=10.0, jitter=0)


class WriterState(enum.Enum):
    """Lifecycle of a :class:`StoreWriter`."""

    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of the writer's counters.

    Attributes:
        rows_written: rows inserted (or updated) per table; duplicates ignored are not counted.
        batches: transactions committed.
        queue_depth: items waiting in the queue when the snapshot was taken.
        errors: failed write attempts (each one was retried).
        rejected: items that could not be converted to a row and were skipped.
        last_flush_ms: wall-clock time of the last commit, Unix milliseconds.
    """

    rows_written: Mapping[str, int]
    batches: int
    queue_depth: int
    errors: int
    rejected: int
    last_flush_ms: int | None


# A row for a table, in INSERTS column order.
_Item: TypeAlias = tuple[str, tuple[Any, ...]]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StoreWriter:
    """Batches frames into SQLite from one task and one thread; an async context manager.

    Args:
        path: the database file (created with mode 0600 and migrated on start).
        batch_size: write as soon as this many items wait.
        flush_interval: write at the latest this many seconds after the first unwritten item.
        queue_size: capacity of the queue; :meth:`put` waits when it is full.
        on_error: called on the event loop with a :class:`StorageError` for each failed write
            attempt; the batch is kept and retried.
        busy_timeout_ms: how long one attempt waits for another connection's lock.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = 1.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_error: Callable[[Exception], None] | None = None,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, but got {batch_size}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, but got {queue_size}")
        if flush_interval < 0:
            raise ValueError(f"flush_interval must not be negative, but got {flush_interval}")
        self.path = Path(path)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._on_error = on_error
        self._busy_timeout_ms = busy_timeout_ms
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self._wakeup = asyncio.Event()
        self._state = WriterState.NEW
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the writer thread
        self._pending_since: float | None = None  # loop time of the oldest unwritten item
        self._enqueued = 0  # items ever queued; items leave the queue in order
        self._done = 0  # items committed or rejected
        self._in_flight = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._rows_written: Counter[str] = Counter()
        self._batches = 0
        self._errors = 0
        self._rejected = 0
        self._last_flush_ms: int | None = None

    # Public methods

    @property
    def state(self) -> WriterState:
        """Where the writer is in its lifecycle."""
        return self._state

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters (see :class:`WriterStats`)."""
        return WriterStats(
            rows_written=MappingProxyType(dict(self._rows_written)),
            batches=self._batches,
            queue_depth=self._queue.qsize(),
            errors=self._errors,
            rejected=self._rejected,
            last_flush_ms=self._last_flush_ms,
        )

    async def start(self) -> None:
        """Open (create, migrate) the database on the writer thread and start the writer task.

        Raises:
            StorageError: the database cannot be opened; the writer stays unstarted.
        """
        if self._state is not WriterState.NEW:
            raise StorageError(f"store writer for {self.path} is {self._state.value}, not new")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watcher-store")
        try:
            self._conn = await self._in_thread(self._open_connection)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._state = WriterState.RUNNING
        self._task = asyncio.create_task(self._run(), name=f"watcher-store-writer {self.path}")
        self._task.add_done_callback(self._on_task_done)

    async def put(
        self, message: Message | UnknownMessage, received_ms: int, *, late: bool = False
    ) -> None:
        """Queue a frame's row for storage, waiting while the queue is full (never drops).

        Frame types not in :data:`STORED_TYPES` are ignored. ``late=True`` marks a trade
        backfilled over REST after a sequence gap. A frame that cannot be stored exactly is
        logged and counted in ``stats.rejected``.

        Raises:
            StorageError: the writer is not running.
        """
        item = self._row(message, received_ms, late)
        if item is None:
            return
        queue = self._queue
        if queue.full():
            await queue.put(item)
        else:
            queue.put_nowait(item)  # the common case: no coroutine, no future
        self._queued()

    def put_nowait(
        self, message: Message | UnknownMessage, received_ms: int, *, late: bool = False
    ) -> bool:
        """Queue a frame's row without waiting; ``False`` when the queue is full.

        Ignored frame types (and rejected frames) return ``True``: there is nothing left to do.

        Raises:
            StorageError: the writer is not running.
        """
        item = self._row(message, received_ms, late)
        if item is None:
            return True
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        self._queued()
        return True

    async def write_market(self, market: MarketRow) -> None:
        """Queue an upsert of market metadata, ordered with the frames around it.

        ``None`` fields keep what is stored; ``updated_ms`` 0 is replaced by now.
        """
        await self._enqueue(_market_item(market))

    async def upsert_markets(self, rows: Iterable[MarketRow]) -> None:
        """Queue upserts of several markets; ``None`` fields keep what is stored."""
        for row in rows:
            await self._enqueue(_market_item(row))

    async def set_service_state(
        self, key: str, value: str, *, updated_ms: int | None = None
    ) -> None:
        """Queue ``service_state[key] = value`` (``updated_ms`` defaults to now)."""
        stamp = _now_ms() if updated_ms is None else updated_ms
        await self._enqueue(("service_state", (key, value, stamp)))

    async def flush(self) -> None:
        """Return once everything queued before the call is committed (or rejected).

        Raises:
            StorageError: the writer was never started, or stopped before writing everything.
        """
        if self._state is WriterState.NEW:
            raise StorageError(f"store writer for {self.path} is not started")
        target = self._enqueued
        if self._done >= target or self._task is None or self._task.done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        self._wakeup.set()
        await waiter

    async def close(self) -> None:
        """Write everything queued, commit, close the connection; idempotent.

        Failed writes are still retried here. To bound shutdown, cancel ``close()`` (for
        example with ``asyncio.timeout``): the writer then stops and logs what it did not write.
        """
        if self._state is WriterState.NEW:
            self._state = WriterState.CLOSED
            return
        if self._state is WriterState.RUNNING:
            self._state = WriterState.CLOSING
            self._wakeup.set()
        if self._task is not None and not self._task.done():
            await self._task

    async def __aenter__(self) -> StoreWriter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (
            f"<StoreWriter {str(self.path)!r} {self._state.value}"
            f" queue={self._queue.qsize()}/{self._queue.maxsize}"
            f" rows={sum(self._rows_written.values())} batches={self._batches}"
            f" errors={self._errors}>"
        )

    # Private methods: producer side

    def _row(self, message: object, received_ms: int, late: bool) -> _Item | None:
        """The queue item for a frame; ``None`` for frames not stored or rejected."""
        builder = ROW_BUILDERS.get(type(message))
        if builder is None:
            return None
        self._check_accepting()
        table, build = builder
        try:
            return table, build(message, received_ms, late)
        except ValueError as exc:
            self._rejected += 1
            logger.warning("cannot store %s frame: %s", type(message).__name__, exc)
            return None

    def _check_accepting(self) -> None:
        if self._state is not WriterState.RUNNING and self._state is not WriterState.CLOSING:
            raise StorageError(f"store writer for {self.path} is {self._state.value}")

    async def _enqueue(self, item: _Item) -> None:
        self._check_accepting()
        await self._queue.put(item)
        self._queued()

    def _queued(self) -> None:
        """Book-keeping after an item entered the queue (no await in between)."""
        self._enqueued += 1
        if self._pending_since is None:
            self._pending_since = asyncio.get_running_loop().time()
            self._wakeup.set()
        elif self._queue.qsize() >= self._batch_size:
            self._wakeup.set()

    # Private methods: the writer task

    async def _run(self) -> None:
        try:
            while await self._wait_for_batch():
                items = self._take_batch()
                self._in_flight = len(items)
                await self._commit(items)
                self._in_flight = 0
                self._done += len(items)
                self._wake_flushers()
        finally:
            self._state = WriterState.CLOSED  # refuse new items from here on
            await self._release()

    async def _wait_for_batch(self) -> bool:
        """Wait until a batch is due; ``False`` once closing with nothing left to write."""
        while self._queue.empty():
            if self._state is not WriterState.RUNNING:
                await asyncio.sleep(0)  # let producers woken by the last batch enqueue
                if self._queue.empty():
                    return False
                break
            self._wakeup.clear()
            await self._wakeup.wait()
        while (remaining := self._time_to_batch()) > 0:
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                break
        return True

    def _time_to_batch(self) -> float:
        """Seconds until the waiting items are due; 0 when they are due now."""
        due_now = (
            self._queue.qsize() >= self._batch_size
            or self._state is not WriterState.RUNNING
            or self._waiters
            or self._pending_since is None
        )
        if due_now:
            return 0.0
        assert self._pending_since is not None
        deadline = self._pending_since + self._flush_interval
        return max(0.0, deadline - asyncio.get_running_loop().time())

    def _take_batch(self) -> list[_Item]:
        count = min(self._batch_size, self._queue.qsize())
        items = [self._queue.get_nowait() for _ in range(count)]
        if self._queue.empty():
            self._pending_since = None
        return items

    async def _commit(self, items: list[_Item]) -> None:
        """Write one batch, retrying failed writes until one succeeds."""
        failures = 0
        delays = retry_delays()
        while True:
            try:
                written = await self._in_thread(self._write_rows, items)
                break
            except Exception as exc:
                failures += 1
                self._failed(exc, len(items), first=failures == 1)
                await asyncio.sleep(next(delays))
        if failures:
            logger.info("store write to %s recovered after %d failed attempts", self.path, failures)
        self._rows_written.update(written)
        self._batches += 1
        self._last_flush_ms = _now_ms()

    def _failed(self, exc: Exception, count: int, *, first: bool) -> None:
        self._errors += 1
        error = StorageError(f"cannot write {count} rows to {self.path}: {exc}")
        error.__cause__ = exc
        if first:
            logger.warning("%s; keeping them and retrying", error)
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                logger.exception("store on_error callback failed")

    def _wake_flushers(self) -> None:
        still_waiting = []
        for target, waiter in self._waiters:
            if waiter.done():
                continue
            if target <= self._done:
                waiter.set_result(None)
            else:
                still_waiting.append((target, waiter))
        self._waiters = still_waiting

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._state = WriterState.CLOSED
        if task.cancelled():
            reason = "was cancelled"
        elif (exc := task.exception()) is not None:
            logger.error("store writer for %s crashed", self.path, exc_info=exc)
            reason = f"crashed: {exc}"
        else:
            reason = "closed"
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(StorageError(f"store writer for {self.path} {reason}"))
        self._waiters = []

    async def _release(self) -> None:
        unsaved = self._in_flight + self._queue.qsize()
        if unsaved:
            logger.error("store writer for %s stopped with %d items unwritten", self.path, unsaved)
        try:
            await self._in_thread(self._close_connection)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
        logger.info(
            "store writer closed: %d rows in %d batches, %d failed writes, %d rejected",
            sum(self._rows_written.values()),
            self._batches,
            self._errors,
            self._rejected,
        )

    async def _in_thread(self, func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args, **kwargs))

    # Private methods: the writer thread

    def _write_rows(self, items: list[_Item]) -> dict[str, int]:
        """One transaction for the whole batch (runs on the writer thread)."""
        conn = self._conn
        assert conn is not None
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for table, row in items:
            rows.setdefault(table, []).append(row)
        for table, market_of in _MARKET_OF.items():
            if batch := rows.get(table):
                # Stable sort by market: arrival order is kept within each market, and the
                # (market_ticker, ts_ms) index is updated page by page instead of all over.
                batch.sort(key=market_of)
        written: dict[str, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table in INSERTS:
                if batch := rows.get(table):
                    written[table] = insert_rows(conn, table, batch)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return written

    def _open_connection(self) -> sqlite3.Connection:
        conn = open_database(self.path, busy_timeout_ms=self._busy_timeout_ms)
        try:
            conn.execute(f"PRAGMA cache_size = {-WRITER_CACHE_KIB}")  # negative: KiB, not pages
        except sqlite3.Error as exc:
            conn.close()
            raise StorageError(f"cannot configure database {self.path}: {exc}") from exc
        return conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


#: High-volume tables whose rows are written grouped by market: the market_ticker column.
_MARKET_OF = {
    "tickers": operator.itemgetter(0),
    "trades": operator.itemgetter(1),
    "orderbook_deltas": operator.itemgetter(0),
}


def _market_item(market: MarketRow) -> _Item:
    """A ready ``markets`` row; ``updated_ms`` 0 means now."""
    values = astuple(market)
    return ("markets", values if market.updated_ms else (*values[:-1], _now_ms()))
