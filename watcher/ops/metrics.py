"""Prometheus metrics and the ``/metrics`` + ``/healthz`` server of ``--metrics-port``.

Cost model: the hot path pays nothing for metrics. Counters are the ones the components keep
anyway (``KalshiWebSocketClient.stats``, ``StoreWriter.stats``, ``Sender.stats``,
``Pipeline.alerts_fired``); a custom collector reads them through callables when Prometheus
scrapes. The one per-message cost is the message-age histogram: one ``bisect`` and two integer
additions, done in the pipeline task (never the receive loop) and without locks, because the
collector, the server and the pipeline all run on the event loop.

Exposed (all names start with ``watcher_``; ``*_total`` are counters)::

    feed_messages_total{type}      feed_decode_errors_total    feed_unknown_frames_total
    feed_sequence_gaps_total       feed_command_errors_total   feed_reconnects_total
    feed_backfilled_trades_total   feed_connected              feed_last_message_seconds
    message_age_seconds (histogram of now − ts of ticker/trade)    message_age_last_seconds
    queue_depth{queue=feed|store|outbox}
    ticks_stored_total             store_rows_written_total{table}
    store_batches_total            store_write_errors_total    store_rejected_total
    alerts_fired_total             alerts_suppressed_total     alerts_sent_total
    alerts_failed_total            alert_retries_total         alert_config_errors_total
    job_runs_total{job}            job_failures_total{job}     job_misses_total{job}

plus the standard ``process_*`` metrics (CPU, memory, open files) on Linux. A family whose
source is not bound (see :func:`bind_service`) is left out rather than reported as zero.

``prometheus_client`` is imported only when the server starts (``--metrics-port``) or metrics
are rendered: the service always keeps a :class:`Metrics`, but without the server the library
would be ~1.3 MB of resident memory for nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import http
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher.errors import ConfigError
from watcher.kalshi import messages as m

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )

    from watcher.kalshi.client import ClientStats
    from watcher.notify.sender import SenderStats
    from watcher.store.writer import WriterStats

__all__ = [
    "AGE_BUCKETS",
    "DEFAULT_PORT",
    "Health",
    "Metrics",
    "MetricsServer",
    "Sources",
    "bind_service",
    "feed_health",
    "open_deliveries",
]

logger = logging.getLogger("watcher.metrics")

#: The port in the systemd unit and the README (Prometheus' exporter registry has no 9464 user).
DEFAULT_PORT = 9464
#: Upper bounds of the message-age histogram, in seconds.
AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_MAX_REQUEST_LINE = 8192
_MAX_HEADERS = 100
_JOB_KINDS = {
    "runs": "Scheduled job runs",
    "failures": "Scheduled job runs that raised",
    "misses": "Scheduled job runs skipped (later than misfire_grace_time)",
}


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the collector reads each value at scrape time; ``None`` leaves the family out.

    Every callable runs on the event loop during a scrape and must be cheap and non-blocking,
    except ``outbox_pending``, which is awaited (with a timeout) before each scrape.
    """

    client_stats: Callable[[], ClientStats | None] | None = None
    feed_connected: Callable[[], bool] | None = None
    last_message_at: Callable[[], float | None] | None = None  # time.monotonic() of last frame
    store_stats: Callable[[], WriterStats | None] | None = None
    feed_queue_depth: Callable[[], int] | None = None
    outbox_pending: Callable[[], Awaitable[int | None]] | None = None
    alerts_fired: Callable[[], int] | None = None
    alerts_suppressed: Callable[[], int] | None = None
    sender_stats: Callable[[], SenderStats | None] | None = None


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of ``/healthz``: 200 with ``reason`` when ``ok``, else 503 with it."""

    ok: bool
    reason: str = "ok"


def feed_health(
    *, connected: bool, last_message_at: float | None, now: float, max_silence: float | None = None
) -> Health:
    """Decide whether the feed is live (a pure function; times are ``time.monotonic()``).

    Args:
        connected: the WebSocket is open (the client's ping watchdog closes a dead one).
        last_message_at: when the last frame arrived, or None if none has.
        now: the current monotonic time.
        max_silence: seconds without a frame after which the feed counts as stale; None never.

    Returns:
        ``Health(True)`` or ``Health(False, reason)``.
    """
    if not connected:
        return Health(False, "feed not connected")
    if max_silence is not None and last_message_at is not None:
        silent = now - last_message_at
        if silent > max_silence:
            return Health(False, f"no frame for {silent:.0f} s (limit {max_silence:g} s)")
    return Health(True)


def open_deliveries(db_path: str | Path) -> int:
    """Count deliveries still to send (``pending`` or ``retrying``); blocking, use a thread.

    Opens its own read-only connection, so it never waits for the writer or the outbox.
    """
    uri = f"{Path(db_path).resolve().as_uri()}?mode=ro"
    # The statuses of watcher.notify.outbox.OPEN_STATUSES (not imported: it pulls in Apprise).
    sql = "SELECT COUNT(*) FROM alert_deliveries WHERE status IN ('pending', 'retrying')"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as conn:
        return int(conn.execute(sql).fetchone()[0])


class _AgeHistogram:
    """A lock-free histogram of integer milliseconds, exported in seconds."""

    __slots__ = ("bounds", "bounds_ms", "counts", "sum_ms")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = sorted(bounds)
        self.bounds_ms = [round(b * 1000) for b in self.bounds]
        self.counts = [0] * (len(self.bounds) + 1)  # the last slot is +Inf
        self.sum_ms = 0

    def observe(self, age_ms: int) -> None:
        self.counts[bisect.bisect_left(self.bounds_ms, age_ms)] += 1
        self.sum_ms += age_ms

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        from prometheus_client.core import HistogramMetricFamily

        labels = [repr(float(b)) for b in self.bounds] + ["+Inf"]
        cumulative = itertools.accumulate(self.counts)
        buckets = list(zip(labels, cumulative, strict=True))
        return HistogramMetricFamily(name, documentation, buckets, self.sum_ms / 1000)


class _Collector:
    """Adapts :meth:`Metrics._collect` to the registry's collector protocol."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics._collect()


class Metrics:
    """Every watcher metric, in a registry of its own (never the global one).

    Recording (:meth:`observe_event`, :meth:`record_job`) needs no Prometheus code; the
    registry is made on first use of :attr:`registry` (by :meth:`render` or the server).

    Args:
        process: also export the ``process_*`` metrics of this process.
        age_buckets: upper bounds of the message-age histogram, in seconds.
        monotonic: the clock of ``last_message_at`` (tests patch it).
        refresh_timeout: seconds :meth:`refresh` waits for ``outbox_pending``.
    """

    def __init__(
        self,
        *,
        process: bool = True,
        age_buckets: Sequence[float] = AGE_BUCKETS,
        monotonic: Callable[[], float] = time.monotonic,
        refresh_timeout: float = 2.0,
    ) -> None:
        self._process = process
        self._registry: CollectorRegistry | None = None
        self.sources = Sources()
        self._monotonic = monotonic
        self.refresh_timeout = refresh_timeout
        self._age = _AgeHistogram(age_buckets)
        self._last_age_ms: int | None = None
        self._outbox_pending: int | None = None
        self._jobs: dict[str, dict[str, int]] = {}
        self._jobs_lock = threading.Lock()  # APScheduler may report from a worker thread

    def __repr__(self) -> str:
        bound = [f.name for f in fields(Sources) if getattr(self.sources, f.name) is not None]
        return f"<Metrics sources={bound} ages={sum(self._age.counts)} jobs={sorted(self._jobs)}>"

    # Public methods

    @property
    def registry(self) -> CollectorRegistry:
        """This instance's own registry (never the global one), made on first access."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry
            from prometheus_client.process_collector import ProcessCollector

            registry = CollectorRegistry()
            registry.register(_Collector(self))
            if self._process:
                ProcessCollector(registry=registry)
            self._registry = registry
        return self._registry

    def observe_message_age(self, ts_ms: int, now_ms: int) -> None:
        """Record ``now − ts`` of one message; a negative age (clock behind Kalshi) counts as 0."""
        age = now_ms - ts_ms
        self._last_age_ms = age
        self._age.observe(age if age > 0 else 0)

    def observe_event(self, event: object, now_ms: int) -> None:
        """Record the age of a live ``ticker`` or ``trade`` frame; ignore everything else.

        Call it from the pipeline task with the time it already took for the event. Trades
        recovered over REST after a gap (``LateTrade``) are deliberately not counted.
        """
        # Once per frame on the pipeline's path: two calls instead of four.
        kind = type(event)
        if kind is not m.Ticker and kind is not m.Trade:
            return
        msg = event.msg  # type: ignore[attr-defined]
        ts = msg.ts_ms
        if ts is None:
            ts = m.timestamp_ms(None, msg.ts, event.sending_ts_ms)  # type: ignore[attr-defined]
            if ts is None:
                return
        self.observe_message_age(ts, now_ms)

    def record_job(self, job_id: str, *, failed: bool = False, missed: bool = False) -> None:
        """Count one run (or miss) of a scheduled job; a failed run counts as a run too."""
        with self._jobs_lock:
            counts = self._jobs.setdefault(job_id, dict.fromkeys(_JOB_KINDS, 0))
            if missed:
                counts["misses"] += 1
                return
            counts["runs"] += 1
            if failed:
                counts["failures"] += 1

    def watch_scheduler(self, scheduler: Any) -> None:
        """Count runs, failures and misses of every job of an APScheduler 3.x scheduler."""
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

        def listener(event: Any) -> None:
            self.record_job(
                str(event.job_id),
                failed=event.code == EVENT_JOB_ERROR,
                missed=event.code == EVENT_JOB_MISSED,
            )

        scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    async def refresh(self) -> None:
        """Update the values that need I/O (``outbox_pending``); call before :meth:`render`.

        A source that fails or times out is logged; its family is left out of this scrape.
        """
        source = self.sources.outbox_pending
        if source is None:
            return
        self._outbox_pending = None
        try:
            async with asyncio.timeout(self.refresh_timeout):
                self._outbox_pending = await source()
        except Exception as exc:
            logger.warning("metrics: cannot count pending deliveries: %s", exc or type(exc))

    def render(self) -> bytes:
        """The Prometheus text exposition (format 0.0.4) of this registry."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    # Private methods

    def _collect(self) -> Iterator[Metric]:
        src = self.sources
        client = src.client_stats() if src.client_stats else None
        store = src.store_stats() if src.store_stats else None
        sender = src.sender_stats() if src.sender_stats else None
        if client is not None:
            yield _labelled("feed_messages", "Frames received, by type", "type", client.by_type)
            yield from _counters(_CLIENT_COUNTERS, client)
        yield from self._collect_feed_state()
        yield from self._collect_age()
        yield from self._collect_queues(store)
        if store is not None:
            rows = dict(store.rows_written)
            yield _counter("ticks_stored", "Ticker rows written to SQLite", rows.get("tickers", 0))
            yield _labelled("store_rows_written", "Rows written, by table", "table", rows)
            yield from _counters(_STORE_COUNTERS, store)
        if src.alerts_fired is not None:
            yield _counter("alerts_fired", "Alerts recorded by the rules", src.alerts_fired())
        if src.alerts_suppressed is not None:
            yield _counter(
                "alerts_suppressed", "Alerts held by quiet hours", src.alerts_suppressed()
            )
        if sender is not None:
            yield from _counters(_SENDER_COUNTERS, sender)
        yield from self._collect_jobs()

    def _collect_feed_state(self) -> Iterator[Metric]:
        src = self.sources
        if src.feed_connected is not None:
            connected = 1 if src.feed_connected() else 0
            yield _gauge("feed_connected", "1 while the feed's WebSocket is open", connected)
        last = src.last_message_at() if src.last_message_at else None
        if last is not None:
            silence = max(0.0, self._monotonic() - last)
            yield _gauge("feed_last_message_seconds", "Seconds since the last frame", silence)

    def _collect_age(self) -> Iterator[Metric]:
        yield self._age.family(
            "watcher_message_age_seconds",
            "Receive time minus Kalshi's timestamp of ticker and trade frames (negative as 0)",
        )
        if self._last_age_ms is not None:
            yield _gauge(
                "message_age_last_seconds",
                "Age of the latest ticker or trade; negative: this host's clock is behind Kalshi's",
                self._last_age_ms / 1000,
            )

    def _collect_queues(self, store: WriterStats | None) -> Iterator[Metric]:
        src = self.sources
        depths = {
            "feed": src.feed_queue_depth() if src.feed_queue_depth else None,
            "store": store.queue_depth if store is not None else None,
            "outbox": self._outbox_pending if src.outbox_pending else None,
        }
        known = {name: depth for name, depth in depths.items() if depth is not None}
        if known:
            doc = "Items waiting: feed events, rows to store, alert deliveries to send"
            yield _labelled("queue_depth", doc, "queue", known, gauge=True)

    def _collect_jobs(self) -> Iterator[Metric]:
        with self._jobs_lock:
            jobs = {job: dict(counts) for job, counts in self._jobs.items()}
        if jobs:
            for kind, doc in _JOB_KINDS.items():
                counts = {job: kinds[kind] for job, kinds in jobs.items()}
                yield _labelled(f"job_{kind}", doc, "job", counts)


# (metric name without watcher_ and _total, help, attribute of the stats object)
_CLIENT_COUNTERS = (
    ("feed_decode_errors", "Frames that could not be decoded", "decode_errors"),
    ("feed_unknown_frames", "Frames of an unknown type", "unknown"),
    ("feed_sequence_gaps", "Sequence gaps detected (each one resubscribes)", "sequence_gaps"),
    ("feed_command_errors", "Error replies to subscription commands", "command_errors"),
    ("feed_reconnects", "Connections after the first one", "reconnects"),
    ("feed_backfilled_trades", "Trades recovered over REST after a gap", "backfilled_trades"),
)
_STORE_COUNTERS = (
    ("store_batches", "Write transactions committed", "batches"),
    ("store_write_errors", "Failed write attempts (each one retried)", "errors"),
    ("store_rejected", "Items that could not be converted to rows", "rejected"),
)
_SENDER_COUNTERS = (
    ("alerts_sent", "Deliveries (one alert to one target) accepted", "sent"),
    ("alerts_failed", "Deliveries given up after retries", "failed"),
    ("alert_retries", "Delivery attempts that failed and were retried", "retried"),
    ("alert_config_errors", "Deliveries to a target that cannot work", "config_errors"),
)


def _counters(table: Sequence[tuple[str, str, str]], stats: object) -> Iterator[Metric]:
    for name, doc, attribute in table:
        yield _counter(name, doc, getattr(stats, attribute))


def _labelled(
    name: str, doc: str, label: str, values: Mapping[str, float], *, gauge: bool = False
) -> Metric:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    family_type = GaugeMetricFamily if gauge else CounterMetricFamily
    family = family_type(f"watcher_{name}", doc, labels=[label])
    for key, value in sorted(dict(values).items()):
        family.add_metric([key], value)
    return family


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(f"watcher_{name}", documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(f"watcher_{name}", documentation, value=value)


def bind_service(
    metrics: Metrics,
    *,
    client_stats: Callable[[], ClientStats | None] | None = None,
    feed_connected: Callable[[], bool] | None = None,
    last_message_at: Callable[[], float | None] | None = None,
    store_stats: Callable[[], WriterStats | None] | None = None,
    feed_queue_depth: Callable[[], int] | None = None,
    outbox_pending: Callable[[], Awaitable[int | None]] | None = None,
    alerts_fired: Callable[[], int] | None = None,
    alerts_suppressed: Callable[[], int] | None = None,
    sender_stats: Callable[[], SenderStats | None] | None = None,
) -> None:
    """Tell ``metrics`` where the service keeps each value (see :class:`Sources`).

    Sources are callables, so objects created later (the sender starts with the pipeline) can
    be read through them: ``sender_stats=lambda: p.sender.stats if p.sender else None``.
    """
    metrics.sources = Sources(
        client_stats=client_stats,
        feed_connected=feed_connected,
        last_message_at=last_message_at,
        store_stats=store_stats,
        feed_queue_depth=feed_queue_depth,
        outbox_pending=outbox_pending,
        alerts_fired=alerts_fired,
        alerts_suppressed=alerts_suppressed,
        sender_stats=sender_stats,
    )


class MetricsServer:
    """A minimal asyncio HTTP server for ``/metrics`` and ``/healthz``; an async context manager.

    ``GET``/``HEAD /metrics`` answers the Prometheus text format; ``/healthz`` answers 200 ``ok``
    while ``is_healthy()`` is true (or a healthy :class:`Health`), else 503 with the reason.
    Anything else is 404 (405 for other methods). One request per connection.

    Args:
        metrics: what ``/metrics`` serves.
        host: the address to listen on; loopback by default (metrics are not secret, but not
            public either).
        port: the TCP port; 0 picks a free one (see :attr:`port`).
        is_healthy: the liveness test, called per request on the event loop.
        read_timeout: seconds a client has to send its request.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, no permission).
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        is_healthy: Callable[[], bool | Health],
        read_timeout: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.is_healthy = is_healthy
        self.read_timeout = read_timeout
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return f"<MetricsServer http://{self.host}:{self.port} {state}>"

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Public methods

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the OS when 0 was asked for)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen; log where."""
        # Import prometheus_client now rather than on the event loop during the first scrape.
        self.metrics.registry  # noqa: B018
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self._requested_port, limit=_MAX_REQUEST_LINE
            )
        except OSError as exc:
            where = f"{self.host}:{self._requested_port}"
            raise ConfigError(
                f"cannot serve metrics on {where}: {exc.strerror or exc}", file="--metrics-port"
            ) from exc
        logger.info("metrics on %s/metrics, health on %s/healthz", self.url, self.url)

    async def close(self) -> None:
        """Stop listening and end open connections (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    # Private methods

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                async with asyncio.timeout(self.read_timeout):
                    method, path = await _read_request(reader)
            except ValueError as exc:
                method, reply = "GET", _text(400, f"bad request: {exc}")
            else:
                reply = await self._route(method, path)
            writer.write(_response(*reply, head=method == "HEAD"))
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client went away or never sent a request
        except Exception:
            logger.exception("metrics server failed to answer a request")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if path not in ("/metrics", "/healthz"):
            return _text(404, f"not found: {path[:100]}")
        if method not in ("GET", "HEAD"):
            return _text(405, f"method not allowed: {method[:20]}")
        if path == "/healthz":
            return self._health()
        await self.metrics.refresh()
        from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

        try:
            return 200, CONTENT_TYPE_PLAIN_0_0_4, self.metrics.render()
        except Exception as exc:
            logger.exception("metrics collection failed: %s", exc)
            return _text(500, f"metrics collection failed: {exc}")

    def _health(self) -> tuple[int, str, bytes]:
        try:
            answer = self.is_healthy()
        except Exception as exc:
            logger.warning("health check raised: %r", exc)
            return _text(503, f"health check failed: {exc!r}")
        health = answer if isinstance(answer, Health) else Health(bool(answer), "unhealthy")
        return _text(200, "ok") if health.ok else _text(503, health.reason)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Parse ``METHOD TARGET HTTP/x.y`` and skip the headers; return ``(method, path)``."""
    line = (await reader.readline()).decode("latin-1").strip()  # ValueError if too long
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"malformed request line {line[:100]!r}")
    for _ in range(_MAX_HEADERS):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            return parts[0], parts[1].split("?", 1)[0]
    raise ValueError(f"more than {_MAX_HEADERS} headers")


def _text(status: int, text: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", f"{text}\n".encode()


def _response(status: int, content_type: str, body: bytes, *, head: bool = False) -> bytes:
    lines = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    )
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (b"" if head else body)
