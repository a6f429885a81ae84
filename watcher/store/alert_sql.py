"""The SQL of the alert tables: the reads, and what one write transaction does on a connection.

These functions run inside a transaction opened by :class:`~watcher.store.sqlite_alerts.Outbox`
on its thread; they neither begin nor commit. The statuses and their roll-up are drawn in
:mod:`watcher.store.records`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from watcher.domain.alert import Alert
from watcher.store.records import AlertStatus, DeliveryRef, DeliveryStatus, rollup_status

__all__ = [
    "DUE_SQL",
    "NEXT_DUE_SQL",
    "RULE_STATES_SQL",
    "insert_alerts",
    "requeue_deliveries",
    "settle_deliveries",
]

#: Open deliveries due at or before ``?`` (ms), at most ``?`` of them, oldest first.
DUE_SQL = """
SELECT d.alert_id, d.target, d.attempts, d.next_attempt_ms, a.created_ms, a.idempotency_key,
       a.rule, a.market_ticker, a.severity, a.title, a.body
FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
WHERE d.status IN ('pending', 'retrying') AND COALESCE(d.next_attempt_ms, 0) <= ?
ORDER BY COALESCE(d.next_attempt_ms, 0), d.alert_id, d.target LIMIT ?
"""
NEXT_DUE_SQL = (
    "SELECT MIN(COALESCE(next_attempt_ms, 0)) FROM alert_deliveries"
    " WHERE status IN ('pending', 'retrying')"
)
RULE_STATES_SQL = "SELECT rule, scope, state FROM rule_state"
_INSERT_ALERT_SQL = """
INSERT INTO alerts (idempotency_key, rule, market_ticker, severity, title, body,
  targets, status, created_ms, updated_ms, suppressed_reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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

#: A person's "retry now": a delivery that ended without success is due again.
_REQUEUE_SQL = """
UPDATE alert_deliveries SET status = 'pending', next_attempt_ms = ?, updated_ms = ?
WHERE alert_id = ? AND target = ? AND status IN ('failed', 'config_error')
"""


def insert_alerts(
    conn: sqlite3.Connection,
    alerts: Sequence[Alert],
    rule_states: Mapping[tuple[str, str], str],
    now_ms: int,
) -> list[int]:
    """Insert alerts (with their deliveries) and upsert rule states; one id per alert, 0 for
    an alert whose key is already there."""
    ids = [_insert_alert(conn, alert, now_ms) for alert in alerts]
    conn.executemany(
        _UPSERT_RULE_STATE_SQL,
        [(rule, scope, state, now_ms) for (rule, scope), state in rule_states.items()],
    )
    return ids


def settle_deliveries(
    conn: sqlite3.Connection,
    refs: Sequence[DeliveryRef],
    status: DeliveryStatus,
    now_ms: int,
    error: str | None,
    next_ms: int | None,
    attempt: int,
) -> None:
    """Close or reschedule the open delivery rows ``refs`` and roll their alerts up."""
    keys = list(dict.fromkeys(refs))
    params = [(status, attempt, next_ms, error, now_ms, aid, tgt) for aid, tgt in keys]
    conn.executemany(_MARK_SQL, params)
    for alert_id in dict.fromkeys(aid for aid, _ in keys):
        _roll_up(conn, alert_id, now_ms)


def requeue_deliveries(conn: sqlite3.Connection, refs: Sequence[DeliveryRef], now_ms: int) -> int:
    """Put the ``failed``/``config_error`` rows of ``refs`` back in the queue, due at
    ``now_ms``, and roll their alerts up; how many rows were put back."""
    keys = list(dict.fromkeys(refs))
    count = 0
    for alert_id, target in keys:
        count += conn.execute(_REQUEUE_SQL, (now_ms, now_ms, alert_id, target)).rowcount
    for alert_id in dict.fromkeys(aid for aid, _ in keys):
        _roll_up(conn, alert_id, now_ms)
    return count


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
         json.dumps(targets), status, now_ms, now_ms,
         alert.suppressed_reason if alert.suppressed else None),
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
