"""The store's ports: what the service and the read-outs need of a database, as Protocols.

Five ports, one home each, each with a SQLite implementation (the embedded default) and a
PostgreSQL one (:mod:`watcher.store.pg`); :func:`watcher.store.open_backend` picks them from
``--db``, and :meth:`Backend.maintain` is the scheduler's upkeep of either:

- :class:`TickSink`: the batched writer the pipeline and the jobs feed (frames, market rows,
  ``service_state``). :class:`~watcher.store.writer.StoreWriter` satisfies it as is for both
  databases (only what commits a batch differs): the hot path (:meth:`TickSink.put_nowait`)
  is a plain method call, never wrapped.
- :class:`AlertStore`: the durable outbox. Alerts and the rule state that made them fire are
  recorded in one transaction, unique by idempotency key; deliveries are claimed with
  :meth:`AlertStore.due` and settled with the ``mark_*`` methods.
- :class:`PaperFills`: the paper desk's fills (``paper_fills``), recorded once per key, so a
  rule's close is not recorded twice across restarts or by two instances sharing a database.
- :class:`ReadModel`: everything people look at (``watcher status``, ``history``, ``alerts``,
  ``replay``, the daily digest, the metrics gauges, later the dashboard). Read-only; it never
  blocks the writer.
- :class:`ControlStore` (:mod:`watcher.store.control_ports`): the mutes and the pause.

Every method that touches a database is ``async``: a caller on the event loop awaits it and the
implementation does its blocking work elsewhere (a thread for SQLite, the driver for asyncpg).
The values they speak live in :mod:`watcher.store.records`, which imports no database driver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol

from watcher.domain.alert import Alert
from watcher.domain.controls import ControlState
from watcher.domain.event import EventInfo
from watcher.kalshi.messages import Message, UnknownMessage
from watcher.store.control_ports import ControlStore
from watcher.store.records import (
    AlertRecord,
    DeliveryRef,
    Maintenance,
    MarketRow,
    PaperFill,
    PendingDelivery,
    ReplayEvent,
    TickerRow,
    TradeRow,
    WriterState,
    WriterStats,
)

__all__ = [
    "AlertStore",
    "Backend",
    "ControlStore",
    "Maintenance",
    "PaperFills",
    "ReadModel",
    "RuleStates",
    "TickSink",
]

#: ``(rule, scope) → state``: the persisted rule state the engine resumes from.
RuleStates = dict[tuple[str, str], str]


class TickSink(Protocol):
    """The batched writer of frames, market metadata and ``service_state``.

    Writes are queued and committed in batches; :meth:`flush` waits until everything queued
    before it is committed. Frames of types the sink does not store are ignored.
    """

    @property
    def state(self) -> WriterState:
        """Where the sink is in its lifecycle (new, running, closing, closed)."""
        ...

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters (rows written per table, batches, queue depth, ...)."""
        ...

    async def start(self) -> None:
        """Open (create, migrate) the database and start writing.

        Raises:
            StorageError: the database cannot be opened.
        """
        ...

    async def close(self) -> None:
        """Write everything queued, then release the database; idempotent."""
        ...

    async def flush(self) -> None:
        """Return once everything queued before the call is committed (or rejected).

        Raises:
            StorageError: the sink was never started, or stopped before writing everything.
        """
        ...

    def put_nowait(
        self, message: Message | UnknownMessage, received_ms: int, *, late: bool = False
    ) -> bool:
        """Queue a frame without waiting; ``False`` when the queue is full (nothing queued).

        ``late=True`` marks a trade backfilled over REST after a sequence gap.

        Raises:
            StorageError: the sink is not running.
        """
        ...

    async def put(
        self, message: Message | UnknownMessage, received_ms: int, *, late: bool = False
    ) -> None:
        """Queue a frame, waiting while the queue is full (never drops).

        Raises:
            StorageError: the sink is not running.
        """
        ...

    async def write_market(self, market: MarketRow) -> None:
        """Queue an upsert of one market's metadata; ``None`` fields keep what is stored."""
        ...

    async def upsert_markets(self, rows: Iterable[MarketRow]) -> None:
        """Queue upserts of several markets; ``None`` fields keep what is stored."""
        ...

    async def write_events(self, infos: Iterable[EventInfo]) -> None:
        """Queue upserts of events' expansions (``events``, one row per event ticker)."""
        ...

    async def set_service_state(
        self, key: str, value: str, *, updated_ms: int | None = None
    ) -> None:
        """Queue ``service_state[key] = value`` (``updated_ms`` defaults to now)."""
        ...


class AlertStore(Protocol):
    """The durable outbox: ``alerts``, ``alert_deliveries`` and ``rule_state``.

    An alert is recorded once per idempotency key, with one delivery per target, in the same
    transaction as the rule states that made it fire; a suppressed alert gets no deliveries and
    one without targets is logged as the console delivery once committed. Deliveries are
    ``pending`` until :meth:`due` hands them out and a ``mark_*`` method settles them; the
    alert's status is rolled up from its deliveries (see :mod:`watcher.store.records`).

    Raises:
        StorageError: the database cannot be read or written (from any method).
    """

    async def load_rule_states(self) -> RuleStates:
        """Every persisted rule state, as ``(rule, scope) → state``."""
        ...

    async def record(
        self,
        alerts: Sequence[Alert],
        rule_states: Mapping[tuple[str, str], str] | None = None,
        *,
        now_ms: int,
    ) -> list[int]:
        """Store alerts and rule states atomically, before anything is sent.

        A key already stored inserts nothing (exactly once across replays and restarts).

        Returns:
            The ids of the alerts that were newly inserted, in order.
        """
        ...

    async def due(self, now_ms: int, limit: int = 100) -> list[PendingDelivery]:
        """Claim open deliveries whose next attempt is at or before ``now_ms``, oldest first.

        Settle each one with a ``mark_*`` method. A shared database may lease the claimed rows
        so that another instance does not send them meanwhile.
        """
        ...

    async def next_due_ms(self) -> int | None:
        """When the earliest open delivery is due (possibly in the past), or None if none is."""
        ...

    async def mark_delivered(self, refs: Iterable[DeliveryRef], *, now_ms: int) -> None:
        """The service accepted the message: count the attempt and close the rows."""
        ...

    async def mark_retry(
        self, refs: Iterable[DeliveryRef], *, next_attempt_ms: int, error: str, now_ms: int
    ) -> None:
        """The attempt failed: count it, keep the (masked) ``error``, try again later."""
        ...

    async def mark_config_error(
        self, refs: Iterable[DeliveryRef], *, error: str, now_ms: int
    ) -> None:
        """The target cannot work as configured: close the rows without counting an attempt."""
        ...

    async def mark_failed(self, refs: Iterable[DeliveryRef], *, error: str, now_ms: int) -> None:
        """The last attempt failed and the sender gives up: count it and close the rows."""
        ...

    async def requeue(self, refs: Iterable[DeliveryRef], *, now_ms: int) -> int:
        """Put deliveries that ended without success (``failed``, ``config_error``) back in the
        queue, due at ``now_ms`` ("retry now": attempts and last error kept, the alert rolled up
        to ``pending``, other rows left alone); how many rows were put back."""
        ...

    async def recent(
        self, *, since_ms: int | None = None, status: str | None = None, limit: int = 50
    ) -> list[AlertRecord]:
        """The newest alerts first (created at or after ``since_ms``), with their deliveries."""
        ...

    async def close(self) -> None:
        """Release the database (idempotent)."""
        ...


class PaperFills(Protocol):
    """The paper desk's fills (``paper_fills``): each one recorded once, read back exactly.

    Raises:
        StorageError: the database cannot be read or written (from any method).
    """

    async def record(self, fill: PaperFill) -> bool:
        """Store ``fill`` unless its ``fill_key`` is stored already.

        The exactly-once guard of a rule's close: the key is unique in the database, so a
        restart or a second instance recording the same key stores nothing.

        Returns:
            True when the fill is new; False when its key was recorded before (nothing stored).
        """
        ...

    async def recent(
        self, *, ticker: str | None = None, position_id: str | None = None, limit: int = 100
    ) -> list[PaperFill]:
        """The newest fills first (by ``ts_ms``, then recording order), at most ``limit``,
        of one market and/or one position when given.

        Raises:
            ValueError: ``limit`` is negative.
        """
        ...

    async def close(self) -> None:
        """Release the database (idempotent)."""
        ...


class ReadModel(Protocol):
    """Read-only queries for people: status, history, alerts, replay, digest, metrics.

    Rows hold the exact ``_e6`` integers. Readers never block the writer.

    Raises:
        StorageError: the database cannot be opened or read (from any method).
    """

    async def latest_ticker(self, ticker: str) -> TickerRow | None:
        """The newest ticker update of a market (by ``ts_ms``, then arrival), or ``None``."""
        ...

    async def last_alert(self, ticker: str) -> tuple[int, str] | None:
        """``(created_ms, rule)`` of the newest alert about a market, or ``None``."""
        ...

    async def service_state(self) -> dict[str, str]:
        """Every ``service_state`` key and its value (feed health, heartbeat, pid)."""
        ...

    async def tick_history(
        self, ticker: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[TickerRow]:
        """Ticker updates of a market at or after ``since_ms``, newest first, at most ``limit``."""
        ...

    async def tick_series(
        self, ticker: str, *, since_ms: int | None = None, points: int = 300
    ) -> list[TickerRow]:
        """A market's ticker updates at or after ``since_ms`` thinned for a chart, oldest first:
        the newest of each of ``points`` equal time buckets (ValueError if ``points`` < 1)."""
        ...

    async def trade_history(
        self, ticker: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[TradeRow]:
        """Trades of a market at or after ``since_ms``, newest first, at most ``limit``."""
        ...

    async def events(self) -> list[EventInfo]:
        """Every stored event expansion (``events``), by event ticker."""
        ...

    async def get_market(self, ticker: str) -> MarketRow | None:
        """The stored metadata of a market, or ``None``."""
        ...

    async def recent_alerts(
        self, *, since_ms: int | None = None, status: str | None = None, limit: int = 50
    ) -> list[AlertRecord]:
        """The newest alerts first, with their deliveries (as :meth:`AlertStore.recent`)."""
        ...

    async def open_deliveries(self) -> int:
        """How many deliveries are still to send (``pending`` or ``retrying``)."""
        ...

    async def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each status (``pending``, ``retrying``, ``delivered``,
        ``failed``, ``config_error``); a status no delivery has is left out."""
        ...

    async def control_state(self) -> ControlState:
        """The stored mutes (ended ones too, until purged) and the pause."""
        ...

    async def count_events(
        self, *, since_ms: int | None, until_ms: int | None, markets: Collection[str]
    ) -> int:
        """How many ticks, trades and lifecycle events :meth:`replay_events` will yield."""
        ...

    def replay_events(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        markets: Collection[str],
    ) -> AsyncIterator[ReplayEvent]:
        """Recorded ticks, trades and lifecycle frames of ``markets``, merged in time order.

        Yields ``(ts_ms, kind, row)`` with kind ``"ticks"``, ``"trades"`` or ``"lifecycle"``;
        on equal ``ts_ms`` ticks come before trades before lifecycle events, and each kind
        keeps arrival order. ``until_ms`` is excluded; ``None`` bounds are open. Rows are read
        in pages, so a long replay does not hold the whole range in memory.
        """
        ...

    async def close(self) -> None:
        """Release the connection (idempotent)."""
        ...


class Backend(Protocol):
    """The ports of one database, as :func:`watcher.store.open_backend` returns them."""

    @property
    def location(self) -> str:
        """The ``--db`` value, safe to show (a URL's password is masked)."""
        ...

    def tick_sink(self, *, on_error: Callable[[Exception], None] | None = None) -> TickSink:
        """A new, unstarted tick sink; ``on_error`` hears about each failed (retried) write."""
        ...

    async def alert_store(self) -> AlertStore:
        """Open the alert store (creating and migrating the database)."""
        ...

    async def read_model(self) -> ReadModel:
        """Open a read model on the database."""
        ...

    async def paper_fills(self) -> PaperFills:
        """Open the paper fills (creating and migrating the database)."""
        ...

    async def control_store(self) -> ControlStore:
        """Open the mutes and the pause (creating and migrating the database)."""
        ...

    async def maintain(self, now_ms: int, retention_days: int) -> Maintenance:
        """The scheduler's upkeep: prepare what the coming days need (partitions) and, when
        ``retention_days`` > 0, remove market data older than that many days before ``now_ms``.

        Alerts, rule state, fills, lifecycle events and market metadata are never removed.
        Cancelling the call stops it soon (service shutdown).

        Raises:
            StorageError: the database cannot be reached or changed.
        """
        ...
