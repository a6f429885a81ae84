"""The asyncio transport: one signed WebSocket to Kalshi, kept alive by our own reconnect loop.

A thin loop around ``websockets.asyncio.client.connect`` (style.md habit 2). The library's
``async for ws in connect(...)`` is not used because it cannot re-sign headers per attempt and
resets its backoff after any accepted handshake, so a server that accepts and closes at once
would be hammered. Here every attempt gets a fresh signature, the backoff resets only after a
healthy session, and :func:`classify_failure` is the one documented retry/fatal split.

The receive loop only decodes (in :class:`~watcher.kalshi.protocol.KalshiProtocol`) and hands
events to the registered handlers; the service's handler just enqueues.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from watcher.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    RateLimited,
    ServerRejected,
    WatcherError,
)
from watcher.kalshi import messages as m
from watcher.kalshi.auth import KalshiSigner, redacting_logger
from watcher.kalshi.backoff import backoff
from watcher.kalshi.endpoints import resolve_endpoints
from watcher.kalshi.protocol import (
    CommandRejected,
    DecodeFailure,
    Event,
    KalshiProtocol,
    SequenceGapEvent,
)
from watcher.kalshi.rest import trade_from_rest

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

Handler = Callable[[Any], Awaitable[None] | None]
#: Kalshi's documented message limit (§2.3).
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Received frames websockets buffers before it stops reading the socket (TCP backpressure).
FRAME_QUEUE_HIGH = 1024
_SEEN_TRADES = 20_000
AUTH_HINT = (
    "check KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH, and that the key belongs to this"
    " environment (demo keys only work against demo)"
)


@dataclass(frozen=True, slots=True)
class LateTrade:
    """A trade recovered over REST after a ``trade`` sequence gap (rules see it marked late)."""

    trade: m.Trade


@dataclass(slots=True)
class ClientStats:
    """Counters for logs, the shutdown summary and metrics."""

    messages: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    decode_errors: int = 0
    unknown: int = 0
    sequence_gaps: int = 0
    command_errors: int = 0
    connects: int = 0
    reconnects: int = 0
    backfilled_trades: int = 0
    handler_errors: int = 0


def classify_failure(exc: BaseException) -> WatcherError:
    """Decide what a failed connection attempt means (websockets ``process_exception``).

    Returns an :class:`AuthenticationFailed` (fatal: HTTP 401/403 or an unusable URL), a
    :class:`RateLimited` (HTTP 429: back off longer), or a :class:`ConnectionFailed`
    (anything else: network errors, timeouts, 5xx, a closed connection; retry).
    """
    if isinstance(exc, WatcherError):
        return exc
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return AuthenticationFailed(
                f"Kalshi rejected the WebSocket handshake: HTTP {status}; {AUTH_HINT}"
            )
        if status == 429:
            return RateLimited("server rejected WebSocket connection: HTTP 429 too many requests")
        return ServerRejected(status)
    if isinstance(exc, InvalidURI):
        return AuthenticationFailed(f"invalid WebSocket URL: {exc}")
    if isinstance(exc, OSError | TimeoutError | InvalidHandshake | ConnectionClosed):
        return ConnectionFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    raise exc


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
    """

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
    ) -> None:
        if signer is None and api_key_id and private_key_path:
            signer = KalshiSigner.from_file(api_key_id, private_key_path, private_key_password)
        self.url = url or resolve_endpoints(demo=demo).ws_url
        self.signer = signer
        self.auto_reconnect = auto_reconnect
        self.max_reconnect_delay = max_reconnect_delay
        self.min_reconnect_delay = min_reconnect_delay
        self.watchdog_timeout = watchdog_timeout
        self.rate_limit_delay = rate_limit_delay
        self.healthy_after = healthy_after
        self.open_timeout = open_timeout
        self.rest = rest
        self.trace = trace
        self.protocol = KalshiProtocol(use_yes_price=use_yes_price, debug=debug)
        self.stats = ClientStats()
        self.last_message_at: float | None = None  # monotonic time of the last frame
        self._handlers: dict[str, list[Handler]] = {}
        self._routes: dict[str, tuple[Handler, ...]] = {}  # kind → its handlers, then "*"
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._backoff = self._new_backoff()
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen_trades: OrderedDict[str, None] = OrderedDict()
        self._last_trade_ts: dict[str, int] = {}
        self._session_started = 0.0
        self._session_data = False
        self._drained: asyncio.Event | None = None

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
        self._handlers.setdefault(message_type, []).append(handler)
        self._routes.clear()

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
                user_agent_header="watcher (Python websockets)",
                logger=_ws_logger,
            )
        except Exception as exc:
            raise classify_failure(exc) from exc
        self._ws = ws
        self._session_started = time.monotonic()
        self._session_data = False
        self.stats.connects += 1
        if self.stats.connects > 1:
            self.stats.reconnects += 1
            logger.info("reconnected to %s (reconnect #%d)", self.url, self.stats.reconnects)
        else:
            logger.info("connected to %s", self.url)
        self.protocol.connection_made()
        await self._flush()
        if self.stats.reconnects and self.rest is not None and "trade" in self.protocol.wanted:
            self._spawn(self._backfill_after_reconnect())

    async def _serve_session(self, ws: ClientConnection) -> None:
        reason = "closed"
        try:
            while True:
                # bytes, not str: msgspec checks UTF-8 itself, so websockets need not decode.
                await self._receive(await ws.recv(decode=False))
        except ConnectionClosed as exc:
            reason = _close_reason(exc)
        finally:
            self._ws = None
            self.protocol.connection_lost()
            healthy = self._session_data or (
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
        protocol.receive_text(data)
        for event in protocol.events_received():
            if trace is not None:
                trace(event, received_ns)
            # _dispatch inlined: one coroutine less per frame on the hot path.
            for handler in self._route(event):
                try:
                    result = handler(event)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception as exc:  # a handler's bug must not end the feed
                    self._handler_failed(handler, event, exc)
        if protocol.has_data_to_send:
            await self._flush()
        if self._drained is not None and not protocol.subscriptions:
            self._drained.set()

    async def _dispatch(self, event: Event | LateTrade) -> None:
        for handler in self._route(event):
            try:
                result = handler(event)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._handler_failed(handler, event, exc)

    def _handler_failed(self, handler: Handler, event: object, exc: Exception) -> None:
        """Log a handler's exception (traceback for the first few) and go on with the feed."""
        self.stats.handler_errors += 1
        n = self.stats.handler_errors
        if n <= 5 or n % 1000 == 0:
            logger.error(
                "handler %s raised on a %s; the feed goes on (%d handler errors so far)",
                getattr(handler, "__qualname__", repr(handler)),
                type(event).__name__,
                n,
                exc_info=exc if n <= 5 else None,
            )

    def _route(self, event: Event | LateTrade) -> tuple[Handler, ...]:
        """Count ``event`` and return its handlers (those of its kind, then ``"*"``)."""
        kind = m.FRAME_TYPES.get(type(event))
        if kind is None:
            kind = self._note_event(event)  # type: ignore[arg-type]
        else:
            stats = self.stats
            stats.messages += 1
            stats.by_type[kind] = stats.by_type.get(kind, 0) + 1
            if kind == "trade":
                self._session_data = True
                self._remember_trade(event)  # type: ignore[arg-type]
            elif kind == "ticker":
                self._session_data = True
        handlers = self._routes.get(kind)
        if handlers is None:
            handlers = (*self._handlers.get(kind, ()), *self._handlers.get("*", ()))
            self._routes[kind] = handlers
        return handlers

    def _note_event(
        self,
        event: m.UnknownMessage | DecodeFailure | SequenceGapEvent | CommandRejected | LateTrade,
    ) -> str:
        """Count and log an event that is not a known frame; return its handler kind."""
        if isinstance(event, m.UnknownMessage):
            self.stats.unknown += 1
            if self.stats.unknown <= 5 or self.stats.unknown % 1000 == 0:
                logger.info("unknown frame type %r (%d so far)", event.type, self.stats.unknown)
            return "unknown"
        if isinstance(event, DecodeFailure):
            self.stats.decode_errors += 1
            logger.warning(
                "dropping undecodable frame (%d so far): %s; starts %r",
                self.stats.decode_errors,
                event.error,
                event.error.raw[:80],
            )
            return "decode_error"
        if isinstance(event, SequenceGapEvent):
            self.stats.sequence_gaps += 1
            if event.channel == "trade" and self.rest is not None:
                self._spawn(self._backfill_trades(event))
            return "sequence_gap"
        if isinstance(event, CommandRejected):
            self.stats.command_errors += 1
            logger.warning(
                "server refused %s: error %d %s",
                _describe(event.command),
                event.code,
                event.message,
            )
            return "command_error"
        self.stats.backfilled_trades += 1
        return "late_trade"

    def _remember_trade(self, trade: m.Trade) -> None:
        seen = self._seen_trades
        seen[trade.msg.trade_id] = None
        if len(seen) > _SEEN_TRADES:
            seen.popitem(last=False)
        ts = m.timestamp_ms(trade.msg.ts_ms, trade.msg.ts, trade.sending_ts_ms)
        if ts is not None:
            self._last_trade_ts[trade.msg.market_ticker] = ts

    async def _backfill_trades(self, gap: SequenceGapEvent) -> None:
        """Fetch the trades a ``trade`` gap skipped over REST and hand them on as late."""
        await self._backfill(gap.market_tickers or tuple(self._last_trade_ts))
        logger.info("trade backfill after gap on sid %d done", gap.sid)

    async def _backfill_after_reconnect(self) -> None:
        """Trades made while the connection was down: a new connection restarts ``seq``, so
        no gap can reveal them. Fetch what came after the last trade seen in each market."""
        wanted = self.protocol.wanted.get("trade")
        markets = tuple(self._last_trade_ts) if wanted is None else tuple(sorted(wanted))
        await self._backfill([t for t in markets if t in self._last_trade_ts])

    async def _backfill(self, markets: Iterable[str]) -> None:
        for ticker in markets:
            since = self._last_trade_ts.get(ticker)
            min_ts = since // 1000 if since is not None else None
            try:
                trades = await self.rest.get_trades(ticker, min_ts=min_ts)
            except WatcherError as exc:
                logger.warning("trade backfill for %s failed: %s", ticker, exc)
                continue
            for rest_trade in sorted(trades, key=lambda t: t.ts_ms or 0):
                if rest_trade.trade_id in self._seen_trades:
                    continue
                frame = trade_from_rest(rest_trade)
                self._remember_trade(frame)
                await self._dispatch(LateTrade(frame))

    async def _flush(self) -> None:
        frames = self.protocol.data_to_send()
        ws = self._ws
        if ws is None or not frames:
            return
        for frame in frames:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame, text=True)

    async def _wait_before_retry(self, exc: WatcherError) -> None:
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


def _close_reason(exc: ConnectionClosed | None, ws: ClientConnection | None = None) -> str:
    frame = exc.rcvd if exc is not None else (ws.protocol.close_rcvd if ws is not None else None)
    sent = exc.sent if exc is not None else None
    if sent is not None and sent.code == 1011:
        return "watchdog: no answer to pings, connection presumed dead"
    if sent is not None and sent.code in (1002, 1007, 1009):
        # We closed it: a protocol error, invalid data, or a frame over MAX_FRAME_BYTES.
        return f"closed by watcher: close code {sent.code} {sent.reason}".strip()
    if frame is None:
        return "no close frame (connection dropped)"
    return f"close code {frame.code} {frame.reason}".strip()


def _describe(command: m.Command | None) -> str:
    if command is None:
        return "a command"
    return f"{command.__struct_config__.tag} #{command.id}"
