"""The single store writer: a bounded queue in front of one SQLite connection on its own thread.

:meth:`StoreWriter.put` turns a frame into its row (exact integers, :func:`~watcher.store.rows.
row_for`) and queues it; one task takes a batch when ``batch_size`` rows wait or
``flush_interval`` seconds after the first unwritten one, and hands it to the writer's own
thread (:class:`~watcher.store.writer_thread.WriterThread`), which writes it in one
transaction, so the event loop never blocks on the database.

Why rows are made on the event loop and not on the writer thread: making a row is pure Python,
so it holds the GIL wherever it runs. On the writer thread it made the two threads fight for the
GIL (each handover can wait the interpreter's 5 ms switch interval), which both slowed the feed
and delayed rule decisions; a queued row is also about a third of the memory of a decoded
frame. The writer thread now holds the GIL only to bind parameters; SQLite itself runs without it.

A failed write (disk full, read-only file, lock held too long) never drops rows: the thread
keeps the batch and retries it (:func:`retry_delays`), ``on_error`` hears about each failed
attempt, and the bounded queue pushes back on producers meanwhile. Frames that can never be
stored (a price with more than 6 decimals) are logged, counted in ``stats.rejected`` and
skipped by ``put``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import MappingProxyType, TracebackType

from watcher.domain.event import EventInfo
from watcher.errors import StorageError
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
from watcher.store.flushes import FlushWaiters
from watcher.store.records import MarketRow, WriterState, WriterStats
from watcher.store.rows import ROW_BUILDERS, event_items, market_item
from watcher.store.schema import BUSY_TIMEOUT_MS
from watcher.store.writer_thread import WRITER_CACHE_KIB, Committer, WriterThread, retry_delays
from watcher.store.writer_thread import Item as _Item

# WRITER_CACHE_KIB and retry_delays live in watcher.store.writer_thread; they are exported
# here too for the code and tests that import them from this module.
__all__ = [
    "STORED_TYPES",
    "WRITER_CACHE_KIB",
    "StoreWriter",
    "WriterState",
    "WriterStats",
    "retry_delays",
]

logger = logging.getLogger("watcher.store")

#: Frame types the writer stores; :meth:`StoreWriter.put` ignores every other type.
STORED_TYPES = (Ticker, Trade, OrderbookSnapshot, OrderbookDelta, Fill, MarketLifecycle)

#: Rows per transaction: 5,000 rather than 1,000 write about 1.4× the rows per second (issue 5).
DEFAULT_BATCH_SIZE = 5000
#: Queued rows before ``put`` waits. The batch being written has already left the queue, so one
#: batch of room keeps the writer busy (two batches in memory: one being written, one filling).
#: 10,000 raised peak RSS by ~3 MB (a row is ~600 B) and wrote no faster, even when saturated.
DEFAULT_QUEUE_SIZE = DEFAULT_BATCH_SIZE


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
        committer: what commits the batches instead of a SQLite :class:`WriterThread` on
            ``path`` (PostgreSQL's); ``path`` is then only the name shown (a masked URL).
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
        committer: Committer | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, but got {batch_size}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, but got {queue_size}")
        if flush_interval < 0:
            raise ValueError(f"flush_interval must not be negative, but got {flush_interval}")
        self.path = Path(path)
        self.location = str(path)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_size)
        self._wakeup = asyncio.Event()
        self._state = WriterState.NEW
        self._task: asyncio.Task[None] | None = None
        self._thread: Committer = committer or WriterThread(
            self.path, busy_timeout_ms=busy_timeout_ms, on_error=on_error
        )
        self._pending_since: float | None = None  # loop time of the oldest unwritten item
        self._enqueued = 0  # items ever queued; items leave the queue in order
        self._done = 0  # items committed or rejected
        self._in_flight = 0
        self._flushers = FlushWaiters()
        self._rows_written: Counter[str] = Counter()
        self._batches = 0
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
            errors=self._thread.errors,
            rejected=self._rejected,
            last_flush_ms=self._last_flush_ms,
        )

    async def start(self) -> None:
        """Open (create, migrate) the database on the writer thread and start the writer task.

        Raises:
            StorageError: the database cannot be opened; the writer stays unstarted.
        """
        if self._state is not WriterState.NEW:
            raise StorageError(f"store writer for {self.location} is {self._state.value}, not new")
        await self._thread.open()
        self._state = WriterState.RUNNING
        self._task = asyncio.create_task(self._run(), name=f"watcher-store-writer {self.location}")
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
        await self._enqueue(market_item(market, _now_ms()))

    async def upsert_markets(self, rows: Iterable[MarketRow]) -> None:
        """Queue upserts of several markets; ``None`` fields keep what is stored."""
        for row in rows:
            await self._enqueue(market_item(row, _now_ms()))

    async def write_events(self, infos: Iterable[EventInfo]) -> None:
        """Queue upserts of events' expansions into ``events`` (one row per event ticker)."""
        for item in event_items(infos, _now_ms()):
            await self._enqueue(item)

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
            raise StorageError(f"store writer for {self.location} is not started")
        target = self._enqueued
        if self._done >= target or self._task is None or self._task.done():
            return
        waiter = self._flushers.wait_for(target)
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
            f"<StoreWriter {self.location!r} {self._state.value}"
            f" queue={self._queue.qsize()}/{self._queue.maxsize}"
            f" rows={sum(self._rows_written.values())} batches={self._batches}"
            f" errors={self._thread.errors}>"
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
            raise StorageError(f"store writer for {self.location} is {self._state.value}")

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
                self._flushers.wake(self._done)
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
            or self._flushers
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
        """Write one batch (the thread retries failed writes until one succeeds)."""
        written = await self._thread.commit(items)
        self._rows_written.update(written)
        self._batches += 1
        self._last_flush_ms = _now_ms()

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._state = WriterState.CLOSED
        if task.cancelled():
            reason = "was cancelled"
        elif (exc := task.exception()) is not None:
            logger.error("store writer for %s crashed", self.location, exc_info=exc)
            reason = f"crashed: {exc}"
        else:
            reason = "closed"
        self._flushers.fail(f"store writer for {self.location} {reason}")

    async def _release(self) -> None:
        where, unsaved = self.location, self._in_flight + self._queue.qsize()
        if unsaved:
            logger.error("store writer for %s stopped with %d items unwritten", where, unsaved)
        await self._thread.close()
        logger.info(
            "store writer closed: %d rows in %d batches, %d failed writes, %d rejected",
            sum(self._rows_written.values()),
            self._batches,
            self._thread.errors,
            self._rejected,
        )
