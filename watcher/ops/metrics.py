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
    role{role=active|standby}      (1 for this instance's role)

plus the standard ``process_*`` metrics (CPU, memory, open files) on Linux. A family whose
source is not bound (see :func:`bind_service`) is left out rather than reported as zero.

``prometheus_client`` (~1.3 MB resident) is imported only when the server starts
(``--metrics-port``) or metrics are rendered, though the service always keeps a :class:`Metrics`.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    "Metrics",
    "Sources",
    "bind_service",
    "open_deliveries",
]

logger = logging.getLogger("watcher.metrics")

#: Upper bounds of the message-age histogram, in seconds.
AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
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
    role: Callable[[], str] | None = None  # "active" or "standby"


async def open_deliveries(location: str | Path) -> int:
    """Count deliveries still to send (``pending`` or ``retrying``) through a read model.

    Opens the ``--db`` location's own read model for the one query (a scrape is rare), so it
    never waits for the writer or the outbox and leaves nothing open between scrapes.
    """
    from watcher.store.backend import open_backend

    read_model = await open_backend(location).read_model()
    try:
        return await read_model.open_deliveries()
    finally:
        await read_model.close()


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
        if src.role is not None:
            roles = dict.fromkeys(("active", "standby"), 0) | {src.role(): 1}
            yield _labelled("role", "1 for this instance's role", "role", roles, gauge=True)
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


def bind_service(metrics: Metrics, **sources: Any) -> None:
    """Tell ``metrics`` where the service keeps each value: keyword arguments named as the
    fields of :class:`Sources` (an unknown name is a TypeError).

    Sources are callables, so objects created later (the sender starts with the pipeline) can
    be read through them: ``sender_stats=lambda: p.sender.stats if p.sender else None``.
    """
    metrics.sources = Sources(**sources)
