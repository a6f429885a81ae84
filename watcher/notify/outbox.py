"""The durable alert outbox: every alert is a row in ``alerts`` before anything is sent.

An alert is recorded once per idempotency key (``ON CONFLICT DO NOTHING``), with one
``alert_deliveries`` row per target, in the same transaction as the rule state that made it fire.
So a replayed event or a restart neither loses nor repeats an alert: the sender delivers whatever
is still ``pending``/``retrying`` and marks each row from the service's answer.

Statuses (``alerts.status`` is rolled up from its deliveries)::

    delivery: pending ──► delivered
                 │  └──► retrying ──► delivered | failed (given up) | retrying ...
                 └─────► config_error (bad URL, unknown target: never retried)
    alert:    pending (some delivery open) | delivered (all) | partial (some) | failed (none)
              | suppressed (quiet hours: no deliveries) | console (no targets: logged only)

:class:`Outbox` is synchronous. Every call runs on one private thread that owns the SQLite
connection, so it may be called from any thread, typically through ``asyncio.to_thread``.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar

from watcher.domain.alert import Alert
from watcher.errors import StorageError
from watcher.store.schema import open_database

__all__ = [
    "CONSOLE_LOGGER",
    "AlertRecord",
    "AlertStatus",
    "DeliveryRecord",
    "DeliveryRef",
    "DeliveryStatus",
    "Outbox",
    "PendingDelivery",
    "log_console_alert",
    "rollup_status",
]

logger = logging.getLogger("watcher.notify")
#: Alerts without targets (and alerts no target could take) are logged here at WARNING.
CONSOLE_LOGGER = logging.getLogger("watcher.alerts")

T = TypeVar("T")
#: ``(alert_id, target)``: the primary key of one delivery row.
DeliveryRef = tuple[int, str]


class AlertStatus(StrEnum):
    """``alerts.status``."""

    PENDING = "pending"
    DELIVERED = "delivered"
    PARTIAL = "partial"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CONSOLE = "console"


class DeliveryStatus(StrEnum):
    """``alert_deliveries.status``."""

    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    CONFIG_ERROR = "config_error"
    FAILED = "failed"


OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """One (alert, target) delivery that is due, with the alert text it has to carry."""

    alert_id: int
    target: str
    attempts: int
    next_attempt_ms: int | None
    created_ms: int
    key: str
    rule: str
    market_ticker: str
    severity: str
    title: str
    body: str

    @property
    def ref(self) -> DeliveryRef:
        """The row's primary key, as the ``mark_*`` methods take it."""
        return (self.alert_id, self.target)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One ``alert_deliveries`` row (``last_error`` is already masked)."""

    target: str
    status: str
    attempts: int
    next_attempt_ms: int | None
    last_error: str | None
    updated_ms: int


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One ``alerts`` row with its deliveries, for ``watcher alerts``."""

    id: int
    key: str
    rule: str
    market_ticker: str
    severity: str
    title: str
    body: str
    targets: tuple[str, ...]
    status: str
    created_ms: int
    updated_ms: int
    deliveries: tuple[DeliveryRecord, ...]


def rollup_status(statuses: Iterable[str]) -> AlertStatus:
    """The alert status implied by its deliveries' statuses.

    Any open delivery keeps the alert ``pending``; otherwise all delivered is ``delivered``,
    none is ``failed`` and some is ``partial``. No deliveries at all means ``console``.
    """
    listed = list(statuses)
    if not listed:
        return AlertStatus.CONSOLE
    if any(s in OPEN_STATUSES for s in listed):
        return AlertStatus.PENDING
    delivered = sum(s == DeliveryStatus.DELIVERED for s in listed)
    if delivered == len(listed):
        return AlertStatus.DELIVERED
    return AlertStatus.FAILED if delivered == 0 else AlertStatus.PARTIAL


def log_console_alert(severity: str, title: str, body: str) -> None:
    """Log an alert on the console logger: ``ALERT [severity] title: body``."""
    CONSOLE_LOGGER.warning("ALERT [%s] %s: %s", severity, title, body)


_DUE_SQL = """
SELECT d.alert_id, d.target, d.attempts, d.next_attempt_ms, a.created_ms, a.idempotency_key,
       a.rule, a.market_ticker, a.severity, a.title, a.body
FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
WHERE d.status IN ('pending', 'retrying') AND COALESCE(d.next_attempt_ms, 0) <= ?
ORDER BY COALESCE(d.next_attempt_ms, 0), d.alert_id, d.target LIMIT ?
"""
_INSERT_ALERT_SQL = """
INSERT INTO alerts (idempotency_key, rule, market_ticker, severity, title, body,
  targets, status, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (idempotency_key) DO NOTHING
"""
_UPSERT_RULE_STATE_SQL = """
INSERT INTO rule_state (rule, scope, state, updated_ms) VALUES (?, ?, ?, ?)
ON CONFLICT (rule, scope) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms
"""
_MARK_SQL = """
UPDATE alert_deliveries SET status = ?, attempts = attempts + ?, next_attempt_ms = ?,
  last_error = COALESCE(?, last_error), updated_ms = ?
WHERE alert_id = ? AND target = ? AND status IN ('pending', 'retrying')
"""


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
        ids = self._run(self._record, list(alerts), dict(rule_states or {}), now_ms)
        for alert_id, alert in zip(ids, alerts, strict=True):
            if alert_id and not alert.suppressed and not alert.targets:
                log_console_alert(alert.severity, alert.title, alert.body)
        return [alert_id for alert_id in ids if alert_id]

    def load_rule_states(self) -> dict[tuple[str, str], str]:
        """Every persisted rule state, as ``(rule, scope) → state``."""
        rows = self._run(self._query, "SELECT rule, scope, state FROM rule_state", ())
        return {(rule, scope): state for rule, scope, state in rows}

    def due(self, now_ms: int, limit: int = 100) -> list[PendingDelivery]:
        """Open deliveries whose next attempt is at or before ``now_ms``, oldest first."""
        rows = self._run(self._query, _DUE_SQL, (now_ms, limit))
        return [PendingDelivery(*row) for row in rows]

    def next_due_ms(self) -> int | None:
        """When the earliest open delivery is due (possibly in the past), or None if none is."""
        sql = (
            "SELECT MIN(COALESCE(next_attempt_ms, 0)) FROM alert_deliveries"
            " WHERE status IN ('pending', 'retrying')"
        )
        value = self._run(self._query, sql, ())[0][0]
        return None if value is None else int(value)

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

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return self._worker.submit(fn, *args).result()
        except RuntimeError as exc:  # the executor was shut down
            raise StorageError(f"outbox is closed: {exc}") from exc

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
        def body(conn: sqlite3.Connection) -> list[int]:
            ids = [_insert_alert(conn, alert, now_ms) for alert in alerts]
            conn.executemany(
                _UPSERT_RULE_STATE_SQL,
                [(rule, scope, state, now_ms) for (rule, scope), state in rule_states.items()],
            )
            return ids

        return self._transaction(body)

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
        keys = list(dict.fromkeys(refs))

        def body(conn: sqlite3.Connection) -> None:
            params = [(status, attempt, next_ms, error, now_ms, aid, tgt) for aid, tgt in keys]
            conn.executemany(_MARK_SQL, params)
            for alert_id in dict.fromkeys(aid for aid, _ in keys):
                _roll_up(conn, alert_id, now_ms)

        self._run(self._transaction, body)

    def _recent(self, since_ms: int | None, status: str | None, limit: int) -> list[AlertRecord]:
        sql = (
            "SELECT id, idempotency_key, rule, market_ticker, severity, title, body, targets,"
            " status, created_ms, updated_ms FROM alerts WHERE created_ms >= ?"
            " AND (? IS NULL OR status = ?) ORDER BY created_ms DESC, id DESC LIMIT ?"
        )
        rows = self._query(sql, (since_ms or 0, status, status, limit))
        deliveries: dict[int, list[DeliveryRecord]] = {row[0]: [] for row in rows}
        if deliveries:
            marks = ",".join("?" * len(deliveries))
            found = self._query(
                "SELECT alert_id, target, status, attempts, next_attempt_ms, last_error,"
                f" updated_ms FROM alert_deliveries WHERE alert_id IN ({marks})"
                " ORDER BY alert_id, rowid",
                list(deliveries),
            )
            for alert_id, *fields in found:
                deliveries[alert_id].append(DeliveryRecord(*fields))
        return [_alert_record(row, tuple(deliveries[row[0]])) for row in rows]


def _alert_record(row: tuple[Any, ...], deliveries: tuple[DeliveryRecord, ...]) -> AlertRecord:
    alert_id, key, rule, market, severity, title, body, targets, status, created, updated = row
    return AlertRecord(
        id=alert_id, key=key, rule=rule, market_ticker=market, severity=severity, title=title,
        body=body, targets=tuple(json.loads(targets)), status=status, created_ms=created,
        updated_ms=updated, deliveries=deliveries,
    )  # fmt: skip


def _insert_alert(conn: sqlite3.Connection, alert: Alert, now_ms: int) -> int:
    """Insert one alert (and its deliveries); 0 when its key is already there."""
    targets = list(dict.fromkeys(alert.targets))
    if alert.suppressed:
        status = AlertStatus.SUPPRESSED
    else:
        status = AlertStatus.PENDING if targets else AlertStatus.CONSOLE
    cursor = conn.execute(
        _INSERT_ALERT_SQL,
        (alert.key, alert.rule, alert.market_ticker, alert.severity, alert.title, alert.body,
         json.dumps(targets), status, now_ms, now_ms),
    )  # fmt: skip
    if cursor.rowcount != 1 or cursor.lastrowid is None:
        return 0
    if status is AlertStatus.PENDING:
        conn.executemany(
            "INSERT INTO alert_deliveries (alert_id, target, status, attempts, next_attempt_ms,"
            " updated_ms) VALUES (?, ?, 'pending', 0, ?, ?)",
            [(cursor.lastrowid, target, now_ms, now_ms) for target in targets],
        )
    return cursor.lastrowid


def _roll_up(conn: sqlite3.Connection, alert_id: int, now_ms: int) -> None:
    rows = conn.execute("SELECT status FROM alert_deliveries WHERE alert_id = ?", (alert_id,))
    status = rollup_status(row[0] for row in rows.fetchall())
    conn.execute(
        "UPDATE alerts SET status = ?, updated_ms = ? WHERE id = ? AND status != ?",
        (status, now_ms, alert_id, status),
    )
