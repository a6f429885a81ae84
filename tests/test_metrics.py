"""Metrics: the scrape-time collector, the message-age histogram, /metrics and /healthz over HTTP.

Stats sources are the components' own plain dataclasses (ClientStats, WriterStats, SenderStats)
filled with known values; the endpoint is scraped over real loopback HTTP with httpx.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path
from types import MappingProxyType

import httpx
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import watcher.ops.metrics
import watcher.store.queries
from tests.conftest import FIXTURES, MS
from watcher.domain.alert import Alert
from watcher.errors import ConfigError
from watcher.kalshi.client import ClientStats
from watcher.kalshi.messages import decode_message
from watcher.notify.outbox import OPEN_STATUSES, Outbox
from watcher.notify.sender import SenderStats
from watcher.ops.metrics import AGE_BUCKETS, Metrics, Sources, bind_service, open_deliveries
from watcher.ops.server import Health, MetricsServer, feed_health, store_health
from watcher.settings import ENV_VARS
from watcher.store.writer import WriterStats

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse an exposition (failing on invalid syntax) into ``(name, labels) → value``."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def names(text: str) -> set[str]:
    return {name for name, _ in samples(text)}


def client_stats() -> ClientStats:
    return ClientStats(
        messages=15,
        by_type={"ticker": 10, "trade": 4, "subscribed": 1},
        decode_errors=2,
        unknown=3,
        sequence_gaps=1,
        command_errors=0,
        connects=3,
        reconnects=2,
        backfilled_trades=5,
    )


def writer_stats() -> WriterStats:
    return WriterStats(
        rows_written=MappingProxyType({"tickers": 9, "trades": 4}),
        batches=3,
        queue_depth=7,
        errors=1,
        rejected=0,
        last_flush_ms=1_700_000_000_000,
    )


async def no_pending() -> int:
    return 0


def bind_all(metrics: Metrics, *, connected: bool = True) -> None:
    bind_service(
        metrics,
        client_stats=client_stats,
        feed_connected=lambda: connected,
        last_message_at=lambda: 100.0,
        store_stats=writer_stats,
        feed_queue_depth=lambda: 12,
        outbox_pending=no_pending,
        alerts_fired=lambda: 6,
        alerts_suppressed=lambda: 1,
        sender_stats=lambda: SenderStats(sent=4, failed=1, retried=2, config_errors=1),
    )


@pytest.fixture
async def served():
    """A Metrics bound to known stats, served on a free loopback port, and an httpx client."""
    metrics = Metrics(monotonic=lambda: 130.0)
    bind_all(metrics)
    async with (
        MetricsServer(metrics, port=0, is_healthy=lambda: True) as server,
        httpx.AsyncClient(base_url=server.url, timeout=2000 * MS) as http,
    ):
        yield metrics, server, http


# /metrics over HTTP


async def test_metrics_page_is_prometheus_text_with_the_library_content_type(served):
    """/metrics answers 200 with prometheus_client's text content type and parseable text."""
    _, _, http = served
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    assert ("watcher_feed_messages_total", frozenset({("type", "ticker")})) in samples(
        response.text
    )


async def test_feed_counters_come_from_the_client_stats(served):
    """Messages by type, decode errors, unknown frames, gaps and reconnects mirror ClientStats."""
    _, _, http = served
    text = (await http.get("/metrics")).text
    assert value(text, "watcher_feed_messages_total", type="ticker") == 10
    assert value(text, "watcher_feed_messages_total", type="trade") == 4
    assert value(text, "watcher_feed_decode_errors_total") == 2
    assert value(text, "watcher_feed_unknown_frames_total") == 3
    assert value(text, "watcher_feed_sequence_gaps_total") == 1
    assert value(text, "watcher_feed_reconnects_total") == 2
    assert value(text, "watcher_feed_backfilled_trades_total") == 5
    assert value(text, "watcher_feed_connected") == 1
    assert value(text, "watcher_feed_last_message_seconds") == 30.0


async def test_store_and_queue_metrics_come_from_the_writer_stats_and_queues(served):
    """Ticks stored, rows by table and the three queue depths are reported."""
    _, _, http = served
    text = (await http.get("/metrics")).text
    assert value(text, "watcher_ticks_stored_total") == 9
    assert value(text, "watcher_store_rows_written_total", table="trades") == 4
    assert value(text, "watcher_store_write_errors_total") == 1
    assert value(text, "watcher_queue_depth", queue="feed") == 12
    assert value(text, "watcher_queue_depth", queue="store") == 7
    assert value(text, "watcher_queue_depth", queue="outbox") == 0


async def test_alert_counters_come_from_the_pipeline_and_sender(served):
    """Alerts fired, suppressed, sent and failed are reported from their sources."""
    _, _, http = served
    text = (await http.get("/metrics")).text
    assert value(text, "watcher_alerts_fired_total") == 6
    assert value(text, "watcher_alerts_suppressed_total") == 1
    assert value(text, "watcher_alerts_sent_total") == 4
    assert value(text, "watcher_alerts_failed_total") == 1
    assert value(text, "watcher_alert_retries_total") == 2
    assert value(text, "watcher_alert_config_errors_total") == 1


async def test_each_scrape_reads_the_current_values(served):
    """Counters are read at scrape time, so a later scrape sees later values."""
    metrics, _, http = served
    stats = client_stats()
    metrics.sources = Sources(client_stats=lambda: stats)
    before = (await http.get("/metrics")).text
    stats.by_type["ticker"] += 5
    after = (await http.get("/metrics")).text
    assert value(before, "watcher_feed_messages_total", type="ticker") == 10
    assert value(after, "watcher_feed_messages_total", type="ticker") == 15


async def test_head_request_gets_headers_without_a_body(served):
    """HEAD /metrics answers 200 with the length of the page but no body."""
    _, _, http = served
    response = await http.head("/metrics")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


async def test_query_strings_are_ignored(served):
    """/metrics?x=1 is still /metrics."""
    _, _, http = served
    assert (await http.get("/metrics?debug=1")).status_code == 200


async def test_unknown_paths_are_not_found(served):
    """Any path but /metrics and /healthz answers 404."""
    _, _, http = served
    assert (await http.get("/")).status_code == 404
    assert (await http.get("/metrics/extra")).status_code == 404


async def test_other_methods_are_not_allowed(served):
    """POST /metrics answers 405."""
    _, _, http = served
    assert (await http.post("/metrics", content=b"x")).status_code == 405


async def test_a_malformed_request_gets_400(served):
    """A request line that is not HTTP answers 400 and closes the connection."""
    _, server, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"hello there\r\n\r\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), timeout=2000 * MS)
    writer.close()
    await writer.wait_closed()
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")


async def test_a_failing_source_fails_the_scrape_with_500_and_the_server_keeps_serving(served):
    """A source that raises makes /metrics answer 500; the next scrape works again."""
    metrics, _, http = served
    good = metrics.sources

    def broken() -> ClientStats:
        raise RuntimeError("stats unavailable")

    metrics.sources = Sources(client_stats=broken)
    failed = await http.get("/metrics")
    metrics.sources = good
    assert failed.status_code == 500
    assert "stats unavailable" in failed.text
    assert (await http.get("/metrics")).status_code == 200


async def test_a_failing_outbox_count_only_drops_the_outbox_depth(served, caplog):
    """outbox_pending raising is logged and leaves only that sample out of the scrape."""
    metrics, _, http = served

    async def broken() -> int:
        raise OSError("database is locked")

    metrics.sources = dataclasses.replace(metrics.sources, outbox_pending=broken)
    text = (await http.get("/metrics")).text
    assert value(text, "watcher_queue_depth", queue="outbox") is None
    assert value(text, "watcher_queue_depth", queue="feed") == 12
    assert "cannot count pending deliveries: database is locked" in caplog.text


# /healthz


async def test_healthz_is_200_ok_while_healthy_and_503_with_the_reason_otherwise():
    """/healthz follows is_healthy() on every request and says why it is unhealthy."""
    state = {"health": Health(True)}
    async with (
        MetricsServer(Metrics(), port=0, is_healthy=lambda: state["health"]) as server,
        httpx.AsyncClient(base_url=server.url, timeout=2000 * MS) as http,
    ):
        live = await http.get("/healthz")
        state["health"] = Health(False, "feed not connected")
        down = await http.get("/healthz")
    assert (live.status_code, live.text) == (200, "ok\n")
    assert (down.status_code, down.text) == (503, "feed not connected\n")


async def test_healthz_accepts_a_plain_boolean():
    """is_healthy may return a bool: False answers 503."""
    async with (
        MetricsServer(Metrics(), port=0, is_healthy=lambda: False) as server,
        httpx.AsyncClient(base_url=server.url, timeout=2000 * MS) as http,
    ):
        response = await http.get("/healthz")
    assert response.status_code == 503


async def test_healthz_is_503_when_the_health_check_raises():
    """A health check that raises counts as unhealthy, never as a crash."""

    def broken() -> bool:
        raise RuntimeError("no client yet")

    async with (
        MetricsServer(Metrics(), port=0, is_healthy=broken) as server,
        httpx.AsyncClient(base_url=server.url, timeout=2000 * MS) as http,
    ):
        response = await http.get("/healthz")
    assert response.status_code == 503
    assert "no client yet" in response.text


@pytest.mark.parametrize(
    ("connected", "last", "max_silence", "ok", "reason"),
    [
        (True, 95.0, None, True, "ok"),
        (True, None, 60.0, True, "ok"),
        (True, 50.0, 60.0, True, "ok"),
        (True, 10.0, 60.0, False, "no frame for 90 s (limit 60 s)"),
        (False, 99.0, None, False, "feed not connected"),
        (False, None, 60.0, False, "feed not connected"),
    ],
)
def test_feed_health_truth_table(connected, last, max_silence, ok, reason):
    """The feed is live while connected and, if a limit is set, not silent for longer."""
    health = feed_health(
        connected=connected, last_message_at=last, now=100.0, max_silence=max_silence
    )
    assert health == Health(ok, reason)


# Server lifecycle


async def test_server_listens_on_loopback_by_default_and_reports_the_picked_port():
    """Port 0 picks a free port; .port and .url name it; the default host is 127.0.0.1."""
    async with MetricsServer(Metrics(), port=0, is_healthy=lambda: True) as server:
        assert server.host == "127.0.0.1"
        assert server.port != 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert "serving" in repr(server)
    assert "stopped" in repr(server)


async def test_a_port_in_use_is_a_config_error_naming_the_address():
    """Binding a busy port raises ConfigError with the address, not a bare OSError."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = MetricsServer(Metrics(), port=port, is_healthy=lambda: True)
        with pytest.raises(ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            await server.start()


async def test_close_ends_a_connection_that_never_sends_a_request():
    """Shutting down does not wait for an idle client's read timeout."""
    async with MetricsServer(Metrics(), port=0, is_healthy=lambda: True) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(20 * MS)  # let the server accept it
    assert await asyncio.wait_for(reader.read(), timeout=2000 * MS) == b""
    writer.close()
    await writer.wait_closed()


async def test_two_metrics_in_one_process_do_not_collide():
    """Each Metrics has its own registry; neither touches the global one."""
    first, second = Metrics(), Metrics()
    bind_service(first, alerts_fired=lambda: 1)
    bind_service(second, alerts_fired=lambda: 2)
    async with (
        MetricsServer(first, port=0, is_healthy=lambda: True) as one,
        MetricsServer(second, port=0, is_healthy=lambda: True) as two,
        httpx.AsyncClient(timeout=2000 * MS) as http,
    ):
        text_one = (await http.get(f"{one.url}/metrics")).text
        text_two = (await http.get(f"{two.url}/metrics")).text
    assert value(text_one, "watcher_alerts_fired_total") == 1
    assert value(text_two, "watcher_alerts_fired_total") == 2
    assert first.registry is not second.registry
    assert b"watcher_" not in generate_latest(REGISTRY)


# Collector without a server


def test_unbound_sources_are_left_out_rather_than_reported_as_zero():
    """A Metrics with no sources exports only the age histogram and process metrics."""
    text = Metrics().render().decode()
    watcher_names = {name for name in names(text) if name.startswith("watcher_")}
    assert watcher_names == {
        "watcher_message_age_seconds_bucket",
        "watcher_message_age_seconds_count",
        "watcher_message_age_seconds_sum",
    }
    assert "process_resident_memory_bytes" in names(text)


def test_process_metrics_can_be_turned_off():
    """process=False exports no process_* metrics."""
    text = Metrics(process=False).render().decode()
    assert not any(name.startswith("process_") for name in names(text))


def test_a_source_returning_none_leaves_its_families_out():
    """The sender starts later than the service: a None stats object is simply skipped."""
    metrics = Metrics(process=False)
    bind_service(metrics, sender_stats=lambda: None, alerts_fired=lambda: 0)
    text = metrics.render().decode()
    assert value(text, "watcher_alerts_fired_total") == 0
    assert value(text, "watcher_alerts_sent_total") is None


def test_message_ages_fall_into_cumulative_buckets_in_seconds():
    """Ages are histogrammed in seconds with inclusive upper bounds and a running sum."""
    metrics = Metrics(process=False, age_buckets=(0.1, 1.0))
    for age_ms in (50, 100, 400, 5000):
        metrics.observe_message_age(1_000_000, 1_000_000 + age_ms)
    text = metrics.render().decode()
    assert value(text, "watcher_message_age_seconds_bucket", le="0.1") == 2
    assert value(text, "watcher_message_age_seconds_bucket", le="1.0") == 3
    assert value(text, "watcher_message_age_seconds_bucket", le="+Inf") == 4
    assert value(text, "watcher_message_age_seconds_count") == 4
    assert value(text, "watcher_message_age_seconds_sum") == pytest.approx(5.55)
    assert value(text, "watcher_message_age_last_seconds") == 5.0


def test_a_negative_age_counts_as_zero_but_the_last_age_shows_the_skew():
    """A clock behind Kalshi's gives a negative age: bucketed as 0, reported as is."""
    metrics = Metrics(process=False)
    metrics.observe_message_age(10_000, 8_500)
    text = metrics.render().decode()
    assert value(text, "watcher_message_age_seconds_bucket", le=repr(AGE_BUCKETS[0])) == 1
    assert value(text, "watcher_message_age_seconds_sum") == 0
    assert value(text, "watcher_message_age_last_seconds") == -1.5


def test_observe_event_records_ticker_and_trade_frames_only():
    """Live ticker and trade frames are aged from ts_ms; other frames are ignored."""
    metrics = Metrics(process=False)
    kalshi = FIXTURES / "kalshi"
    ticker = decode_message((kalshi / "ticker.json").read_bytes())
    trade = decode_message((kalshi / "trade.json").read_bytes())
    other = decode_message((kalshi / "subscribed.json").read_bytes())
    for event in (ticker, trade, other):
        metrics.observe_event(event, 1669149841000 + 250)  # both frames have ts_ms ...41000
    text = metrics.render().decode()
    assert value(text, "watcher_message_age_seconds_count") == 2
    assert value(text, "watcher_message_age_seconds_sum") == pytest.approx(0.5)


async def test_scheduler_job_runs_and_failures_are_counted_by_job():
    """A scheduler watched by Metrics counts each job's runs and failures."""
    metrics = Metrics(process=False)
    done = asyncio.Event()
    finished: list[str] = []

    async def ok() -> None:
        pass

    async def fails() -> None:
        raise RuntimeError("job broke")

    def note(event) -> None:
        finished.append(event.job_id)
        if len(finished) == 3:
            done.set()

    scheduler = AsyncIOScheduler()
    metrics.watch_scheduler(scheduler)
    scheduler.add_listener(note, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.add_job(ok, id="refresh-a")
    scheduler.add_job(ok, id="refresh-b")
    scheduler.add_job(fails, id="digest")
    scheduler.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=2000 * MS)
    finally:
        scheduler.shutdown(wait=False)
    metrics.record_job("retention", missed=True)
    text = metrics.render().decode()
    assert value(text, "watcher_job_runs_total", job="digest") == 1
    assert value(text, "watcher_job_failures_total", job="digest") == 1
    assert value(text, "watcher_job_failures_total", job="refresh-a") == 0
    assert value(text, "watcher_job_misses_total", job="retention") == 1
    assert value(text, "watcher_job_runs_total", job="retention") == 0


async def test_open_deliveries_counts_pending_deliveries_in_the_database(tmp_path):
    """The outbox depth is the number of open delivery rows, read with its own connection."""
    db = tmp_path / "watcher.db"
    with Outbox(db) as outbox:
        alert = Alert(
            key="k1",
            rule="spread",
            market_ticker="KXTEST",
            severity="info",
            title="t",
            body="b",
            targets=("phone", "team"),
            at_ms=1,
        )
        outbox.record([alert], now_ms=1)
        assert await open_deliveries(db) == 2


def test_open_deliveries_uses_the_outbox_open_statuses():
    """The SQL in open_deliveries names exactly the outbox's open statuses."""
    source = Path(watcher.store.queries.__file__).read_text()
    listed = ", ".join(f"'{status}'" for status in OPEN_STATUSES)
    assert f"status IN ({listed})" in source


def test_repr_names_the_bound_sources():
    """repr(Metrics) says which sources are bound."""
    metrics = Metrics(process=False)
    bind_service(metrics, alerts_fired=lambda: 0)
    assert "alerts_fired" in repr(metrics)
    assert "client_stats" not in repr(metrics)


def test_every_name_in_all_exists():
    """Every name in watcher.ops.metrics.__all__ exists."""
    assert all(hasattr(watcher.ops.metrics, name) for name in watcher.ops.metrics.__all__)


# Deployment files


def unit_directives() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in (DEPLOY / "watcher.service").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, setting = line.partition("=")
            directives.setdefault(key, []).append(setting)
    return directives


def test_systemd_unit_restarts_on_failure_but_not_after_an_auth_refusal():
    """The unit restarts on failure after 5 s, never on exit 3, and gives shutdown time."""
    unit = unit_directives()
    assert unit["Type"] == ["simple"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartSec"] == ["5"]
    assert "3" in unit["RestartPreventExitStatus"][0].split()
    assert unit["KillSignal"] == ["SIGTERM"]
    assert int(unit["TimeoutStopSec"][0]) >= 20
    assert unit["EnvironmentFile"] == ["/etc/watcher/watcher.env"]
    assert "start --metrics-port 9464" in unit["ExecStart"][0]


def test_systemd_unit_is_hardened():
    """A dedicated user, no new privileges, a read-only system but the data dir, private /tmp."""
    unit = unit_directives()
    assert unit["User"] == ["watcher"]
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ReadWritePaths"] == [unit["WorkingDirectory"][0]]
    assert unit["PrivateTmp"] == ["yes"]
    assert unit["UMask"] == ["0077"]


def test_env_example_lists_every_variable_and_no_secret_values():
    """Every variable watcher reads is in the example; secret ones are empty."""
    text = (DEPLOY / "watcher.env.example").read_text()
    assigned: dict[str, str] = {}
    for line in text.splitlines():
        line = line.lstrip("# ").strip()
        if "=" in line and line.split("=", 1)[0].isupper():
            key, _, setting = line.partition("=")
            assigned.setdefault(key, setting)
    assert set(ENV_VARS) <= set(assigned)
    secrets = ("KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY_PASSWORD", "WATCHER_TELEGRAM_URL")
    for secret in (*secrets, "WATCHER_WEB_TOKEN", "WATCHER_TELEGRAM_BOT_TOKEN"):
        assert assigned[secret] == ""


def queued_stats(queued: int, last_flush_ms: int | None, errors: int = 0) -> WriterStats:
    return WriterStats(
        rows_written={}, batches=1, queue_depth=queued, errors=errors, rejected=0,
        last_flush_ms=last_flush_ms,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("stats", "feed", "expected"),
    [
        (queued_stats(0, None), Health(True), Health(True)),
        (queued_stats(500, 95_000), Health(True), Health(True)),
        (
            queued_stats(500, 80_000, errors=3),
            Health(True),
            Health(False, "store behind: 500 rows queued, last write 20 s ago, 3 failed attempts"),
        ),
        (queued_stats(7, None), Health(True), Health(True)),
        (
            queued_stats(500, 80_000),
            Health(False, "feed not connected"),
            Health(False, "feed not connected"),
        ),
    ],
)
def test_healthz_says_the_store_is_behind_when_rows_wait_and_nothing_commits(stats, feed, expected):
    """/healthz reports the store behind (rows queued, no commit for 10 s) while the feed is
    fine; a feed problem is reported first; a queue that keeps committing, or a writer that
    has not committed yet (starting), is healthy."""
    assert store_health(stats, now_ms=100_000, feed=feed) == expected
