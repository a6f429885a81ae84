"""The durable outbox on a real SQLite file: exactly-once recording, due rows, status roll-up."""

from __future__ import annotations

import logging
import sqlite3
import threading

import pytest

from watcher.domain.alert import Alert
from watcher.errors import StorageError
from watcher.notify.outbox import (
    AlertStatus,
    DeliveryStatus,
    Outbox,
    rollup_status,
)
from watcher.store.schema import open_database

from .support import alert_for

NOW = 1_700_000_000_000


def make_alert(n: int = 1, targets: tuple[str, ...] = ("phone",), **kw: object) -> Alert:
    return alert_for(n, targets, now=NOW, **kw)


@pytest.fixture
def outbox(tmp_path):
    with Outbox(tmp_path / "watcher.db") as box:
        yield box


def test_record_inserts_alert_and_one_pending_delivery_per_target(outbox):
    """A recorded alert is pending with one pending delivery row per (deduplicated) target."""
    ids = outbox.record([make_alert(targets=("phone", "team", "phone"))], now_ms=NOW)
    [record] = outbox.recent()
    assert [record.id] == ids
    assert record.status == AlertStatus.PENDING
    assert record.targets == ("phone", "team")
    assert [(d.target, d.status, d.attempts) for d in record.deliveries] == [
        ("phone", "pending", 0),
        ("team", "pending", 0),
    ]


def test_record_of_a_duplicate_key_inserts_nothing(outbox):
    """The idempotency key makes a replayed alert a no-op (exactly once across restarts)."""
    assert len(outbox.record([make_alert()], now_ms=NOW)) == 1
    assert outbox.record([make_alert(title="changed")], now_ms=NOW + 5) == []
    assert len(outbox.recent()) == 1
    assert len(outbox.due(NOW + 10)) == 1


def test_record_survives_reopening_the_database(tmp_path):
    """Rows written by one Outbox are due for the next one over the same file."""
    with Outbox(tmp_path / "w.db") as first:
        first.record([make_alert(1), make_alert(2)], now_ms=NOW)
    with Outbox(tmp_path / "w.db") as second:
        assert second.record([make_alert(1)], now_ms=NOW) == []
        assert [d.market_ticker for d in second.due(NOW)] == ["KXTEST-1", "KXTEST-2"]


def test_suppressed_alert_is_stored_without_deliveries(outbox):
    """An alert held back by quiet hours is recorded as suppressed and never due."""
    outbox.record([make_alert(suppressed=True)], now_ms=NOW)
    [record] = outbox.recent()
    assert record.status == AlertStatus.SUPPRESSED
    assert record.deliveries == ()
    assert outbox.due(NOW + 1) == []
    assert outbox.next_due_ms() is None


def test_alert_without_targets_goes_to_the_console_log_once(outbox, caplog):
    """No targets: status console and one WARNING 'ALERT [severity] title: body' line."""
    caplog.set_level(logging.WARNING, logger="watcher.alerts")
    alert = make_alert(targets=(), severity="critical")
    outbox.record([alert], now_ms=NOW)
    outbox.record([alert], now_ms=NOW + 1)
    lines = [r.getMessage() for r in caplog.records if r.name == "watcher.alerts"]
    assert lines == ["ALERT [critical] KXTEST-1 spread 1c: spread is 1c on KXTEST-1"]
    assert outbox.recent()[0].status == AlertStatus.CONSOLE


def test_rule_states_are_upserted_in_the_same_call(outbox):
    """record() upserts rule_state rows; load_rule_states returns the latest value per key."""
    outbox.record([], {("stop loss", "KXTEST-1"): '{"armed": false}'}, now_ms=NOW)
    outbox.record(
        [make_alert()],
        {("stop loss", "KXTEST-1"): '{"armed": true}', ("whale", "*"): "{}"},
        now_ms=NOW + 1,
    )
    assert outbox.load_rule_states() == {
        ("stop loss", "KXTEST-1"): '{"armed": true}',
        ("whale", "*"): "{}",
    }


def test_record_is_one_transaction(tmp_path):
    """A failing insert rolls back the alerts and rule states recorded with it."""
    with Outbox(tmp_path / "w.db") as box:
        bad = make_alert(2, title=None)  # NOT NULL violation after the first insert
        with pytest.raises(StorageError, match="outbox write failed"):
            box.record([make_alert(1), bad], {("r", "s"): "x"}, now_ms=NOW)
        assert box.recent() == []
        assert box.load_rule_states() == {}


def test_due_returns_only_open_rows_whose_time_has_come(outbox):
    """due() skips delivered rows and retries scheduled in the future; next_due_ms says when."""
    outbox.record([make_alert(1), make_alert(2), make_alert(3)], now_ms=NOW)
    first, second, third = (d.ref for d in outbox.due(NOW))
    outbox.mark_delivered([first], now_ms=NOW + 1)
    outbox.mark_retry([second], next_attempt_ms=NOW + 4000, error="HTTP 500", now_ms=NOW + 1)
    assert [d.ref for d in outbox.due(NOW + 2)] == [third]
    outbox.mark_config_error([third], error="unknown target 'phone'", now_ms=NOW + 2)
    assert outbox.due(NOW + 3) == []
    assert outbox.next_due_ms() == NOW + 4000
    assert [d.ref for d in outbox.due(NOW + 4000)] == [second]
    assert outbox.due(NOW + 4000)[0].attempts == 1


def test_marks_count_attempts_and_keep_the_last_error(outbox):
    """Retries and the final delivery each count one attempt; a config error counts none."""
    outbox.record([make_alert(1), make_alert(2)], now_ms=NOW)
    ref1, ref2 = (d.ref for d in outbox.due(NOW))
    outbox.mark_retry([ref1], next_attempt_ms=NOW, error="HTTP 500", now_ms=NOW + 1)
    outbox.mark_retry([ref1], next_attempt_ms=NOW, error="HTTP 502", now_ms=NOW + 2)
    outbox.mark_delivered([ref1], now_ms=NOW + 3)
    outbox.mark_config_error([ref2], error="apprise cannot load tgram://***", now_ms=NOW + 3)
    records = {r.market_ticker: r for r in outbox.recent()}
    [d1] = records["KXTEST-1"].deliveries
    [d2] = records["KXTEST-2"].deliveries
    assert (d1.status, d1.attempts, d1.last_error, d1.next_attempt_ms) == (
        "delivered", 3, "HTTP 502", None,
    )  # fmt: skip
    assert (d2.status, d2.attempts, d2.last_error) == ("config_error", 0, d2.last_error)
    assert records["KXTEST-1"].status == AlertStatus.DELIVERED
    assert records["KXTEST-2"].status == AlertStatus.FAILED


def test_a_closed_row_is_never_reopened(outbox):
    """Marking a delivered row again (a late duplicate result) changes nothing."""
    outbox.record([make_alert()], now_ms=NOW)
    [ref] = [d.ref for d in outbox.due(NOW)]
    outbox.mark_delivered([ref], now_ms=NOW + 1)
    outbox.mark_retry([ref], next_attempt_ms=NOW + 9, error="late", now_ms=NOW + 2)
    [delivery] = outbox.recent()[0].deliveries
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 1, None)


def test_alert_status_rolls_up_from_several_targets(outbox):
    """One target delivered and one given up makes the alert partial."""
    outbox.record([make_alert(targets=("phone", "team"))], now_ms=NOW)
    phone, team = (d.ref for d in outbox.due(NOW))
    outbox.mark_delivered([phone], now_ms=NOW + 1)
    assert outbox.recent()[0].status == AlertStatus.PENDING
    outbox.mark_failed([team], error="gave up", now_ms=NOW + 2)
    assert outbox.recent()[0].status == AlertStatus.PARTIAL


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], AlertStatus.CONSOLE),
        (["pending"], AlertStatus.PENDING),
        (["delivered", "retrying"], AlertStatus.PENDING),
        (["delivered", "delivered"], AlertStatus.DELIVERED),
        (["delivered", "config_error"], AlertStatus.PARTIAL),
        (["failed", "config_error"], AlertStatus.FAILED),
    ],
)
def test_rollup_status_truth_table(statuses, expected):
    """Open deliveries keep an alert pending; otherwise all/some/none delivered decides."""
    assert rollup_status(statuses) is expected


def test_recent_filters_by_time_and_status_newest_first(outbox):
    """recent() lists newest first and honours since_ms, status and limit."""
    outbox.record([make_alert(1)], now_ms=NOW)
    outbox.record([make_alert(2, targets=())], now_ms=NOW + 10)
    outbox.record([make_alert(3)], now_ms=NOW + 20)
    assert [r.market_ticker for r in outbox.recent()] == ["KXTEST-3", "KXTEST-2", "KXTEST-1"]
    assert [r.market_ticker for r in outbox.recent(since_ms=NOW + 5)] == ["KXTEST-3", "KXTEST-2"]
    assert [r.market_ticker for r in outbox.recent(status="console")] == ["KXTEST-2"]
    assert [r.market_ticker for r in outbox.recent(limit=1)] == ["KXTEST-3"]


def test_outbox_can_be_called_from_any_thread(outbox):
    """The connection lives on the outbox's own thread, so calls from other threads work."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            outbox.record([make_alert(n)], now_ms=NOW)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(outbox.due(NOW)) == 5


def test_outbox_accepts_a_connection_factory(tmp_path):
    """A callable returning a connection is used instead of a path (here: open_database)."""
    path = tmp_path / "w.db"

    def connect() -> sqlite3.Connection:
        return open_database(path)

    with Outbox(connect) as box:
        box.record([make_alert()], now_ms=NOW)
        assert "connect" in repr(box)
    with Outbox(path) as box:
        assert len(box.recent()) == 1


def test_a_closed_outbox_raises_storage_error(tmp_path):
    """Using the outbox after close() is a StorageError, and close() is idempotent."""
    box = Outbox(tmp_path / "w.db")
    box.close()
    box.close()
    assert "closed" in repr(box)
    with pytest.raises(StorageError, match="outbox is closed"):
        box.due(NOW)


def test_delivery_status_values_match_the_schema_comment():
    """The enums spell the statuses the schema documents."""
    assert {s.value for s in DeliveryStatus} == {
        "pending", "delivered", "retrying", "config_error", "failed",
    }  # fmt: skip
    assert {s.value for s in AlertStatus} == {
        "pending", "delivered", "partial", "failed", "suppressed", "console",
    }  # fmt: skip
