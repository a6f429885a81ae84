"""The PostgreSQL alert store: ``alerts``, ``alert_deliveries`` and ``rule_state`` over asyncpg.

Behaves as :class:`~watcher.store.sqlite_alerts.SQLiteAlertStore` does (one transaction per
:meth:`PostgresAlertStore.record`, unique idempotency key, suppressed alerts without deliveries,
console alerts logged once committed, the alert status rolled up from its deliveries), and adds
what a database shared by several instances needs:

- :meth:`PostgresAlertStore.due` *claims* the rows it returns: ``FOR UPDATE SKIP LOCKED`` picks
  rows nobody else is claiming at that moment, and a lease (``leased_by``, ``lease_until_ms``)
  keeps them this instance's until it settles them or the lease runs out. Another instance never
  gets a row under a live lease; a dead instance's claims come free when its lease ends.
- The ``mark_*`` methods settle a row only when this instance holds its lease (or nobody holds
  a live one) and clear the lease; a row another instance claimed is left to it.

The lease holder is the ``instance`` name plus a random suffix, so a restarted process that
happens to reuse its predecessor's name and pid does not take its predecessor's live claims.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from watcher.domain.alert import Alert
from watcher.errors import StorageError
from watcher.store.console import log_console_alert
from watcher.store.pg import schema
from watcher.store.pg.connect import close_pool, create_pool, on_pool
from watcher.store.records import (
    AlertRecord,
    AlertStatus,
    DeliveryRecord,
    DeliveryRef,
    DeliveryStatus,
    PendingDelivery,
    rollup_status,
)
from watcher.store.settling import SettlesDeliveries

__all__ = ["DEFAULT_LEASE_MS", "PostgresAlertStore", "recent_alerts"]

T = TypeVar("T")

#: How long a claim made by :meth:`PostgresAlertStore.due` keeps other instances away.
DEFAULT_LEASE_MS = 30_000

#: A row is free for ``$1`` (the holder) at ``$2`` (now, ms): unleased, its own, or expired.
#: A closing store gives back what it claimed and did not settle.
_RELEASE_SQL = (
    "UPDATE alert_deliveries SET leased_by = NULL, lease_until_ms = NULL WHERE leased_by = $1"
)
_FREE = "(leased_by IS NULL OR leased_by = $1 OR lease_until_ms < $2)"
_CLAIM_SQL = f"""
WITH claimed AS (
  UPDATE alert_deliveries d SET leased_by = $1, lease_until_ms = $2 + $3
  WHERE (d.alert_id, d.target) IN (
    SELECT alert_id, target FROM alert_deliveries
    WHERE status IN ('pending', 'retrying') AND COALESCE(next_attempt_ms, 0) <= $2 AND {_FREE}
    ORDER BY COALESCE(next_attempt_ms, 0), alert_id, target
    LIMIT $4 FOR UPDATE SKIP LOCKED)
  RETURNING d.alert_id, d.target, d.attempts, d.next_attempt_ms)
SELECT c.alert_id, c.target, c.attempts, c.next_attempt_ms, a.created_ms, a.idempotency_key,
       a.rule, a.market_ticker, a.severity, a.title, a.body
FROM claimed c JOIN alerts a ON a.id = c.alert_id
ORDER BY COALESCE(c.next_attempt_ms, 0), c.alert_id, c.target
"""
#: When the earliest open row becomes claimable by ``$1``: its next attempt, or just after the
#: end of another holder's live lease.
_NEXT_DUE_SQL = """
SELECT MIN(GREATEST(COALESCE(next_attempt_ms, 0),
  CASE WHEN leased_by IS NULL OR leased_by = $1 THEN 0 ELSE COALESCE(lease_until_ms, 0) + 1 END))
FROM alert_deliveries WHERE status IN ('pending', 'retrying')
"""
_SETTLE_SQL = f"""
UPDATE alert_deliveries SET status = $3, attempts = attempts + $4, next_attempt_ms = $5,
  last_error = COALESCE($6, last_error), updated_ms = $2, leased_by = NULL, lease_until_ms = NULL
WHERE (alert_id, target) IN (SELECT * FROM unnest($7::bigint[], $8::text[]))
  AND status IN ('pending', 'retrying') AND {_FREE}
"""
#: A person's "retry now": a delivery that ended without success is due again at ``$1``.
_REQUEUE_SQL = """
UPDATE alert_deliveries SET status = 'pending', next_attempt_ms = $1, updated_ms = $1,
  leased_by = NULL, lease_until_ms = NULL
WHERE (alert_id, target) IN (SELECT * FROM unnest($2::bigint[], $3::text[]))
  AND status IN ('failed', 'config_error')
"""
_STATUSES_SQL = (
    "SELECT alert_id, array_agg(status) FROM alert_deliveries"
    " WHERE alert_id = ANY($1::bigint[]) GROUP BY alert_id ORDER BY alert_id"
)
_LOCK_ALERTS_SQL = "SELECT id FROM alerts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"
_ROLL_UP_SQL = "UPDATE alerts SET status = $2, updated_ms = $3 WHERE id = $1 AND status <> $2"
_INSERT_ALERT_SQL = """
INSERT INTO alerts (idempotency_key, rule, market_ticker, severity, title, body,
  targets, status, created_ms, updated_ms, suppressed_reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
"""
_INSERT_DELIVERY_SQL = (
    "INSERT INTO alert_deliveries (alert_id, target, status, attempts, next_attempt_ms,"
    " updated_ms) VALUES ($1, $2, 'pending', 0, $3, $3)"
)
_UPSERT_RULE_STATE_SQL = """
INSERT INTO rule_state (rule, scope, state, updated_ms) VALUES ($1, $2, $3, $4)
ON CONFLICT (rule, scope) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms
"""
_RECENT_SQL = """
SELECT id, idempotency_key, rule, market_ticker, severity, title, body, targets, status,
  created_ms, updated_ms, suppressed_reason FROM alerts
WHERE created_ms >= $1 AND ($2::text IS NULL OR status = $2)
ORDER BY created_ms DESC, id DESC LIMIT $3
"""
_RECENT_DELIVERIES_SQL = """
SELECT alert_id, target, status, attempts, next_attempt_ms, last_error, updated_ms
FROM alert_deliveries WHERE alert_id = ANY($1::bigint[])
"""


class PostgresAlertStore(SettlesDeliveries):
    """The :class:`~watcher.store.ports.AlertStore` of a PostgreSQL database (see the module).

    Args:
        pool: an asyncpg pool on a migrated database (see :meth:`open`).
        instance: this instance's name, as the lease holder (``"host pid 1234"``).
        lease_ms: how long a claim keeps other instances away.
    """

    def __init__(self, pool: Any, *, instance: str, lease_ms: int = DEFAULT_LEASE_MS) -> None:
        self._pool = pool
        self.instance = instance
        self.holder = f"{instance} #{secrets.token_hex(3)}"
        self.lease_ms = lease_ms
        self._closed = False

    @classmethod
    async def open(
        cls, dsn: str, *, instance: str, lease_ms: int = DEFAULT_LEASE_MS
    ) -> PostgresAlertStore:
        """Connect, migrate the schema (under its advisory lock), and return the store.

        Raises:
            StorageError: the database cannot be reached or migrated.
        """
        name = f"watcher-alerts {instance}"[:63]
        pool = await create_pool(dsn, application_name=name, max_size=3)
        store = cls(pool, instance=instance, lease_ms=lease_ms)
        try:
            now_ms = int(time.time() * 1000)
            await store._call(lambda conn: schema.migrate(conn, now_ms=now_ms))
        except BaseException:
            await store.close()
            raise
        return store

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PostgresAlertStore holder={self.holder!r} lease={self.lease_ms} ms {state}>"

    # Public methods

    async def load_rule_states(self) -> dict[tuple[str, str], str]:
        """Every persisted rule state, as ``(rule, scope) → state``."""
        rows = await self._call(lambda c: c.fetch("SELECT rule, scope, state FROM rule_state"))
        return {(rule, scope): state for rule, scope, state in rows}

    async def record(
        self,
        alerts: Sequence[Alert],
        rule_states: Mapping[tuple[str, str], str] | None = None,
        *,
        now_ms: int,
    ) -> list[int]:
        """Store alerts and rule states in one transaction, before anything is sent.

        A key already stored inserts nothing; a suppressed alert gets no deliveries; one
        without targets is logged on ``watcher.alerts`` once committed.

        Returns:
            The ids of the alerts that were newly inserted, in order.
        """
        listed = list(alerts)
        states = dict(rule_states or {})
        ids = await self._transaction(lambda conn: _insert(conn, listed, states, now_ms))
        for alert_id, alert in zip(ids, listed, strict=True):
            if alert_id and not alert.suppressed and not alert.targets:
                log_console_alert(alert.severity, alert.title, alert.body)
        return [alert_id for alert_id in ids if alert_id]

    async def due(self, now_ms: int, limit: int = 100) -> list[PendingDelivery]:
        """Claim open deliveries due at or before ``now_ms``, oldest first, under a lease."""
        args = (self.holder, now_ms, self.lease_ms, limit)
        rows = await self._call(lambda conn: conn.fetch(_CLAIM_SQL, *args))
        return [PendingDelivery(*row) for row in rows]

    async def next_due_ms(self) -> int | None:
        """When the earliest open delivery can be claimed here (possibly in the past)."""
        value = await self._call(lambda conn: conn.fetchval(_NEXT_DUE_SQL, self.holder))
        return None if value is None else int(value)

    async def recent(
        self, *, since_ms: int | None = None, status: str | None = None, limit: int = 50
    ) -> list[AlertRecord]:
        """The newest alerts first (created at or after ``since_ms``), with their deliveries."""
        return await self._call(lambda conn: recent_alerts(conn, since_ms, status, limit))

    async def requeue(self, refs: Iterable[DeliveryRef], *, now_ms: int) -> int:
        """Put failed (or misconfigured) deliveries back in the queue, due at ``now_ms``, and
        roll their alerts up; how many rows were put back."""
        keys = list(dict.fromkeys(refs))
        if not keys:
            return 0
        ids = sorted({aid for aid, _ in keys})

        async def body(conn: Any) -> int:
            await conn.execute(_LOCK_ALERTS_SQL, ids)
            done = await conn.execute(
                _REQUEUE_SQL, now_ms, [aid for aid, _ in keys], [tgt for _, tgt in keys]
            )
            await _roll_up(conn, ids, now_ms)
            return int(done.rsplit(" ", 1)[-1])

        return await self._transaction(body)

    async def close(self) -> None:
        """Give back the claims not settled (a successor need not wait for their lease to
        expire), then close the pool (idempotent). If the database cannot be reached, the
        claims stay leased until they expire."""
        if self._closed:
            return
        try:
            await self._call(lambda conn: conn.execute(_RELEASE_SQL, self.holder))
        except StorageError:
            pass  # the lease expires on its own
        self._closed = True
        await close_pool(self._pool)

    # Private methods

    async def _call(self, body: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``body(connection)`` on a pooled connection; driver errors → StorageError."""
        if self._closed:
            raise StorageError("alert store is closed")
        return await on_pool(self._pool, body, what="alert store")

    async def _transaction(self, body: Callable[[Any], Awaitable[T]]) -> T:
        async def run(conn: Any) -> T:
            async with conn.transaction():
                return await body(conn)

        return await self._call(run)

    async def _settle(
        self,
        refs: Iterable[DeliveryRef],
        status: DeliveryStatus,
        now_ms: int,
        error: str | None,
        next_ms: int | None,
        attempt: int,
    ) -> None:
        """Close or reschedule the rows this instance may settle; roll their alerts up."""
        keys = list(dict.fromkeys(refs))
        if not keys:
            return
        ids, targets = [aid for aid, _ in keys], [tgt for _, tgt in keys]
        args = (self.holder, now_ms, str(status), attempt, next_ms, error, ids, targets)

        async def body(conn: Any) -> None:
            # Two instances settling targets of one alert would each roll it up without the
            # other's row (read committed): lock the alerts first, in id order.
            await conn.execute(_LOCK_ALERTS_SQL, sorted(set(ids)))
            await conn.execute(_SETTLE_SQL, *args)
            await _roll_up(conn, sorted(set(ids)), now_ms)

        await self._transaction(body)


async def recent_alerts(
    conn: Any, since_ms: int | None, status: str | None, limit: int
) -> list[AlertRecord]:
    """The newest alerts first (created at or after ``since_ms``), with their deliveries."""
    rows = await conn.fetch(_RECENT_SQL, since_ms or 0, status, limit)
    deliveries: dict[int, list[DeliveryRecord]] = {row[0]: [] for row in rows}
    if deliveries:
        for alert_id, *fields in await conn.fetch(_RECENT_DELIVERIES_SQL, list(deliveries)):
            deliveries[alert_id].append(DeliveryRecord(*fields))
    for row in rows:  # in the order of the alert's targets, as SQLite's insertion order
        order = {target: n for n, target in enumerate(json.loads(row[7]))}
        deliveries[row[0]].sort(key=lambda d: order.get(d.target, len(order)))
    return [_alert_record(row, tuple(deliveries[row[0]])) for row in rows]


def _alert_record(row: Any, deliveries: tuple[DeliveryRecord, ...]) -> AlertRecord:
    alert_id, key, rule, market, severity, title, body, targets, status, created, updated, why = row
    return AlertRecord(
        id=alert_id, key=key, rule=rule, market_ticker=market, severity=severity, title=title,
        body=body, targets=tuple(json.loads(targets)), status=status, created_ms=created,
        updated_ms=updated, deliveries=deliveries, suppressed_reason=why,
    )  # fmt: skip


async def _insert(
    conn: Any, alerts: list[Alert], rule_states: dict[tuple[str, str], str], now_ms: int
) -> list[int]:
    """Insert alerts (with deliveries) and upsert rule states; 0 for a key already there."""
    ids = [await _insert_alert(conn, alert, now_ms) for alert in alerts]
    if rule_states:
        await conn.executemany(
            _UPSERT_RULE_STATE_SQL,
            [(rule, scope, state, now_ms) for (rule, scope), state in rule_states.items()],
        )
    return ids


async def _insert_alert(conn: Any, alert: Alert, now_ms: int) -> int:
    targets = list(dict.fromkeys(alert.targets))
    if alert.suppressed:
        status = AlertStatus.SUPPRESSED
    else:
        status = AlertStatus.PENDING if targets else AlertStatus.CONSOLE
    alert_id = await conn.fetchval(
        _INSERT_ALERT_SQL,
        alert.key, alert.rule, alert.market_ticker, alert.severity, alert.title, alert.body,
        json.dumps(targets), str(status), now_ms,
        alert.suppressed_reason if alert.suppressed else None,
    )  # fmt: skip
    if alert_id is None:
        return 0
    if status is AlertStatus.PENDING:
        await conn.executemany(
            _INSERT_DELIVERY_SQL, [(alert_id, target, now_ms) for target in targets]
        )
    return int(alert_id)


async def _roll_up(conn: Any, alert_ids: list[int], now_ms: int) -> None:
    """Set each alert's status from its deliveries' (alerts locked in id order)."""
    for alert_id, statuses in await conn.fetch(_STATUSES_SQL, alert_ids):
        await conn.execute(_ROLL_UP_SQL, alert_id, str(rollup_status(statuses)), now_ms)
