"""A simulated Kalshi exchange: WebSocket and REST on one loopback port.

It speaks the current protocol (kalshi-protocol.md §2–§8) with the typed frames of
:mod:`watcher.kalshi.messages`, so the whole test suite, ``watcher simulate`` and
``watcher start --simulate`` run against it instead of Kalshi. Market state lives in
:mod:`watcher.kalshi.sim.market`, one connection in :mod:`watcher.kalshi.sim.session`, HTTP
answers in :mod:`watcher.kalshi.sim.http`; this module is the server around them::

    async with SimulatedExchange(public_keys={"key-id": public_key}, seed=1) as sim:
        client = connect(sim.ws_url, additional_headers=signer.websocket_headers())
        await sim.wait_subscribed("ticker", "KXCPI-26NOV-T0.3")
        sim.set_quote("KXCPI-26NOV-T0.3", yes_bid="0.4500", yes_ask="0.4700")
        sim.drop()                                   # fault injection

Each connection has one sender task that writes its outbox in order (command replies, then
data); a single clock task walks every subscribed market each ``tick_interval`` and hands the
updates to every connection. :class:`SimStats` counts frames when they are written to the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType
from typing import Literal, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from watcher.kalshi.auth import PublicKey, redacting_logger
from watcher.kalshi.fixed import parse_micros
from watcher.kalshi.sim.connections import Connections
from watcher.kalshi.sim.events import EventBook, SimEvent
from watcher.kalshi.sim.fee_changes import EventFeeChanges
from watcher.kalshi.sim.http import MAX_CLOCK_SKEW_MS, HttpFront
from watcher.kalshi.sim.market import (
    MarketUpdate,
    SimMarket,
    SimMarketSpec,
    random_uuid,
)
from watcher.kalshi.sim.series import SeriesBook
from watcher.kalshi.sim.state import ExchangeState
from watcher.kalshi.sim.wire import (
    ERROR_TEXT,
    HEARTBEAT_INTERVAL,
    REST_PREFIX,
    WS_PATH,
    MarketStats,
    SimStats,
    now_ms,
)

__all__ = [
    "ERROR_TEXT",
    "HEARTBEAT_INTERVAL",
    "MAX_CLOCK_SKEW_MS",
    "REST_PREFIX",
    "WS_PATH",
    "MarketStats",
    "SimMarket",
    "SimMarketSpec",
    "SimStats",
    "SimulatedExchange",
    "run_simulator",
]

logger = logging.getLogger("watcher.sim")

DEFAULT_WAIT = 5.0


class SimulatedExchange:
    """A Kalshi-compatible WebSocket + REST server on loopback (an async context manager).

    Args:
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read :attr:`ws_url` after :meth:`start`).
        public_keys: API key id → public key. When given, every handshake must be signed
            (``KALSHI-ACCESS-*`` for ``GET /trade-api/ws/v2``, at most 60 s off) or gets
            HTTP 401, and signed REST requests must verify. ``None`` accepts unsigned
            connections (lenient mode for examples).
        tick_interval: seconds between ticker frames of each subscribed market.
        trade_probability: chance that a tick also produces a trade.
        seed: seed of the random walk, for repeatable runs.
        markets: initial state of some markets; others are created on demand.
        fee_multipliers: series ticker → the ``fee_multiplier`` of ``GET /series/{ticker}``
            (1 otherwise). :attr:`series` changes them, and scripts failing lookups, later.
        events: the configured events of ``GET /events`` (default: a mutually exclusive event
            and a threshold ladder, :mod:`watcher.kalshi.sim.events`); :attr:`events` adds more.
        events_page_size: events per page of ``GET /events``.

    :attr:`fee_changes` schedules events' fee overrides (``GET /events/fee_changes``; none).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_keys: Mapping[str, PublicKey] | None = None,
        tick_interval: float = 0.2,
        trade_probability: float = 0.3,
        seed: int | None = None,
        markets: Mapping[str, SimMarketSpec] | None = None,
        fee_multipliers: Mapping[str, Decimal | str] | None = None,
        events: list[SimEvent] | None = None,
        events_page_size: int = 200,
    ) -> None:
        self.stats = SimStats()
        self.series = SeriesBook(fee_multipliers)
        self.events = EventBook(events, page_size=events_page_size)
        self.fee_changes = EventFeeChanges()
        self._host, self._port = host, port
        self._tick_interval = tick_interval
        self._trade_probability = trade_probability
        self._state = ExchangeState(stats=self.stats, seed=seed, specs=markets)
        self._state.spec_for = self.events.spec
        self._connections = Connections(self._state)
        self._sessions = self._connections.sessions  # the same list (soak/faults.py reads it)
        self._http = HttpFront(
            public_keys=public_keys,
            stats=self.stats,
            market=self.market,
            every=lambda: list(self._state.markets.values()),
            series=self.series,
            events=self.events,
            fee_changes=self.fee_changes,
        )
        self._server: Server | None = None
        self._clock: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        where = self.ws_url if self._server else "not started"
        return (
            f"<SimulatedExchange {where} connections={len(self._sessions)}"
            f" markets={len(self._state.markets)}>"
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Public methods: lifecycle

    async def start(self) -> None:
        """Listen, and start the market clock."""
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._process_request,
            ping_interval=None,
            close_timeout=1,
            max_size=2**20,
            logger=redacting_logger("websockets.server"),
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._clock = asyncio.create_task(self._run_clock(), name="watcher.sim clock")
        logger.info("simulated exchange listening on %s (REST %s)", self.ws_url, self.api_url)

    async def close(self) -> None:
        """Stop the clock, close every connection and stop listening."""
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None
        for session in self._sessions:
            session.unsilence()  # a paused reader cannot finish the closing handshake
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeat pings: this module's ``HEARTBEAT_INTERVAL``, read when a
        connection opens (tests patch the module attribute)."""
        return HEARTBEAT_INTERVAL

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/trade-api/ws/v2`` (valid after :meth:`start`)."""
        return f"ws://{self._netloc()}{WS_PATH}"

    @property
    def api_url(self) -> str:
        """``http://HOST:PORT/trade-api/v2`` (valid after :meth:`start`)."""
        return f"http://{self._netloc()}{REST_PREFIX}"

    # Public methods: market state

    def market(self, ticker: str) -> SimMarket:
        """The live state of a market, created on demand (tickers containing ``UNKNOWN``
        behave as markets Kalshi does not know)."""
        return self._state.market(ticker)

    def set_quote(
        self, ticker: str, *, yes_bid: str, yes_ask: str, last: str | None = None
    ) -> None:
        """Pin a market's quote (dollar strings) and push a ticker frame to subscribers now.

        The market stops walking and trading at random; set ``market(t).pinned = False`` to
        let it walk again. Raises ValueError unless ``0 < yes_bid < yes_ask < 1``.
        """
        update = self.market(ticker).set_quote(yes_bid, yes_ask, last, self._state.rng, now_ms())
        self._connections.deliver([update])

    def push_trade(
        self, ticker: str, *, yes_price: str, count: str, taker_side: Literal["yes", "no"] = "yes"
    ) -> str:
        """Make one trade now, push it (and a ticker frame) to subscribers; return its id."""
        market, now = self.market(ticker), now_ms()
        record = market.record_trade(
            parse_micros(yes_price),
            parse_micros(count),
            taker_side,
            now,
            random_uuid(self._state.rng),
        )
        self._connections.deliver([MarketUpdate(ticker, market.ticker_msg(now), (record,))])
        return record.trade_id

    async def create_market(self, ticker: str, spec: SimMarketSpec | None = None) -> SimMarket:
        """Create a market and announce it with a ``created`` lifecycle event."""
        if ticker in self._state.markets:
            raise ValueError(f"market already exists: {ticker}")
        if spec is not None:
            self._state.specs[ticker] = spec
        market = self.market(ticker)
        self._connections.deliver([market.created(now_ms())])
        await self._connections.flush()
        return market

    async def settle(self, ticker: str, result: Literal["yes", "no"]) -> None:
        """Emit ``market_lifecycle_v2`` ``determined`` (result, settlement_value) then
        ``settled``; REST then reports ``status: finalized`` and the result."""
        if result not in ("yes", "no"):
            raise ValueError(f"result must be 'yes' or 'no', but got {result!r}")
        self._connections.deliver([self.market(ticker).settle(result, now_ms())])
        await self._connections.flush()

    async def wait_connected(
        self,
        n: int = 1,
        timeout: float = DEFAULT_WAIT,  # noqa: ASYNC109 (the documented API)
    ) -> None:
        """Wait until the ``n``-th handshake has been accepted. Raises TimeoutError."""
        await self._state.wait(
            lambda: self.stats.connections_accepted >= n, timeout, f"connection #{n}"
        )

    async def wait_subscribed(
        self,
        channel: str,
        ticker: str,
        timeout: float = DEFAULT_WAIT,  # noqa: ASYNC109 (the documented API)
    ) -> None:
        """Wait until an open connection has ``channel`` covering ``ticker``."""
        await self._state.wait(
            lambda: any(
                s.channel == channel and s.covers(ticker)
                for session in self._sessions
                for s in session.subs.values()
            ),
            timeout,
            f"a {channel} subscription for {ticker}",
        )

    # Public methods: fault injection

    def drop(self) -> None:
        """Close every open connection abruptly: no close frame (``transport.abort()``)."""
        for session in self._sessions:
            session.ws.transport.abort()

    def accept_then_close(self, times: int = 1) -> None:
        """Accept the next ``times`` handshakes, then close each at once (code 1001)."""
        self._connections.accept_then_close += times

    def reject_handshakes(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` handshakes with HTTP ``status`` (401, 403, 429, 503…)."""
        self._http.rejections.extend([status] * times)

    def rate_limit_rest(self, times: int = 1) -> None:
        """Answer the next ``times`` REST requests with 429 ``{"error": "too many requests"}``."""
        self._http.rest_limited += times

    def silence(self, seconds: float | None) -> None:
        """Make the open connections silent for ``seconds`` (``None``: until ``silence(0)``).

        A silent connection sends no frames and no heartbeats and reads nothing, so client
        pings go unanswered; the server never closes it meanwhile. New connections are not
        affected. ``silence(0)`` ends it early; queued replies are then sent.
        """
        for session in self._sessions:
            session.silence(seconds)

    def seq_gap(self, channel: str) -> None:
        """Skip one ``seq`` number on the next frame of ``channel`` (on one connection).

        For ``trade``, the skipped number belongs to a real trade that is never sent but is
        listed by ``GET /markets/trades``, so a client can backfill it.
        """
        self._state.add_gap(channel)

    async def malformed(self, payload: bytes | str) -> None:
        """Send ``payload`` as a raw text frame to every connection (bytes are not checked:
        use them for invalid UTF-8). Counted as ``frames_sent["malformed"]``."""
        for session in self._sessions:
            session.send_raw(payload)
        await self._connections.flush()

    async def error_frame(self, code: int, sid: int) -> None:
        """Send an error frame scoped to ``sid``; codes 10 and 25 are terminal (the sid ends).

        Raises:
            ValueError: no open connection has this sid.
        """
        owners = [s for s in self._sessions if sid in s.subs]
        if not owners:
            raise ValueError(f"no open subscription with sid {sid}")
        for session in owners:
            session.send_error(code, sid)
        self._state.notify()
        await self._connections.flush()

    # Private methods

    def _netloc(self) -> str:
        if self._server is None:
            raise RuntimeError("simulated exchange is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    async def _run_clock(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval)
            now = now_ms()
            updates = [
                market.step(self._state.rng, now, self._trade_probability)
                for market in self._walking(now)
            ]
            if updates:
                self._connections.deliver(updates)

    def _walking(self, now: int) -> list[SimMarket]:
        """Markets some data subscription wants, that are trading and not pinned."""
        markets = (self.market(ticker) for ticker in sorted(self._connections.wanted()))
        return [mk for mk in markets if mk.is_trading(now) and not mk.pinned]

    # Private methods: HTTP

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        return self._http.process_request(request)

    # Private methods: WebSocket

    async def _handle(self, ws: ServerConnection) -> None:
        await self._connections.serve(ws, heartbeat_interval=self.heartbeat_interval)


async def run_simulator(
    host: str,
    port: int,
    *,
    public_keys: Mapping[str, PublicKey] | None = None,
    tick_interval: float = 0.2,
    trade_probability: float = 0.3,
    seed: int | None = None,
    markets: Mapping[str, SimMarketSpec] | None = None,
) -> None:
    """Serve a :class:`SimulatedExchange` until cancelled (``watcher simulate``)."""
    async with SimulatedExchange(
        host=host,
        port=port,
        public_keys=public_keys,
        tick_interval=tick_interval,
        trade_probability=trade_probability,
        seed=seed,
        markets=markets,
    ):
        await asyncio.Event().wait()
