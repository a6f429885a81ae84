"""The asyncio transport: one signed WebSocket to Kalshi, kept alive by our own reconnect loop.

A thin loop around ``websockets.asyncio.client.connect`` (style.md habit 2). The library's
``async for ws in connect(...)`` is not used because it cannot re-sign headers per attempt and
resets its backoff after any accepted handshake, so a server that accepts and closes at once
would be hammered. Here every attempt gets a fresh signature, the backoff resets only after a
healthy session, and :func:`~watcher.kalshi.retry.classify_failure` is the one documented
retry/fatal split.

The receive loop only decodes (in :class:`~watcher.kalshi.protocol.KalshiProtocol`) and hands
events to the registered handlers (:class:`~watcher.kalshi.dispatch.Router`); the service's
handler just enqueues. Missed trades are fetched over REST by
:class:`~watcher.kalshi.backfill.TradeBackfill`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from watcher.kalshi import USER_AGENT
from watcher.kalshi.auth import KalshiSigner, redacting_logger
from watcher.kalshi.backfill import TradeBackfill
from watcher.kalshi.backoff import backoff
from watcher.kalshi.dispatch import ClientStats, Handler, LateTrade, Router
from watcher.kalshi.endpoints import resolve_endpoints
from watcher.kalshi.errors import AuthenticationFailed, ConnectionFailed, KalshiError, RateLimited
from watcher.kalshi.events import SequenceGapEvent
from watcher.kalshi.protocol import KalshiProtocol
from watcher.kalshi.retry import classify_failure, close_reason

__all__ = [
    "MAX_FRAME_BYTES",
    "ClientStats",
    "Handler",
    "KalshiWebSocketClient",
    "LateTrade",
    "classify_failure",
]

logger = logging.getLogger("watcher.feed")

#: The logger our connections hand to websockets (its default name, so its levels apply).
_ws_logger = redacting_logger("websockets.client")

#: Kalshi's documented message limit (§2.3).
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Received frames websockets buffers before it stops reading the socket (TCP backpressure).
FRAME_QUEUE_HIGH = 1024


class KalshiWebSocketClient:
    """A Kalshi WebSocket client that reconnects, re-signs and resubscribes by itself.

    The seed API (``connect`` / ``subscribe`` / ``register_handler`` / ``run`` /
    ``disconnect``) is kept; everything after ``max_reconnect_delay`` is keyword-only.

    Args:
        api_key_id: Kalshi API key id; with ``private_key_path`` makes the signer.
        private_key_path: PEM file of the RSA or Ed25519 private key.
        demo: use Kalshi's demo endpoints.
        auto_reconnect: reconnect after a dropped connection (fatal errors still stop).
        max_reconnect_delay: backoff cap in seconds.
        url: full WebSocket URL (overrides ``demo``), e.g. the simulator's.
        signer: a ready :class:`KalshiSigner` (instead of key id + path).
        min_reconnect_delay: first backoff delay in seconds.
        watchdog_timeout: a connection that answers no ping for about this long is dropped.
        rate_limit_delay: minimum wait after an HTTP 429.
        healthy_after: a session that lasted this long (or delivered data) resets the backoff.
        use_yes_price: pinned on order-book subscriptions.
        rest: a REST client used to backfill trades after a ``trade`` sequence gap.
        debug: log every frame at DEBUG.
        trace: called as ``trace(event, received_ns)`` just before each event is dispatched,
            with the ``time.perf_counter_ns()`` at which its frame arrived (``make bench``
            measures tick→decision latency with it; ``None`` costs one check per frame).
        user_agent: the ``User-Agent`` header of the handshake; name your application in it.
    """

    _drained: asyncio.Event | None  # set while drain() waits for the unsubscribe replies

    def __init__(
        self,
        api_key_id: str | None = None,
        private_key_path: str | None = None,
        demo: bool = False,
        auto_reconnect: bool = True,
        max_reconnect_delay: float = 60.0,
        *,
        url: str | None = None,
        signer: KalshiSigner | None = None,
        private_key_password: str | None = None,
        min_reconnect_delay: float = 0.5,
        watchdog_timeout: float = 30.0,
        rate_limit_delay: float = 30.0,
        healthy_after: float = 10.0,
        open_timeout: float = 10.0,
        use_yes_price: bool = False,
        rest: Any = None,
        debug: bool = False,
        trace: Callable[[Any, int], None] | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.url = url or resolve_endpoints(demo=demo).ws_url
        if signer is None:
            signer = _signer(api_key_id, private_key_path, private_key_password)
        self.signer = signer
        self.auto_reconnect = auto_reconnect
        self.max_reconnect_delay = max_reconnect_delay
        self.min_reconnect_delay = min_reconnect_delay
        self.watchdog_timeout = watchdog_timeout
        self.rate_limit_delay = rate_limit_delay
        self.healthy_after = healthy_after
        self.open_timeout = open_timeout
        self.user_agent = user_agent
        self.rest = rest
        self.trace = trace
        self.protocol = KalshiProtocol(use_yes_price=use_yes_price, debug=debug)
        self.stats = ClientStats()
        self.last_message_at: float | None = None  # monotonic time of the last frame
        self._init_state()

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "disconnected"
        key = self.signer.key_id if self.signer else "unsigned"
        return f"<KalshiWebSocketClient {self.url} {state} key={key}>"

    # Public methods

    @property
    def is_connected(self) -> bool:
        return self._ws is not None

    def register_handler(self, message_type: str, handler: Handler) -> None:
        """Call ``handler(event)`` for frames of ``message_type``.

        ``message_type`` is a Kalshi frame type (``"ticker"``, ``"trade"``, ``"error"``, …) or one
        of ``"unknown"`` (frames of types watcher does not know), ``"sequence_gap"``,
        ``"decode_error"``, ``"command_error"``, ``"late_trade"``, ``"*"`` (everything).
        Handlers run in the receive loop: keep them short (enqueue, don't compute). A handler
        that raises is logged (``stats.handler_errors``) and the feed goes on with the next
        handler and frame; cancellation still propagates.
        """
        self._router.register(message_type, handler)

    async def connect(self) -> None:
        """Open the first connection, retrying per the backoff when ``auto_reconnect`` is on.

        Raises:
            AuthenticationFailed: Kalshi refused the credentials (never retried).
            ConnectionFailed: the connection failed and ``auto_reconnect`` is off.
        """
        while self._ws is None and not self._stop.is_set():
            try:
                await self._open()
            except ConnectionFailed as exc:
                if not self.auto_reconnect:
                    raise
                await self._wait_before_retry(exc)

    async def subscribe(
        self, channels: Iterable[str], market_tickers: Iterable[str] | None = None
    ) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        self.protocol.subscribe(list(channels), market_tickers)
        await self._flush()

    async def unsubscribe(self, subscription_id: int | Iterable[int]) -> None:
        """Unsubscribe by sid (seed API) — the channel is no longer wanted after reconnects."""
        sids = {subscription_id} if isinstance(subscription_id, int) else set(subscription_id)
        channels = [s.channel for s in self.protocol.subscriptions.values() if s.sid in sids]
        self.protocol.unsubscribe(channels)
        await self._flush()

    async def add_markets(self, channel: str, tickers: Iterable[str]) -> None:
        self.protocol.add_markets(channel, tickers)
        await self._flush()

    async def remove_markets(self, channel: str, tickers: Iterable[str]) -> None:
        self.protocol.remove_markets(channel, tickers)
        await self._flush()

    async def run(self) -> None:
        """Read and dispatch until :meth:`disconnect`, reconnecting as needed.

        Raises:
            AuthenticationFailed: on HTTP 401/403; retrying cannot help.
        """
        try:
            while not self._stop.is_set():
                if self._ws is None:
                    await self.connect()
                    continue
                await self._serve_session(self._ws)
                if not self.auto_reconnect or self._stop.is_set():
                    break
        finally:
            await self._cancel_tasks()

    async def drain(self, grace: float = 2.0) -> None:
        """Unsubscribe everything and read until Kalshi acknowledges (or ``grace`` seconds pass).

        TCP keeps order, so once every ``unsubscribed`` is in, every frame Kalshi sent before
        has been received and dispatched: a clean shutdown loses nothing.
        """
        if self._ws is None or not self.protocol.subscriptions:
            return
        self._drained = asyncio.Event()
        self.protocol.unsubscribe({s.channel for s in self.protocol.subscriptions.values()})
        await self._flush()
        try:
            await asyncio.wait_for(self._drained.wait(), grace)
        except TimeoutError:
            logger.warning("no unsubscribe acknowledgement within %.1f s; closing anyway", grace)

    async def disconnect(self) -> None:
        """Stop :meth:`run` and close the connection."""
        self._stop.set()
        ws = self._ws
        if ws is not None:
            await ws.close()

    # Private methods

    def _init_state(self) -> None:
        """Set up the private state: routing, trade backfill, the connection and its tasks."""
        self._backfill = TradeBackfill(self.rest, self._deliver_late)
        self._router = Router(self.stats, on_trade=self._backfill.remember, on_gap=self._on_gap)
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._backoff = self._new_backoff()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session_started = 0.0
        self._drained = None

    def _new_backoff(self) -> Any:
        return backoff(min_delay=self.min_reconnect_delay, max_delay=self.max_reconnect_delay)

    async def _open(self) -> None:
        headers = self.signer.websocket_headers() if self.signer else {}
        half = self.watchdog_timeout / 2
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                compression=None,  # Kalshi makes it opt-in; it costs ~2× CPU (§2.3)
                open_timeout=self.open_timeout,
                ping_interval=half,
                ping_timeout=half,
                close_timeout=2,
                max_size=MAX_FRAME_BYTES,
                # Frames buffered before reading pauses, and the level at which it resumes.
                # Every pause/resume is an epoll_ctl pair; raising the mark from 64 to 1,024
                # frames saved ~3% of the loop's time per frame under the bench's firehose.
                # 1,024 ticker-sized frames are ~0.5 MB.
                max_queue=(FRAME_QUEUE_HIGH, FRAME_QUEUE_HIGH // 4),
                user_agent_header=self.user_agent,
                logger=_ws_logger,
            )
        except Exception as exc:
            raise classify_failure(exc) from exc
        self._ws = ws
        self._session_started = time.monotonic()
        self._router.has_data = False
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
            logger.info("reconnected to %s (reconnect #%d)", self.url, self.stats.reconnects)
        else:
            logger.info("connected to %s", self.url)
        self.protocol.connection_made()
        await self._flush()
        if self.stats.reconnects and self.rest is not None and "trade" in self.protocol.wanted:
            self._spawn(self._backfill.after_reconnect(self.protocol.wanted))

    async def _serve_session(self, ws: ClientConnection) -> None:
        reason = "closed"
        try:
            while True:
                # bytes, not str: msgspec checks UTF-8 itself, so websockets need not decode.
                await self._receive(await ws.recv(decode=False))
        except ConnectionClosed as exc:
            reason = close_reason(exc)
        finally:
            self._ws = None
            self.protocol.connection_lost()
            healthy = self._router.has_data or (
                time.monotonic() - self._session_started >= self.healthy_after
            )
            if healthy:
                self._backoff = self._new_backoff()
        if not self._stop.is_set():
            await self._wait_before_retry(ConnectionFailed(f"connection lost: {reason}"))

    async def _receive(self, data: str | bytes) -> None:
        self.last_message_at = time.monotonic()
        trace = self.trace
        received_ns = time.perf_counter_ns() if trace is not None else 0
        protocol = self.protocol
        route, failed = self._router.route, self._router.handler_failed
        protocol.receive_text(data)
        for event in protocol.events_received():
            if trace is not None:
                trace(event, received_ns)
            # Router.dispatch inlined: one coroutine less per frame on the hot path.
            for handler in route(event):
                try:
                    result = handler(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception as exc:  # a handler's bug must not end the feed
                    failed(handler, event, exc)
        if protocol.has_data_to_send:
            await self._flush()
        if self._drained is not None and not protocol.subscriptions:
            self._drained.set()

    async def _deliver_late(self, trade: LateTrade) -> None:
        await self._router.dispatch(trade)

    def _on_gap(self, gap: SequenceGapEvent) -> None:
        if gap.channel == "trade" and self.rest is not None:
            self._spawn(self._backfill.after_gap(gap))

    async def _flush(self) -> None:
        frames = self.protocol.data_to_send()
        ws = self._ws
        if ws is None or not frames:
            return
        for frame in frames:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame, text=True)

    async def _wait_before_retry(self, exc: KalshiError) -> None:
        if isinstance(exc, AuthenticationFailed):
            raise exc
        delay: float = next(self._backoff)
        if isinstance(exc, RateLimited):
            delay = max(delay, self.rate_limit_delay)
        logger.info("%s; retrying in %.2f s", exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _signer(
    api_key_id: str | None, private_key_path: str | None, password: str | None
) -> KalshiSigner | None:
    """The signer the seed API's key id and key file make, if both are given."""
    if api_key_id and private_key_path:
        return KalshiSigner.from_file(api_key_id, private_key_path, password)
    return None
