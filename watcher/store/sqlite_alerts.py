"""The SQLite alert store: ``alerts``, ``alert_deliveries`` and ``rule_state`` on one thread.

An alert is recorded once per idempotency key (``ON CONFLICT DO NOTHING``), with one
``alert_deliveries`` row per target, in the same transaction as the rule state that made it fire.
So a replayed event or a restart neither loses nor repeats an alert: the sender delivers whatever
is still ``pending``/``retrying`` and marks each row from the service's answer. The statuses and
their roll-up are drawn in :mod:`watcher.store.records`; the SQL is in :mod:`.alert_sql`.

:class:`Outbox` is synchronous: every call runs on one private thread that owns the SQLite
connection, so it may be called from any thread. :class:`SQLiteAlertStore` is the
:class:`~watcher.store.ports.AlertStore` over it: each ``await`` hands one call to that thread
(no second hop through the default executor) and resumes when it is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from watcher.domain.alert import Alert
from watcher.errors import StorageError
from watcher.store import alert_sql, queries
from watcher.store.console import log_console_alert
from watcher.store.records import AlertRecord, DeliveryRef, DeliveryStatus, PendingDelivery
from watcher.store.schema import open_database
from watcher.store.settling import SettlesDeliveries

__all__ = ["Outbox", "SQLiteAlertStore"]

T = TypeVar("T")


class Outbox:
    """The ``alerts``/``alert_deliveries``/``rule_state`` tables behind a thread-safe facade.

    Args:
        db: the database path (opened with :func:`watcher.store.schema.open_database`, which
            migrates it), or a callable returning a new connection in autocommit mode.

    Raises:
        StorageError: the database cannot be opened or written (from any method).
    """

    def __init__(self, db: str | os.PathLike[str] | Callable[[], sqlite3.Connection]) -> None:
        self._describe = repr(os.fspath(db)) if not callable(db) else getattr(db, "__name__", "?")
        factory = db if callable(db) else partial(open_database, db)
        # One worker thread owns the connection: sqlite3 objects are bound to their thread.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="outbox")
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._run(factory)
        except BaseException:
            self._worker.shutdown()
            raise

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<Outbox db={self._describe} {state}>"

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Public methods

    def close(self) -> None:
        """Close the connection and stop the worker thread (idempotent)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._worker.submit(conn.close).result()
        self._worker.shutdown()

    def record(
        self,
        alerts: Sequence[Alert],
        rule_states: Mapping[tuple[str, str], str] | None = None,
        *,
        now_ms: int,
    ) -> list[int]:
        """Store alerts and rule states in one transaction, before anything is sent.

        A key already in the table inserts nothing (exactly once across replays and restarts).
        A suppressed alert gets status ``suppressed`` and no deliveries; one without targets gets
        ``console`` and is logged at WARNING on ``watcher.alerts`` once committed.

        Args:
            alerts: the alerts decided by the rule engine.
            rule_states: ``(rule, scope) → state`` rows to upsert with them.
            now_ms: the current Unix time in milliseconds.

        Returns:
            The ids of the alerts that were newly inserted, in order.
        """
        listed = list(alerts)
        return _recorded(listed, self._run(self._record, listed, dict(rule_states or {}), now_ms))

    def load_rule_states(self) -> dict[tuple[str, str], str]:
        """Every persisted rule state, as ``(rule, scope) → state``."""
        return _rule_states(self._run(self._query, alert_sql.RULE_STATES_SQL, ()))

    def due(self, now_ms: int, limit: int = 100) -> list[PendingDelivery]:
        """Open deliveries whose next attempt is at or before ``now_ms``, oldest first."""
        return _pending(self._run(self._query, alert_sql.DUE_SQL, (now_ms, limit)))

    def next_due_ms(self) -> int | None:
        """When the earliest open delivery is due (possibly in the past), or None if none is."""
        return _first_int(self._run(self._query, alert_sql.NEXT_DUE_SQL, ()))

    def mark_delivered(self, refs: Iterable[DeliveryRef], *, now_ms: int) -> None:
        """The service accepted the message: count the attempt and close the rows."""
        self._mark(refs, DeliveryStatus.DELIVERED, now_ms=now_ms)

    def mark_retry(
        self, refs: Iterable[DeliveryRef], *, next_attempt_ms: int, error: str, now_ms: int
    ) -> None:
        """The attempt failed: count it, keep the (masked) ``error``, try again later."""
        self._mark(
            refs, DeliveryStatus.RETRYING, now_ms=now_ms, error=error, next_ms=next_attempt_ms
        )

    def mark_config_error(self, refs: Iterable[DeliveryRef], *, error: str, now_ms: int) -> None:
        """The target cannot work as configured: close the rows without counting an attempt."""
        self._mark(refs, DeliveryStatus.CONFIG_ERROR, now_ms=now_ms, error=error, attempt=0)

    def mark_failed(self, refs: Iterable[DeliveryRef], *, error: str, now_ms: int) -> None:
        """The last attempt failed and the sender gives up: count it and close the rows."""
        self._mark(refs, DeliveryStatus.FAILED, now_ms=now_ms, error=error)

    def recent(
        self, *, since_ms: int | None = None, status: str | None = None, limit: int = 50
    ) -> list[AlertRecord]:
        """The newest alerts first, with their deliveries, for ``watcher alerts``."""
        return self._run(self._recent, since_ms, status, limit)

    # Private methods

    def _submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Hand ``fn(*args)`` to the connection's thread."""
        try:
            return self._worker.submit(fn, *args)
        except RuntimeError as exc:  # the executor was shut down
            raise StorageError(f"outbox is closed: {exc}") from exc

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return self._submit(fn, *args).result()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("outbox is closed")
        return self._conn

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"outbox query failed: {exc}") from exc

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"outbox write failed: {exc}") from exc
        return result

    def _record(
        self, alerts: list[Alert], rule_states: dict[tuple[str, str], str], now_ms: int
    ) -> list[int]:
        return self._transaction(
            lambda conn: alert_sql.insert_alerts(conn, alerts, rule_states, now_ms)
        )

    def _mark(
        self,
        refs: Iterable[DeliveryRef],
        status: DeliveryStatus,
        *,
        now_ms: int,
        error: str | None = None,
        next_ms: int | None = None,
        attempt: int = 1,
    ) -> None:
        self._run(self._settle, list(refs), status, now_ms, error, next_ms, attempt)

    def _settle(
        self,
        refs: list[DeliveryRef],
        status: DeliveryStatus,
        now_ms: int,
        error: str | None,
        next_ms: int | None,
        attempt: int,
    ) -> None:
        """Close or reschedule delivery rows and roll their alerts up (on the thread)."""
        self._transaction(
            lambda conn: alert_sql.settle_deliveries(
                conn, refs, status, now_ms, error, next_ms, attempt
            )
        )

    def _requeue(self, refs: list[DeliveryRef], now_ms: int) -> int:
        """Put rows back in the queue (on the thread; see :meth:`SQLiteAlertStore.requeue`)."""
        return self._transaction(lambda conn: alert_sql.requeue_deliveries(conn, refs, now_ms))

    def _recent(self, since_ms: int | None, status: str | None, limit: int) -> list[AlertRecord]:
        try:
            return queries.recent_alerts(
                self._connection(), since_ms=since_ms, status=status, limit=limit
            )
        except sqlite3.Error as exc:
            raise StorageError(f"outbox query failed: {exc}") from exc


def _recorded(alerts: Sequence[Alert], ids: list[int]) -> list[int]:
    """Log the newly inserted console-only alerts; the new ids, in order."""
    for alert_id, alert in zip(ids, alerts, strict=True):
        if alert_id and not alert.suppressed and not alert.targets:
            log_console_alert(alert.severity, alert.title, alert.body)
    return [alert_id for alert_id in ids if alert_id]


def _rule_states(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], str]:
    return {(rule, scope): state for rule, scope, state in rows}


def _pending(rows: list[tuple[Any, ...]]) -> list[PendingDelivery]:
    return [PendingDelivery(*row) for row in rows]


def _first_int(rows: list[tuple[Any, ...]]) -> int | None:
    value = rows[0][0]
    return None if value is None else int(value)


class SQLiteAlertStore(SettlesDeliveries):
    """The :class:`~watcher.store.ports.AlertStore` of a SQLite file, over an :class:`Outbox`.

    Args:
        outbox: the synchronous outbox whose thread runs every call.
        owned: close the outbox in :meth:`close` (False when the caller keeps owning it).
    """

    def __init__(self, outbox: Outbox, *, owned: bool = True) -> None:
        self._outbox = outbox
        self._owned = owned

    @classmethod
    async def open(cls, db: str | os.PathLike[str]) -> SQLiteAlertStore:
        """Open (create, migrate) the database off the event loop.

        Raises:
            StorageError: the database cannot be opened.
        """
        return cls(await asyncio.to_thread(Outbox, db))

    def __repr__(self) -> str:
        return f"<SQLiteAlertStore {self._outbox!r}>"

    # Public methods

    async def load_rule_states(self) -> dict[tuple[str, str], str]:
        """Every persisted rule state, as ``(rule, scope) → state``."""
        box = self._outbox
        return _rule_states(await self._call(box._query, alert_sql.RULE_STATES_SQL, ()))

    async def record(
        self,
        alerts: Sequence[Alert],
        rule_states: Mapping[tuple[str, str], str] | None = None,
        *,
        now_ms: int,
    ) -> list[int]:
        """Store alerts and rule states in one transaction (see :meth:`Outbox.record`)."""
        listed = list(alerts)
        states = dict(rule_states or {})
        return _recorded(listed, await self._call(self._outbox._record, listed, states, now_ms))

    async def due(self, now_ms: int, limit: int = 100) -> list[PendingDelivery]:
        """Open deliveries whose next attempt is at or before ``now_ms``, oldest first."""
        return _pending(await self._call(self._outbox._query, alert_sql.DUE_SQL, (now_ms, limit)))

    async def next_due_ms(self) -> int | None:
        """When the earliest open delivery is due (possibly in the past), or None if none is."""
        return _first_int(await self._call(self._outbox._query, alert_sql.NEXT_DUE_SQL, ()))

    async def recent(
        self, *, since_ms: int | None = None, status: str | None = None, limit: int = 50
    ) -> list[AlertRecord]:
        """The newest alerts first, with their deliveries."""
        return await self._call(self._outbox._recent, since_ms, status, limit)

    async def requeue(self, refs: Iterable[DeliveryRef], *, now_ms: int) -> int:
        """Put failed (or misconfigured) deliveries back in the queue, due at ``now_ms``."""
        return await self._call(self._outbox._requeue, list(refs), now_ms)

    async def close(self) -> None:
        """Close the outbox if this store owns it (idempotent)."""
        if self._owned:
            await asyncio.to_thread(self._outbox.close)

    # Private methods

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._outbox._submit(fn, *args))

    async def _settle(
        self,
        refs: Iterable[DeliveryRef],
        status: DeliveryStatus,
        now_ms: int,
        error: str | None,
        next_ms: int | None,
        attempt: int,
    ) -> None:
        box = self._outbox
        await self._call(box._settle, list(refs), status, now_ms, error, next_ms, attempt)
