"""One active run of the watcher: feed → queue → pipeline (state, rules, outbox) and store.

``watcher start`` builds a :class:`Service` from :class:`~watcher.settings.Settings` and runs it
until SIGINT/SIGTERM. The receive loop only decodes and enqueues; the pipeline task does the rest.
Shutdown is lossless: the feed unsubscribes and reads until Kalshi acknowledges (so every frame
sent before is in), the queue is drained, the store flushed, and a one-line summary is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from watcher import __version__
from watcher.domain.positions import Portfolio
from watcher.kalshi.client import KalshiWebSocketClient
from watcher.kalshi.rest import KalshiRestClient
from watcher.ops.health import LiveHealth
from watcher.ops.metrics import Metrics, bind_service, open_deliveries
from watcher.ops.server import (
    Health,
    MetricsServer,
    feed_health,
    store_health,
)
from watcher.ops.summary import run_summary
from watcher.rules import RulesConfig
from watcher.rules.session import CLOCK_INTERVAL
from watcher.service.catchup import catch_up_after_connect
from watcher.service.controls import Controls
from watcher.service.desk import open_desk
from watcher.service.endpoint import Endpoint, Mode, open_endpoint
from watcher.service.jobs import Jobs
from watcher.service.keyless import MarketPoller
from watcher.service.leadership import Leadership
from watcher.service.paper import PaperDesk
from watcher.service.pipeline import Pipeline
from watcher.service.reload import ConfigWatcher
from watcher.service.store_alarm import StoreAlarm, close_store
from watcher.service.subscriptions import FEED_CHANNELS, resubscribe
from watcher.service.watchlist import Watchlist
from watcher.service.writeback import SettlementWriter
from watcher.settings import Settings
from watcher.store import open_backend
from watcher.store.ports import TickSink

__all__ = ["FEED_CHANNELS", "Endpoint", "Mode", "Service", "open_endpoint"]

logger = logging.getLogger("watcher.app")

#: Decoded frames waiting for the pipeline; a full queue slows the reader (TCP backpressure).
FEED_QUEUE_SIZE = 1_000
_AGENT = f"watcher/{__version__}"


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
        instance: this instance's name when several share the database (it is then recorded
            as the active one, and a fresh start catches up on trades over REST).
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
        instance: str | None = None,
    ) -> None:
        self.settings = settings
        self.instance = instance
        self.endpoint = endpoint
        self.clock = clock
        self.backend = open_backend(settings.db_path)
        self.rest = KalshiRestClient(endpoint.api_url, signer=endpoint.signer, user_agent=_AGENT)
        self.client = self._make_client(client_options or {})
        self.store_alarm = StoreAlarm(rules=lambda: self.pipeline.rules, location=settings.database)
        self.store: TickSink = self.backend.tick_sink(on_error=self.store_alarm)
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=FEED_QUEUE_SIZE)
        self.writeback = self._make_writeback()
        self.pipeline = self._make_pipeline(portfolio, rules)
        self.poller = self._make_poller()
        self.watchlist = self._make_watchlist()
        self.jobs = self._make_jobs(clock_interval)
        self.config = self._make_config_watcher()
        self.metrics = self._make_metrics()
        self.metrics_server: MetricsServer | None = None
        #: The paper desk while the service runs (rules' closes, the faces' paper orders).
        self.desk: PaperDesk | None = None
        #: Mutes and pauses while the service runs (the faces' /mute, /pause, ...).
        self.controls: Controls | None = None

    def __repr__(self) -> str:
        where = self.endpoint.api_url if self.client is None else self.endpoint.ws_url
        return f"<Service {self.endpoint.mode} {where} db={self.settings.database}>"

    def _enqueue(self, event: Any) -> Awaitable[None] | None:
        """The feed's handler: queue the event; only a full queue makes the reader wait
        (TCP backpressure), so the usual case creates no coroutine."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return self.queue.put(event)
        return None

    # Public methods

    async def run(
        self,
        stop: asyncio.Event,
        *,
        leadership: Leadership | None = None,
        server: MetricsServer | None = None,
    ) -> str:
        """Run until ``stop`` is set or ``leadership`` is lost (metrics on ``server`` if one is
        given); return the one-line summary."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.rest)
            await self.store.start()
            stack.push_async_callback(self._close_store)
            await stack.enter_async_context(self.pipeline)
            self.controls = await Controls.open(self.backend, scope=self.pipeline, clock=self.clock)
            self.pipeline.controls = await stack.enter_async_context(self.controls)
            self.desk = await stack.enter_async_context(self._open_desk())
            self.pipeline.closer = self.desk
            await self._serve_metrics(stack, server)
            feed = None
            await self.watchlist.start()  # the positions' subscriptions, then the events'
            await self.pipeline.seed_volume(self.backend)  # before the first live tick
            if self.client is not None:
                feed = asyncio.create_task(self.client.run(), name="feed")
            work = asyncio.create_task(self.pipeline.consume(self.queue), name="pipeline")
            stops = [asyncio.create_task(stop.wait(), name="stop")]
            others = [*stops, asyncio.create_task(self.config.run(), name="config-watcher")]
            if leadership is not None:
                stops += [asyncio.create_task(leadership.lost.wait(), name="lost")]
                others += [stops[-1], asyncio.create_task(leadership.watch(), name="lock-watch")]
            ends = {work, *stops} | ({feed} if feed is not None else set())
            try:
                await self._started(others)
                done, _ = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
                for task in done - set(others):
                    task.result()  # a fatal error (e.g. 401) ends the service here
            finally:
                lost = leadership is not None and leadership.lost.is_set()
                await self._shutdown(feed, work, *others, drain=not lost)
        return self.summary()

    def live_health(self) -> LiveHealth:
        """The counters only this process knows, for the faces."""
        stats, polls = self.client.stats if self.client else None, self.poller.stats
        last = self._last_data_at()
        connected = self.client.is_connected if self.client else last is not None
        return LiveHealth(
            mode=str(self.endpoint.mode),
            connected=connected,
            last_message_age_s=None if last is None else max(0.0, time.monotonic() - last),
            messages=stats.messages if stats else polls.ticks + polls.trades,
            reconnects=stats.reconnects if stats else 0,
            sequence_gaps=stats.sequence_gaps if stats else 0,
            store_queue=self.store.stats.queue_depth,
            store_errors=self.store.stats.errors,
            alerts_fired=self.pipeline.alerts_fired,
            alerts_suppressed=self.pipeline.alerts_suppressed,
            role="active" if self.instance else "single",
            instance=self.instance,
        )

    def summary(self) -> str:
        """The one line logged when the service stops."""
        client = self.client.stats if self.client is not None else None
        alerts, poller = self.pipeline.alerts_fired, self.poller.stats
        return run_summary(self.store.stats, alerts=alerts, client=client, poller=poller)

    # Private methods: wiring, in the order __init__ builds the parts

    def _make_client(self, options: dict[str, Any]) -> KalshiWebSocketClient | None:
        """The WebSocket client feeding the queue; None in keyless mode (REST polls instead)."""
        if self.endpoint.mode == "keyless":
            return None
        client = KalshiWebSocketClient(
            url=self.endpoint.ws_url,
            signer=self.endpoint.signer,
            rest=self.rest,
            user_agent=_AGENT,
            **options,
        )
        client.register_handler("*", self._enqueue)
        return client

    def _make_writeback(self) -> SettlementWriter | None:
        if not self.settings.write_back:
            return None
        return SettlementWriter(self.settings.trades_path, clock=self.clock)

    def _make_pipeline(self, portfolio: Portfolio, rules: RulesConfig) -> Pipeline:
        return Pipeline(
            open_alert_store=self.backend.alert_store,
            store=self.store,
            portfolio=portfolio,
            rules=rules,
            clock=self.clock,
            on_settled=self.writeback,
        )

    def _open_desk(self) -> contextlib.AbstractAsyncContextManager[PaperDesk]:
        """The paper desk through which rules with ``action: close`` close positions."""
        path, rules, fees = self.settings.trades_path, self.pipeline.rules, self.watchlist.fees
        return open_desk(self.backend, self.rest, path, rules=rules, clock=self.clock, fees=fees)

    def _make_poller(self) -> MarketPoller:
        pipeline, keyless = self.pipeline, self.client is None

        def tickers() -> Iterable[str]:
            # keyless: every watched market (positions and watched events) is polled; with a
            # WebSocket the metadata refresh asks only about the positions' markets
            return pipeline.watched if keyless else pipeline.portfolio.tickers()

        return MarketPoller(
            rest=self.rest,
            tickers=tickers,
            on_market=pipeline.apply_market,
            on_unknown=pipeline.unknown_market,
            emit=self.queue.put if self.client is None else None,
            clock=self.clock,
        )

    def _make_watchlist(self) -> Watchlist:
        """Watched events and series → markets (the simulator's demo events when simulated)."""
        simulated = self.endpoint.mode == "simulate"
        store, backend = self.store, self.backend
        return Watchlist(
            self.rest,
            self.pipeline,
            self.client,
            store.write_events,
            backend=backend,
            simulated=simulated,
        )

    def _make_jobs(self, clock_interval: float) -> Jobs:
        s = self.settings
        return Jobs(
            host=self.pipeline,
            store=self.store,
            poller=self.poller,
            last_data_at=self._last_data_at,
            mode=self.endpoint.mode,
            maintain=self.backend.maintain,
            stale_after=s.stale_after,
            refresh_interval=s.refresh_interval,
            poll_interval=s.poll_interval,
            digest_at=s.digest_at,
            retention_days=s.retention_days,
            clock_interval=clock_interval,
            clock=self.clock,
            refresh_watch=self.watchlist.refresh,
        )

    def _make_config_watcher(self) -> ConfigWatcher:
        return ConfigWatcher(
            trades_path=self.settings.trades_path,
            rules_path=self.settings.rules_path,
            env=self.settings.env,
            on_portfolio=self._portfolio_changed,
            on_rules=self._rules_changed,
            on_error=self.pipeline.config_error,
        )

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
            outbox_pending=lambda: open_deliveries(self.settings.db_path),
            alerts_fired=lambda: pipeline.alerts_fired,
            alerts_suppressed=lambda: pipeline.alerts_suppressed,
            sender_stats=lambda: pipeline.sender.stats if pipeline.sender else None,
            role=lambda: "active",
        )
        pipeline.observe = metrics.observe_event
        self.jobs.on_run = lambda job_id, failed: metrics.record_job(job_id, failed=failed)
        return metrics

    def _health(self) -> Health:
        """Healthy while data flows: a live WebSocket, or recent successful REST polls."""
        last = self._last_data_at()
        feed = feed_health(
            connected=self.client.is_connected if self.client else last is not None,
            last_message_at=last,
            now=time.monotonic(),
            max_silence=self.settings.stale_after,
        )
        health = store_health(self.store.stats, now_ms=int(self.clock() * 1000), feed=feed)
        return Health(health.ok, f"active: {health.reason}") if self.instance else health

    async def _serve_metrics(
        self, stack: contextlib.AsyncExitStack, server: MetricsServer | None
    ) -> None:
        """Serve this run's metrics on ``server``, or on a server of its own if asked for."""
        if server is None and self.settings.metrics_port is not None:
            server = MetricsServer(
                self.metrics, port=self.settings.metrics_port, is_healthy=self._health
            )
            await stack.enter_async_context(server)
        if server is not None:
            server.metrics, server.is_healthy = self.metrics, self._health
        self.metrics_server = server

    async def _started(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Start the jobs; on a shared database, record this instance as the active one and
        catch up on the trades made while no instance was streaming."""
        await self.jobs.start()
        if self.instance is None:
            return
        await self.store.set_service_state("service.active", self.instance)
        if self.client is not None:
            tickers = self.pipeline.portfolio.tickers()
            catch_up = catch_up_after_connect(
                self.client, self.backend, self.rest, tickers, self._enqueue
            )
            tasks.append(asyncio.create_task(catch_up, name="catch-up"))

    async def _close_store(self) -> None:
        self.store_alarm.cancel()
        await close_store(self.store, location=self.settings.database)

    def _last_data_at(self) -> float | None:
        if self.client is not None:
            return self.client.last_message_at
        return self.poller.stats.last_success_at

    def _rules_changed(self, rules: RulesConfig) -> None:
        self.pipeline.set_rules(rules)
        self.jobs.rules_changed(rules)
        self.watchlist.rules_changed(rules)

    async def _portfolio_changed(self, portfolio: Portfolio) -> None:
        old = set(self.pipeline.watched)  # positions and watched events' markets
        self.pipeline.set_portfolio(portfolio)
        new = set(self.pipeline.watched)
        if self.client is not None:
            await resubscribe(self.client, old, new)
        if new != old:
            logger.info("positions changed: +%s -%s", sorted(new - old), sorted(old - new))

    async def _shutdown(
        self,
        feed: asyncio.Task[None] | None,
        work: asyncio.Task[None],
        *others: asyncio.Task[Any],
        drain: bool = True,
    ) -> None:
        for task in others:
            task.cancel()
        if feed is not None and self.client is not None:
            if not feed.done():
                if drain:  # not after losing the lock: another instance may be streaming
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
