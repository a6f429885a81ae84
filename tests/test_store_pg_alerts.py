"""The PostgreSQL alert store on a real server: the outbox contract, and leases shared by two
instances (a claimed delivery is never handed out twice; a dead instance's claim expires)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from watcher.errors import StorageError
from watcher.store.pg.alerts import PostgresAlertStore
from watcher.store.records import AlertStatus, DeliveryStatus

from .support import alert_for

NOW = 1_700_000_000_000
LEASE = 30_000


async def _truncate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE alerts, alert_deliveries, rule_state")
    finally:
        await conn.close()


@pytest.fixture
async def pair(postgres_db: str) -> AsyncIterator[tuple[PostgresAlertStore, PostgresAlertStore]]:
    """Two instances' alert stores on one (emptied) database."""
    one = await PostgresAlertStore.open(postgres_db, instance="host-a pid 1", lease_ms=LEASE)
    two = await PostgresAlertStore.open(postgres_db, instance="host-b pid 2", lease_ms=LEASE)
    await _truncate(postgres_db)
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


async def test_a_key_is_recorded_once_with_its_rule_state_and_console_alerts_are_logged(
    pair, caplog
) -> None:
    """Same key twice (even from two instances) inserts once; console alerts log on commit;
    suppressed and console alerts have no deliveries."""
    one, two = pair
    states = {("tight spread", "KXTEST-1"): '{"armed": false}'}
    caplog.set_level(logging.WARNING, logger="watcher.alerts")
    ids = await one.record([alert_for(1, ("hook",), now=NOW)], states, now_ms=NOW)
    assert len(ids) == 1
    assert await two.record([alert_for(1, ("hook",), now=NOW)], now_ms=NOW) == []
    new = await two.record(
        [alert_for(2, (), now=NOW), alert_for(3, ("hook",), now=NOW, suppressed=True)],
        now_ms=NOW,
    )
    assert len(new) == 2
    assert await two.load_rule_states() == states
    statuses = {r.market_ticker: (r.status, len(r.deliveries)) for r in await one.recent()}
    assert statuses == {
        "KXTEST-1": (AlertStatus.PENDING, 1),
        "KXTEST-2": (AlertStatus.CONSOLE, 0),
        "KXTEST-3": (AlertStatus.SUPPRESSED, 0),
    }
    assert [r.message for r in caplog.records].count("ALERT [warning] KXTEST-2 spread 1c: "
                                                     "spread is 1c on KXTEST-2") == 1  # fmt: skip


async def test_settling_counts_attempts_keeps_errors_and_rolls_up(pair) -> None:
    """delivered/retry/config_error/failed as on SQLite, in the targets' order."""
    one, _ = pair
    [aid] = await one.record([alert_for(1, ("a", "b", "c"), now=NOW)], now_ms=NOW)
    await one.mark_retry([(aid, "a")], next_attempt_ms=NOW + 1, error="json://***: 500", now_ms=NOW)
    await one.mark_failed([(aid, "a")], error="gave up", now_ms=NOW + 2)
    await one.mark_config_error([(aid, "b")], error="bad url", now_ms=NOW + 2)
    assert (await one.recent())[0].status == AlertStatus.PENDING
    await one.mark_delivered([(aid, "c")], now_ms=NOW + 3)
    await one.mark_retry([(aid, "c")], next_attempt_ms=NOW + 9, error="late", now_ms=NOW + 4)
    [record] = await one.recent()
    assert [(d.target, d.status, d.attempts, d.last_error) for d in record.deliveries] == [
        ("a", DeliveryStatus.FAILED, 2, "gave up"),
        ("b", DeliveryStatus.CONFIG_ERROR, 0, "bad url"),
        ("c", DeliveryStatus.DELIVERED, 1, None),
    ]
    assert record.status == AlertStatus.PARTIAL


async def test_two_instances_claiming_concurrently_never_get_the_same_delivery(pair) -> None:
    """300 deliveries claimed in small batches by two stores at once: each exactly once."""
    one, two = pair
    alerts = [alert_for(n, ("a", "b", "c"), now=NOW) for n in range(100)]
    await one.record(alerts, now_ms=NOW)
    claims: dict[str, list[tuple[int, str]]] = {"one": [], "two": []}

    async def claimer(name: str, store: PostgresAlertStore) -> None:
        while batch := await store.due(NOW + 1000, limit=7):
            claims[name].extend(d.ref for d in batch)
            await asyncio.sleep(0)
            await store.mark_delivered([d.ref for d in batch], now_ms=NOW + 1000)

    await asyncio.gather(claimer("one", one), claimer("two", two))
    everything = claims["one"] + claims["two"]
    assert len(everything) == len(set(everything)) == 300
    assert claims["one"] and claims["two"]
    assert {r.status for r in await one.recent(limit=200)} == {AlertStatus.DELIVERED}


async def test_a_claim_keeps_others_away_until_its_lease_expires(pair) -> None:
    """A live lease hides the row from the other instance (and its mark_* leaves it alone);
    once expired the row is claimable again, and the late holder cannot settle it."""
    one, two = pair
    [aid] = await one.record([alert_for(1, ("hook",), now=NOW)], now_ms=NOW)
    [claimed] = await one.due(NOW)
    assert claimed.ref == (aid, "hook")
    assert await two.due(NOW + LEASE) == []  # the lease runs until NOW + LEASE inclusive
    assert await two.next_due_ms() == NOW + LEASE + 1
    await two.mark_delivered([claimed.ref], now_ms=NOW + 10)  # not two's to settle
    assert (await one.recent())[0].deliveries[0].status == DeliveryStatus.PENDING
    assert [d.ref for d in await one.due(NOW + 5)] == [claimed.ref]  # its own claim, again
    [taken] = await two.due(NOW + 5 + LEASE + 1)  # one died: its lease ran out
    assert (taken.ref, taken.attempts) == (claimed.ref, 0)
    await one.mark_delivered([claimed.ref], now_ms=NOW + LEASE + 10)  # too late: two holds it
    assert (await one.recent())[0].status == AlertStatus.PENDING
    await two.mark_retry([taken.ref], next_attempt_ms=NOW + 2 * LEASE, error="x", now_ms=NOW)
    assert await one.next_due_ms() == NOW + 2 * LEASE  # the lease is cleared by settling
    [again] = await one.due(NOW + 2 * LEASE)
    assert again.attempts == 1


async def test_an_unreachable_database_is_a_storage_error() -> None:
    """A refused connection is a StorageError (no password in it), not a driver error."""
    with pytest.raises(StorageError, match="cannot connect to") as caught:
        await PostgresAlertStore.open(
            "postgresql://watcher:secret@127.0.0.1:1/none", instance="x pid 1"
        )
    assert "secret" not in str(caught.value)
