"""Composition root: feed → queue → pipeline (state, rules, outbox) and store; lifecycle.

``watcher start`` builds a :class:`Service` from :class:`~watcher.settings.Settings` and runs it
until SIGINT/SIGTERM. The receive loop only decodes and enqueues; the pipeline task does the rest.
Shutdown is lossless: the feed unsubscribes and reads until Kalshi acknowledges (so every frame
sent before is in), the queue is drained, the store flushed, and a one-line summary is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from watcher.domain.positions import Portfolio
from watcher.domain.trades_file import load_positions
from watcher.errors import StorageError
from watcher.kalshi.auth import KalshiSigner
from watcher.kalshi.client import KalshiWebSocketClient
from watcher.kalshi.rest import KalshiRestClient
from watcher.notify.direct import send_direct
from watcher.ops.metrics import (
    Health,
    Metrics,
    MetricsServer,
    bind_service,
    feed_health,
    open_deliveries,
)
from watcher.rules import RulesConfig, load_rules
from watcher.service.jobs import Jobs
from watcher.service.keyless import KEYLESS_NOTICE, MarketPoller
from watcher.service.pipeline import CLOCK_INTERVAL, Pipeline
from watcher.service.reload import ConfigWatcher
from watcher.service.writeback import SettlementWriter
from watcher.settings import Settings
from watcher.store.writer import StoreWriter

if TYPE_CHECKING:
    from watcher.kalshi.sim.exchange import SimulatedExchange

__all__ = ["FEED_CHANNELS", "Endpoint", "Mode", "Service", "open_endpoint", "run_service"]

logger = logging.getLogger("watcher.app")

#: What the service subscribes for the watched markets (plus market_lifecycle_v2, global).
FEED_CHANNELS = ("ticker", "trade")
#: Decoded frames waiting for the pipeline; a full queue slows the reader (TCP backpressure).
FEED_QUEUE_SIZE = 1_000
#: At most one "cannot write the database" alert per this many seconds.
STORE_ALERT_EVERY = 900.0
#: How long a shutdown waits for the store to write what it holds.
STORE_CLOSE_GRACE = 2.0
SIM_KEY_ID = "watcher-simulator"

#: ``websocket``: Kalshi with the user's key; ``simulate``: the built-in simulator;
#: ``keyless``: no key, REST polling instead of the WebSocket.
Mode = Literal["websocket", "simulate", "keyless"]


@dataclass(frozen=True)
class Endpoint:
    """Where the service gets its data, and how it signs."""

    ws_url: str
    api_url: str
    signer: KalshiSigner | None
    mode: Mode = "websocket"


class Service:
    """The running watcher: one feed, one pipeline, one store writer, the scheduled jobs and
    the config watcher.

    In keyless mode there is no WebSocket client: the ``keyless-poll`` job fills the same
    queue from REST.

    Args:
        settings: resolved settings.
        portfolio: the positions loaded at start.
        rules: the rules loaded at start.
        endpoint: where and how to connect.
        client_options: extra keyword arguments for :class:`KalshiWebSocketClient` (tests).
        clock: Unix time in seconds.
        clock_interval: seconds between two rules-clock ticks.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        portfolio: Portfolio,
        rules: RulesConfig,
        endpoint: Endpoint,
        client_options: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        clock_interval: float = CLOCK_INTERVAL,
    ) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.clock = clock
        self.rest = KalshiRestClient(endpoint.api_url, signer=endpoint.signer)
        self.client: KalshiWebSocketClient | None = None
        if endpoint.mode != "keyless":
            self.client = KalshiWebSocketClient(
                url=endpoint.ws_url,
                signer=endpoint.signer,
                rest=self.rest,
                **(client_options or {}),
            )
        self.store = StoreWriter(settings.db_path, on_error=self._store_failed)
        self._store_alerted_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.writeback = (
            SettlementWriter(settings.trades_path, clock=clock) if settings.write_back else None
        )
        self.pipeline = Pipeline(
            db_path=settings.db_path,
            store=self.store,
            portfolio=portfolio,
            rules=rules,
            clock=clock,
            on_settled=self.writeback,
        )
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=FEED_QUEUE_SIZE)
        self.poller = MarketPoller(
            rest=self.rest,
            tickers=lambda: self.pipeline.portfolio.tickers(),
            on_market=self.pipeline.apply_market,
            on_unknown=self.pipeline.unknown_market,
            emit=self.queue.put if self.client is None else None,
            clock=clock,
        )
        self.jobs = Jobs(
            settings,
            pipeline=self.pipeline,
            store=self.store,
            poller=self.poller,
            last_data_at=self._last_data_at,
            mode=endpoint.mode,
            clock_interval=clock_interval,
            clock=clock,
        )
        self.config = ConfigWatcher(
            settings,
            on_portfolio=self._portfolio_changed,
            on_rules=self._rules_changed,
            on_error=self.pipeline.config_error,
        )
        if self.client is not None:
            self.client.register_handler("*", self._enqueue)
        self.metrics = self._make_metrics()
        self.metrics_server: MetricsServer | None = None

    def __repr__(self) -> str:
        where = self.endpoint.api_url if self.client is None else self.endpoint.ws_url
        return f"<Service {self.endpoint.mode} {where} db={self.settings.db_path}>"

    def _enqueue(self, event: Any) -> Awaitable[None] | None:
        """The feed's handler: queue the event; only a full queue makes the reader wait
        (TCP backpressure), so the usual case creates no coroutine."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return self.queue.put(event)
        return None

    # Public methods

    async def run(self, stop: asyncio.Event) -> str:
        """Run until ``stop`` is set; return the one-line summary."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.rest)
            await self.store.start()
            stack.push_async_callback(self._close_store)
            await stack.enter_async_context(self.pipeline)
            if self.settings.metrics_port is not None:
                server = MetricsServer(
                    self.metrics, port=self.settings.metrics_port, is_healthy=self._health
                )
                self.metrics_server = await stack.enter_async_context(server)
                logger.info("metrics on %s/metrics, health on %s/healthz", server.url, server.url)
            feed = None
            if self.client is not None:
                self._subscribe(self.pipeline.portfolio)
                feed = asyncio.create_task(self.client.run(), name="feed")
            work = asyncio.create_task(self.pipeline.consume(self.queue), name="pipeline")
            watch = asyncio.create_task(self.config.run(), name="config-watcher")
            stopping = asyncio.create_task(stop.wait(), name="stop")
            ends = {work, stopping} | ({feed} if feed is not None else set())
            try:
                await self.jobs.start()
                done, _ = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stopping}:
                    task.result()  # a fatal error (e.g. 401) ends the service here
            finally:
                await self._shutdown(feed, work, watch, stopping)
        return self.summary()

    def summary(self) -> str:
        w = self.store.stats
        stored = (
            f"{w.rows_written.get('tickers', 0)} ticks and"
            f" {w.rows_written.get('trades', 0)} trades stored"
        )
        alerts = f"{self.pipeline.alerts_fired} alerts"
        if self.client is None:
            p = self.poller.stats
            return (
                f"stopped: {p.polls} REST polls ({p.ticks} ticker, {p.trades} trade),"
                f" {stored}, {p.errors} failed requests, {alerts}"
            )
        s = self.client.stats
        received = f"{s.by_type.get('ticker', 0)} ticker, {s.by_type.get('trade', 0)} trade"
        return (
            f"stopped: {s.messages} messages ({received}), {stored}, {s.reconnects} reconnects,"
            f" {s.decode_errors} undecodable frames, {alerts}"
        )

    # Private methods

    def _make_metrics(self) -> Metrics:
        metrics = Metrics()
        client = self.client
        pipeline = self.pipeline
        bind_service(
            metrics,
            client_stats=(lambda: client.stats) if client is not None else None,
            feed_connected=(lambda: client.is_connected) if client is not None else None,
            last_message_at=self._last_data_at,
            store_stats=lambda: self.store.stats,
            feed_queue_depth=self.queue.qsize,
            outbox_pending=lambda: asyncio.to_thread(open_deliveries, self.settings.db_path),
            alerts_fired=lambda: pipeline.alerts_fired,
            alerts_suppressed=lambda: pipeline.alerts_suppressed,
            sender_stats=lambda: pipeline.sender.stats if pipeline.sender else None,
        )
        pipeline.observe = metrics.observe_event
        self.jobs.on_run = lambda job_id, failed: metrics.record_job(job_id, failed=failed)
        return metrics

    def _health(self) -> Health:
        """Healthy while data flows: a live WebSocket, or recent successful REST polls."""
        limit = self.settings.stale_after
        if self.client is None:
            return feed_health(
                connected=self.poller.stats.last_success_at is not None,
                last_message_at=self.poller.stats.last_success_at,
                now=time.monotonic(),
                max_silence=limit,
            )
        return feed_health(
            connected=self.client.is_connected,
            last_message_at=self.client.last_message_at,
            now=time.monotonic(),
            max_silence=limit,
        )

    def _store_failed(self, exc: Exception) -> None:
        """The writer could not commit: tell the user, bypassing the outbox (same database)."""
        now = time.monotonic()
        if self._store_alerted_at is not None and now - self._store_alerted_at < STORE_ALERT_EVERY:
            return
        self._store_alerted_at = now
        rules = self.pipeline.rules
        body = (
            f"{exc}. Ticks are kept in memory and retried; free disk space or fix the"
            f" permissions of {self.settings.db_path}."
        )
        task = asyncio.ensure_future(
            send_direct(
                rules.notify,
                rules.defaults.notify,
                severity="critical",
                title="watcher cannot write its database",
                body=body,
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_store(self) -> None:
        """Flush and close the store, but never hang a shutdown on a disk that stays full."""
        for task in list(self._tasks):
            task.cancel()
        try:
            async with asyncio.timeout(STORE_CLOSE_GRACE):
                await self.store.close()
        except TimeoutError:
            left = self.store.stats.queue_depth
            raise StorageError(
                f"cannot write the last {left} rows to the database {self.settings.db_path}"
                f" (gave up after {STORE_CLOSE_GRACE:.0f} s at shutdown)"
            ) from None

    def _last_data_at(self) -> float | None:
        if self.client is not None:
            return self.client.last_message_at
        return self.poller.stats.last_success_at

    def _subscribe(self, portfolio: Portfolio) -> None:
        assert self.client is not None
        tickers = portfolio.tickers()
        if not tickers:
            logger.warning("no watched positions in %s; waiting for some", portfolio.path)
        else:
            self.client.protocol.subscribe(FEED_CHANNELS, tickers)
            logger.info("watching %d markets: %s", len(tickers), ", ".join(tickers[:10]))
        self.client.protocol.subscribe(["market_lifecycle_v2"])

    def _rules_changed(self, rules: RulesConfig) -> None:
        self.pipeline.set_rules(rules)
        self.jobs.rules_changed(rules)

    async def _portfolio_changed(self, portfolio: Portfolio) -> None:
        old = set(self.pipeline.portfolio.tickers())
        new = set(portfolio.tickers())
        self.pipeline.set_portfolio(portfolio)
        if self.client is not None:
            await self._resubscribe(old, new)
        if new != old:
            logger.info("positions changed: +%s -%s", sorted(new - old), sorted(old - new))

    async def _resubscribe(self, old: set[str], new: set[str]) -> None:
        assert self.client is not None
        for channel in FEED_CHANNELS:
            if new - old:
                if channel in self.client.protocol.wanted:
                    await self.client.add_markets(channel, new - old)
                else:
                    await self.client.subscribe([channel], new - old)
            if old - new:
                await self.client.remove_markets(channel, old - new)

    async def _shutdown(
        self, feed: asyncio.Task[None] | None, work: asyncio.Task[None], *others: asyncio.Task[Any]
    ) -> None:
        for task in others:
            task.cancel()
        if feed is not None and self.client is not None:
            if not feed.done():
                await self.client.drain(grace=2.0)
                await self.client.disconnect()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(feed, timeout=5.0)
            feed.cancel()
        await self.jobs.stop()  # before the queue marker: a keyless poll may still be putting
        if not work.done():
            await self.queue.put(None)  # the pipeline drains everything before this marker
            await work
        for task in others:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def open_endpoint(settings: Settings, stack: contextlib.AsyncExitStack) -> Endpoint:
    """Pick the simulator (with an ephemeral Ed25519 key), Kalshi with the user's key, or
    keyless REST polling when there is no key."""
    if settings.simulate:
        # Imported here: the simulator (a websockets server) is not needed by a real run.
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from watcher.kalshi.sim.exchange import SimulatedExchange

        key = ed25519.Ed25519PrivateKey.generate()
        sim = SimulatedExchange(public_keys={SIM_KEY_ID: key.public_key()})
        await stack.enter_async_context(sim)
        logger.info("simulated exchange on %s (signatures verified)", sim.ws_url)
        stack.callback(_log_sim_stats, sim)
        return Endpoint(sim.ws_url, sim.api_url, KalshiSigner(SIM_KEY_ID, key), mode="simulate")
    if not settings.has_key:
        logger.warning(KEYLESS_NOTICE, f"{settings.poll_interval:g}")
        return Endpoint(settings.ws_url, settings.api_url, None, mode="keyless")
    assert settings.api_key_id and settings.private_key_path
    signer = KalshiSigner.from_file(
        settings.api_key_id, settings.private_key_path, settings.private_key_password
    )
    return Endpoint(settings.ws_url, settings.api_url, signer)


def _log_sim_stats(sim: SimulatedExchange) -> None:
    sent = sim.stats.frames_sent
    logger.info(
        "simulator sent %d ticker and %d trade frames", sent.get("ticker", 0), sent.get("trade", 0)
    )


async def run_service(
    settings: Settings, *, stop: asyncio.Event | None = None, **options: Any
) -> str:
    """Load config, connect, and run until SIGINT/SIGTERM (or ``stop``). Returns the summary."""
    portfolio = load_positions(settings.trades_path)
    rules = load_rules(settings.rules_path, env=settings.env)
    for warning in rules.warnings:
        logger.warning("%s", warning)
    stop = stop or asyncio.Event()
    # Everything loaded so far lives for the whole run: keep it out of the collector's scans,
    # whose full passes otherwise stall the event loop for tens of milliseconds.
    gc.freeze()
    # The hot path allocates a few tracked containers per message and frees them by reference
    # counting (decoded frames are untracked; nothing here forms cycles), so the default young
    # collection every 700 allocations is pure overhead: 20,000 cut the event loop's CPU per
    # message by ~7% (make bench, 4 interleaved pairs) at no measurable RSS cost.
    thresholds = gc.get_threshold()
    gc.set_threshold(20_000, 20, 20)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(gc.set_threshold, *thresholds)  # the process's own, back on the way out
        endpoint = await open_endpoint(settings, stack)
        async with _signals(stop):
            service = Service(
                settings,
                portfolio=portfolio,
                rules=rules,
                endpoint=endpoint,
                client_options=options or None,
            )
            summary = await service.run(stop)
    logger.info("%s", summary)
    return summary


@contextlib.asynccontextmanager
async def _signals(stop: asyncio.Event) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
