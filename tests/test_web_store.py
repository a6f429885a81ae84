"""What the dashboard asks of the store, on every backend (the contract suite's fixtures):
"retry now" on a failed delivery (``AlertStore.requeue``) and chart series
(``ReadModel.tick_series``)."""

from __future__ import annotations

import pytest

from watcher.store.records import AlertStatus, DeliveryStatus

from . import test_store_contract as contract
from .test_store_contract import MARKET, NOW, Ports, make_alert, tick

# The contract suite's fixtures: every test here runs on SQLite and on PostgreSQL.
database = contract.database
ports = contract.ports


async def _statuses(ports: Ports) -> tuple[str, list[str]]:
    (record,) = await ports.reader.recent_alerts()
    return record.status, [d.status for d in record.deliveries]


async def test_a_failed_delivery_is_put_back_in_the_queue_and_rolled_up(ports: Ports) -> None:
    """requeue makes failed and config_error rows pending and due now (attempts and error
    kept), rolls the alert back up to pending, and leaves delivered rows alone."""
    (alert_id,) = await ports.alerts.record(
        [make_alert(targets=("phone", "team", "mail"))], now_ms=NOW
    )
    refs = {item.target: item.ref for item in await ports.alerts.due(NOW)}
    phone, team, mail = refs["phone"], refs["team"], refs["mail"]
    await ports.alerts.mark_failed([phone], error="HTTP 500", now_ms=NOW + 1)
    await ports.alerts.mark_config_error([team], error="no such url", now_ms=NOW + 1)
    await ports.alerts.mark_delivered([mail], now_ms=NOW + 1)
    assert await _statuses(ports) == (AlertStatus.PARTIAL, ["failed", "config_error", "delivered"])

    put_back = await ports.alerts.requeue([phone, team, mail, (alert_id, "nope")], now_ms=NOW + 5)

    assert put_back == 2
    assert await _statuses(ports) == (AlertStatus.PENDING, ["pending", "pending", "delivered"])
    again = await ports.alerts.due(NOW + 5)
    assert [(d.ref, d.attempts) for d in again] == [(phone, 1), (team, 0)]
    (record,) = await ports.reader.recent_alerts()
    assert record.deliveries[0].last_error == "HTTP 500"
    assert await ports.alerts.next_due_ms() == NOW + 5


async def test_requeue_leaves_open_and_delivered_rows_alone(ports: Ports) -> None:
    """A pending, retrying or delivered row is not touched; nothing to do returns 0."""
    await ports.alerts.record([make_alert(targets=("phone", "team"))], now_ms=NOW)
    refs = {item.target: item.ref for item in await ports.alerts.due(NOW)}
    phone, team = refs["phone"], refs["team"]
    await ports.alerts.mark_retry([phone], next_attempt_ms=NOW + 60_000, error="x", now_ms=NOW)
    assert await ports.alerts.requeue([phone, team], now_ms=NOW + 1) == 0
    assert await ports.alerts.requeue([], now_ms=NOW + 1) == 0
    assert (await _statuses(ports))[1] == [DeliveryStatus.RETRYING, DeliveryStatus.PENDING]


async def test_tick_series_keeps_the_newest_tick_of_each_bucket_oldest_first(
    ports: Ports,
) -> None:
    """1,000 ticks over 1,000 ms thinned to 10 points: one row per 100 ms bucket, the newest
    of each, oldest first, exact micro-units; since_ms and other markets are honoured."""
    for n in range(1000):
        bid = f"0.{10 + n % 80:02d}"
        frame = tick(NOW + n, bid=bid)
        ports.sink.put_nowait(frame, NOW) or await ports.sink.put(frame, NOW)
    await ports.sink.put(tick(NOW + 5, market="KXOTHER"), NOW)
    await ports.sink.flush()

    series = await ports.reader.tick_series(MARKET, points=10)

    assert [row.ts_ms for row in series] == [NOW + 99 + 100 * k for k in range(10)]
    assert series[0].yes_bid_e6 == (10 + 99 % 80) * 10_000
    assert {row.market_ticker for row in series} == {MARKET}
    recent = await ports.reader.tick_series(MARKET, since_ms=NOW + 900, points=1000)
    assert [row.ts_ms for row in recent] == [NOW + n for n in range(900, 1000)]
    assert await ports.reader.tick_series("KXNONE", points=10) == []
    with pytest.raises(ValueError, match="points must be positive"):
        await ports.reader.tick_series(MARKET, points=0)


async def test_delivery_counts_count_each_status(ports: Ports) -> None:
    """The health strip's outbox numbers: deliveries per status, statuses without any left out."""
    assert await ports.reader.delivery_counts() == {}
    await ports.alerts.record([make_alert(targets=("phone", "team", "mail"))], now_ms=NOW)
    refs = {item.target: item.ref for item in await ports.alerts.due(NOW)}
    await ports.alerts.mark_failed([refs["phone"]], error="x", now_ms=NOW)
    await ports.alerts.mark_delivered([refs["team"]], now_ms=NOW)
    counts = await ports.reader.delivery_counts()
    assert counts == {"failed": 1, "delivered": 1, "pending": 1}
