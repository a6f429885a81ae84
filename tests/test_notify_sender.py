"""The sender end to end: Apprise to a local HTTP server and a local SMTP server, real SQLite.

Time is real but short: backoffs of 10 ms, and every wait is bounded by a multiple of MS.
"""

from __future__ import annotations

import asyncio
import base64
import email
import logging
import socket
import time
from collections.abc import Callable
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import MS
from tests.support import HttpRecorder, alert_for
from watcher.domain.alert import Alert
from watcher.notify import (
    DeliveryStatus,
    Outbox,
    Sender,
    SendStatus,
    mask_url,
    send_test,
    validate_targets,
)
from watcher.notify.sender import compose_message, retry_delay
from watcher.store.sqlite_alerts import SQLiteAlertStore

NOW = int(time.time() * 1000)
WAIT = 10_000 * MS
FAST: dict[str, Any] = {
    "coalesce_window": 0.0,
    "min_backoff": 0.01,
    "max_backoff": 0.05,
    "timeout": 5.0,
}


def over(outbox: Outbox) -> SQLiteAlertStore:
    """The async alert store over the test's outbox, which the test keeps owning."""
    return SQLiteAlertStore(outbox, owned=False)


def make_alert(n: int = 1, targets: tuple[str, ...] = ("hook",), **kw: Any) -> Alert:
    return alert_for(n, targets, now=NOW, **kw)


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll a condition that lives in the database or another thread (no event to wait on)."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def statuses(outbox: Outbox) -> list[str]:
    return [r.status for r in outbox.recent(limit=1000)]


def all_closed(outbox: Outbox) -> Callable[[], bool]:
    return lambda: outbox.next_due_ms() is None


@pytest.fixture
def outbox(tmp_path):
    with Outbox(tmp_path / "watcher.db") as box:
        yield box


@pytest.fixture
async def http():
    async with HttpRecorder() as server:
        yield server


# Apprise json:// and mailto:// against local servers


async def test_json_target_receives_the_alert_payload(outbox, http):
    """A json:// target gets one POST with the alert's title, body and notify type."""
    outbox.record([make_alert(severity="critical")], now_ms=NOW)
    async with Sender(
        SQLiteAlertStore(outbox, owned=False), {"hook": [http.url]}, **FAST
    ) as sender:
        await wait_until(lambda: statuses(outbox) == ["delivered"])
    [request] = http.requests
    assert request.path == "/hook"
    assert request.payload["title"] == "KXTEST-1 spread 1c"
    assert request.payload["message"] == "spread is 1c on KXTEST-1"
    assert request.payload["type"] == "failure"
    assert sender.stats.sent == 1


class SmtpRecorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = SmtpRecorder()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


async def test_mailto_target_delivers_mail_to_a_local_smtp_server(outbox, smtp):
    """mailto://host:port?mode=insecure sends plain SMTP; the mail carries the alert text."""
    handler, port = smtp
    url = f"mailto://127.0.0.1:{port}?mode=insecure&from=watcher@example.com&to=me@example.com"
    outbox.record([make_alert(targets=("email",))], now_ms=NOW)
    async with Sender(over(outbox), {"email": url}, **FAST):
        await wait_until(lambda: statuses(outbox) == ["delivered"])
    [mail] = handler.messages
    assert mail["Subject"] == "KXTEST-1 spread 1c"
    assert mail["To"] == "me@example.com"
    text = "".join(
        part.get_payload(decode=True).decode() for part in mail.walk() if not part.is_multipart()
    )
    assert "spread is 1c on KXTEST-1" in text


# Retries, restarts, exactly once


async def test_target_failing_twice_then_accepting_is_delivered_exactly_once(outbox, http):
    """500, 500, then 200: one delivered request, recorded as delivered after 3 attempts."""
    http.statuses[:] = [500, 500]
    outbox.record([make_alert()], now_ms=NOW)
    async with Sender(
        SQLiteAlertStore(outbox, owned=False), {"hook": [http.url]}, **FAST
    ) as sender:
        await wait_until(lambda: statuses(outbox) == ["delivered"])
    assert [r.status for r in http.requests] == [500, 500, 200]
    assert len(http.delivered) == 1
    [delivery] = outbox.recent()[0].deliveries
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert "500" in (delivery.last_error or "")
    assert (sender.stats.sent, sender.stats.retried) == (1, 2)


async def test_send_that_times_out_is_retried(outbox, http):
    """A service that does not answer within the timeout counts as a failed attempt."""
    http.statuses[:] = [0]
    outbox.record([make_alert()], now_ms=NOW)
    async with Sender(
        SQLiteAlertStore(outbox, owned=False), {"hook": [http.url]}, **{**FAST, "timeout": 0.2}
    ):
        await wait_until(lambda: statuses(outbox) == ["delivered"])
    [delivery] = outbox.recent()[0].deliveries
    assert (delivery.attempts, delivery.last_error) == (2, "JSON: apprise timed out")


async def test_stopping_waits_for_the_send_in_flight_to_be_recorded(outbox, http):
    """Leaving the context lets an answered send be marked, so a restart will not repeat it."""
    http.statuses[:] = [0]
    outbox.record([make_alert()], now_ms=NOW)
    async with Sender(over(outbox), {"hook": [http.url]}, **FAST):
        await wait_until(lambda: len(http.requests) == 1)
        asyncio.get_running_loop().call_later(0.05, http.release.set)
    assert statuses(outbox) == ["delivered"]


async def test_new_sender_delivers_rows_left_pending_by_a_previous_run(tmp_path, http):
    """Alerts recorded before a restart are delivered once by the next run, never again."""
    path = tmp_path / "watcher.db"
    with Outbox(path) as before_restart:
        before_restart.record([make_alert(1), make_alert(2)], now_ms=NOW)
    for _ in range(2):  # two restarts in a row: the second finds nothing to send
        with Outbox(path) as outbox:
            async with Sender(
                SQLiteAlertStore(outbox, owned=False), {"hook": [http.url]}, **FAST
            ) as sender:
                await wait_until(all_closed(outbox))
                sender.wake()
                await asyncio.sleep(0.05)
            assert statuses(outbox) == ["delivered", "delivered"]
    [request] = http.requests  # both were due at once: one coalesced message
    assert request.payload["title"] == "2 alerts"


async def test_duplicate_record_of_the_same_key_sends_once(outbox, http):
    """Recording the same alert twice (a replay) results in a single message."""
    async with Sender(
        SQLiteAlertStore(outbox, owned=False), {"hook": [http.url]}, **FAST
    ) as sender:
        for _ in range(3):
            outbox.record([make_alert()], now_ms=NOW)
            sender.wake()
        await wait_until(lambda: statuses(outbox) == ["delivered"])
        outbox.record([make_alert()], now_ms=NOW)
        sender.wake()
        await asyncio.sleep(0.05)
    assert len(http.requests) == 1


async def test_unparseable_url_is_a_config_error_and_not_retried(outbox, http, caplog):
    """A URL Apprise cannot load closes the delivery as config_error after zero attempts."""
    caplog.set_level(logging.WARNING)
    outbox.record([make_alert(targets=("phone",))], now_ms=NOW)
    async with Sender(
        SQLiteAlertStore(outbox, owned=False), {"phone": ["tgram://not-a-bot-token"]}, **FAST
    ) as sender:
        await wait_until(all_closed(outbox))
    [record] = outbox.recent()
    [delivery] = record.deliveries
    assert (record.status, delivery.status, delivery.attempts) == ("failed", "config_error", 0)
    assert "tgram://***" in (delivery.last_error or "")
    assert sender.stats.config_errors == 1
    assert "ALERT [warning] KXTEST-1 spread 1c: spread is 1c on KXTEST-1" in caplog.messages


async def test_unknown_target_is_a_config_error(outbox, http):
    """A target name missing from the configuration is config_error 'unknown target'."""
    outbox.record([make_alert(targets=("hook", "pager"))], now_ms=NOW)
    async with Sender(over(outbox), {"hook": [http.url]}, **FAST):
        await wait_until(all_closed(outbox))
    deliveries = {d.target: d for d in outbox.recent()[0].deliveries}
    assert deliveries["hook"].status == DeliveryStatus.DELIVERED
    assert deliveries["pager"].status == DeliveryStatus.CONFIG_ERROR
    assert deliveries["pager"].last_error == "unknown target 'pager'"
    assert outbox.recent()[0].status == "partial"


async def test_updated_targets_apply_to_open_deliveries(outbox, http):
    """update_targets() (rules.yaml reload) is used for deliveries still being retried."""
    outbox.record([make_alert()], now_ms=NOW)
    async with Sender(
        SQLiteAlertStore(outbox, owned=False), {"hook": ["json://127.0.0.1:1/"]}, **FAST
    ) as sender:
        await wait_until(lambda: sender.stats.retried >= 1)
        sender.update_targets({"hook": http.url})
        await wait_until(lambda: statuses(outbox) == ["delivered"])
    assert len(http.delivered) == 1


async def test_delivery_is_given_up_after_a_day(outbox, http):
    """A delivery still failing 24 h after the alert was recorded becomes failed."""
    http.statuses[:] = [503]
    outbox.record([make_alert()], now_ms=NOW)

    def next_day() -> float:
        return time.time() + 25 * 3600

    async with Sender(
        SQLiteAlertStore(outbox, owned=False), {"hook": [http.url]}, **FAST, clock=next_day
    ) as sender:
        await wait_until(all_closed(outbox))
    [delivery] = outbox.recent()[0].deliveries
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert sender.stats.failed == 1
    assert len(http.requests) == 1


async def test_partially_delivered_target_is_retried_only_on_failed_urls(outbox, http):
    """A target with two URLs re-sends only to the URL that failed."""
    async with HttpRecorder(statuses=[500]) as flaky:
        targets = {"hook": [http.url, flaky.url]}
        outbox.record([make_alert()], now_ms=NOW)
        async with Sender(over(outbox), targets, **FAST):
            await wait_until(lambda: statuses(outbox) == ["delivered"])
        assert [r.status for r in flaky.requests] == [500, 200]
    assert len(http.requests) == 1


# Coalescing


async def test_alerts_due_together_go_as_one_message(outbox, http):
    """Three alerts due for one target are one message titled '3 alerts'."""
    outbox.record([make_alert(1), make_alert(2), make_alert(3, severity="critical")], now_ms=NOW)
    async with Sender(over(outbox), {"hook": [http.url]}, **FAST):
        await wait_until(lambda: statuses(outbox) == ["delivered"] * 3)
    [request] = http.requests
    assert request.payload["title"] == "3 alerts"
    assert request.payload["type"] == "failure"
    for n in (1, 2, 3):
        assert f"spread is 1c on KXTEST-{n}" in request.payload["message"]


async def test_burst_within_the_window_is_coalesced_after_the_first_message(outbox, http):
    """The first alert goes at once; the burst after it waits out the window as one message."""
    async with Sender(
        SQLiteAlertStore(outbox, owned=False),
        {"hook": [http.url]},
        **{**FAST, "coalesce_window": 0.3},
    ) as s:
        outbox.record([make_alert(1)], now_ms=NOW)
        s.wake()
        await wait_until(lambda: len(http.requests) == 1)
        outbox.record([make_alert(2)], now_ms=NOW)
        s.wake()
        outbox.record([make_alert(3)], now_ms=NOW)
        s.wake()
        await wait_until(lambda: statuses(outbox) == ["delivered"] * 3)
    assert [r.payload["title"] for r in http.requests] == ["KXTEST-1 spread 1c", "2 alerts"]


def test_compose_message_of_one_alert_keeps_its_text():
    """A single alert is sent with its own title and body and its severity's notify type."""
    outbox_row = _pending(severity="info")
    assert compose_message([outbox_row]) == ("KXTEST-1 spread 1c", "body", "info")


def _pending(**kw: Any) -> Any:
    from watcher.notify.outbox import PendingDelivery

    fields: dict[str, Any] = {
        "alert_id": 1, "target": "hook", "attempts": 0, "next_attempt_ms": NOW,
        "created_ms": NOW, "key": "k", "rule": "r", "market_ticker": "KXTEST-1",
        "severity": "warning", "title": "KXTEST-1 spread 1c", "body": "body",
    }  # fmt: skip
    fields.update(kw)
    return PendingDelivery(**fields)


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (100, 60.0), (10_000, 60.0)],
)
def test_retry_delay_doubles_from_two_seconds_up_to_the_cap(attempts, expected):
    """Backoff is 2 s, 4 s, 8 s ... and never more than max_backoff (a retry within a minute)."""
    assert retry_delay(attempts, initial=2.0, maximum=60.0) == expected


# Secrets


SECRET_URL = "json://user:secret@127.0.0.1:{port}/?+X-Api-Key=topsecret"


async def test_url_credentials_never_appear_in_any_output(outbox, http, caplog):
    """Password and header secrets stay out of logs, last_error, reprs and notify-test output."""
    caplog.set_level(logging.DEBUG)
    http.statuses[:] = [500]
    url = SECRET_URL.format(port=http.port)
    targets = {"hook": [url], "broken": [url.replace("json://", "jsn://")]}
    outbox.record([make_alert(targets=("hook", "broken"))], now_ms=NOW)
    async with Sender(over(outbox), targets, **FAST) as sender:
        await wait_until(all_closed(outbox))
        outputs = [repr(sender), repr(outbox)]
    results = await send_test(targets)
    outputs += [str(r) for r in results] + [repr(r) for r in results]
    outputs += [*validate_targets({"broken": targets["broken"]}), mask_url(url)]
    outputs += [str(d.last_error) for d in outbox.recent()[0].deliveries]
    outputs += [caplog.text]
    # The URL was really used: the server saw the credentials.
    assert http.requests[0].headers["x-api-key"] == "topsecret"
    auth = base64.b64decode(http.requests[0].headers["authorization"].split()[1])
    assert auth == b"user:secret"
    assert "500" in outputs[-2] or "500" in outputs[-3]
    for text in outputs:
        assert "secret" not in text, text


# notify-test and validation


async def test_send_test_reports_each_service_result(http):
    """notify-test sends to every URL and reports delivered, failed and config errors."""
    http.statuses[:] = [500]
    targets = {"a": [http.url], "b": [http.url, "tgram://nope"]}
    results = await send_test(targets)
    assert [(r.target, r.status) for r in results] == [
        ("a", SendStatus.FAILED), ("b", SendStatus.DELIVERED), ("b", SendStatus.CONFIG_ERROR),
    ]  # fmt: skip
    assert results[1].service == "JSON"
    assert "watcher test alert" in {r.payload["title"] for r in http.requests}
    only_b = await send_test(targets, "b")
    assert [r.target for r in only_b] == ["b", "b"]
    [unknown] = await send_test(targets, "nobody")
    assert (unknown.status, unknown.detail) == (SendStatus.CONFIG_ERROR, "unknown target")


# The sender over the port: an AlertStore and the in-repo FakeNotifier (no network)


@pytest.fixture
async def store(tmp_path):
    from watcher.store import open_backend

    alert_store = await open_backend(tmp_path / "watcher.db").alert_store()
    yield alert_store
    await alert_store.close()


async def test_sender_retries_a_scripted_failure_through_the_fake_notifier(store):
    """A FAILED outcome is retried; the next DELIVERED one closes the row with 2 attempts."""
    from watcher.notify.fake import FakeNotifier

    notifier = FakeNotifier({"json://hook": [SendStatus.FAILED, SendStatus.DELIVERED]})
    await store.record([make_alert()], now_ms=NOW)
    async with Sender(store, {"hook": "json://hook"}, notifier=notifier, **FAST) as sender:
        sender.wake()
        async with asyncio.timeout(WAIT):
            while await store.next_due_ms() is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    [record] = await store.recent()
    assert [(d.status, d.attempts) for d in record.deliveries] == [(DeliveryStatus.DELIVERED, 2)]
    assert [m.status for m in notifier.messages_to("json://hook")] == [
        SendStatus.FAILED,
        SendStatus.DELIVERED,
    ]
    assert notifier.sent[-1].title == make_alert().title


async def test_sender_marks_an_unloadable_url_as_config_error_without_sending(store):
    """A URL the notifier cannot load is a config_error: nothing is sent, never retried."""
    from watcher.notify.fake import FakeNotifier

    notifier = FakeNotifier(unloadable=["bad://x"])
    await store.record([make_alert()], now_ms=NOW)
    async with Sender(store, {"hook": "bad://x"}, notifier=notifier, **FAST) as sender:
        sender.wake()
        async with asyncio.timeout(WAIT):
            while await store.next_due_ms() is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
    [record] = await store.recent()
    assert record.deliveries[0].status == DeliveryStatus.CONFIG_ERROR
    assert notifier.sent == []
