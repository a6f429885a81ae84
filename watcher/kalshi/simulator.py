"""A simulated Kalshi exchange: WebSocket and REST on one loopback port.

It speaks the current protocol (kalshi-protocol.md §2–§8) with the typed frames of
:mod:`watcher.kalshi.messages`, so the whole test suite, ``watcher simulate`` and
``watcher start --simulate`` run against it instead of Kalshi. Market state lives in
:mod:`watcher.kalshi.sim_market`; this module is the server around it::

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
import email.utils
import itertools
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self
from urllib.parse import parse_qs

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from watcher.errors import DecodeError
from watcher.kalshi import messages as m
from watcher.kalshi.auth import WS_SIGN_PATH, PublicKey, verify_signature
from watcher.kalshi.fixed import parse_micros
from watcher.kalshi.sim_market import (
    MarketUpdate,
    SimMarket,
    SimMarketSpec,
    TradeRecord,
    random_uuid,
    route_rest,
    yes_leg,
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

WS_PATH = WS_SIGN_PATH
REST_PREFIX = "/trade-api/v2"
#: Kalshi pings every 10 s with the body ``heartbeat`` (§9).
HEARTBEAT_INTERVAL = 10.0
HEARTBEAT = b"heartbeat"
#: Handshakes signed further than this from the simulator's clock are refused.
MAX_CLOCK_SKEW_MS = 60_000
DEFAULT_WAIT = 5.0
FLUSH_TIMEOUT = 2.0

#: Kalshi's error texts (§8), sent verbatim on the wire.
ERROR_TEXT = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    9: "Authentication required",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    18: "Command timeout",
    25: "Subscription buffer overflow",
    26: "Subscription market limit exceeded",
    27: "Too many requests",
}
TERMINAL_CODES = frozenset({10, 25})
SEQUENCED = frozenset(
    {
        "trade",
        "orderbook_delta",
        "market_lifecycle_v2",
        "multivariate_market_lifecycle",
        "order_group_updates",
        "communications",
        "cfbenchmarks_value",
        "pyth_value",
    }
)
GLOBAL = frozenset(
    {
        "market_lifecycle_v2",
        "multivariate_market_lifecycle",
        "communications",
        "order_group_updates",
    }
)
ADD_DELETE = frozenset({"add_markets", "delete_markets"})
ACTIONS: Mapping[str, frozenset[str]] = {
    "orderbook_delta": ADD_DELETE | {"get_snapshot"},
    "ticker": ADD_DELETE,
    "trade": ADD_DELETE,
    "fill": ADD_DELETE,
    "market_positions": ADD_DELETE,
    "user_orders": ADD_DELETE,
}
DATA_CHANNELS = frozenset({"ticker", "trade", "orderbook_delta"})
_COMMANDS = frozenset({"subscribe", "unsubscribe", "update_subscription", "list_subscriptions"})
_REQUIRED = {
    "subscribe": ("channels", 3),
    "unsubscribe": ("sids", 4),
    "update_subscription": ("action", 15),
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class MarketStats:
    """Frames written for one market, over every connection."""

    ticker_frames: int = 0
    trade_ids: list[str] = field(default_factory=list)


@dataclass
class SimStats:
    """What the simulator did; tests compare it with what the client stored.

    Attributes:
        connections_accepted: WebSocket handshakes accepted (including accept-then-close).
        handshakes_rejected: handshakes answered with an HTTP error status.
        handshake_timestamps: ``KALSHI-ACCESS-TIMESTAMP`` of each accepted signed handshake.
        commands: decoded commands, one list per accepted connection, in order.
        frames_sent: frames written to sockets, by ``type`` (``"malformed"`` for raw ones).
        markets: per market ticker, ticker frames written and trade ids written.
    """

    connections_accepted: int = 0
    handshakes_rejected: int = 0
    handshake_timestamps: list[str] = field(default_factory=list)
    commands: list[list[m.Command]] = field(default_factory=list)
    frames_sent: Counter[str] = field(default_factory=Counter)
    markets: dict[str, MarketStats] = field(default_factory=dict)

    def market(self, ticker: str) -> MarketStats:
        """The counters of one market (zero if nothing was sent for it)."""
        return self.markets.setdefault(ticker, MarketStats())

    def _record(self, item: _Outgoing) -> None:
        self.frames_sent[item.kind] += 1
        if item.kind == "ticker" and item.market_ticker:
            self.market(item.market_ticker).ticker_frames += 1
        elif item.kind == "trade" and item.market_ticker and item.trade_id:
            self.market(item.market_ticker).trade_ids.append(item.trade_id)


class _Outgoing(NamedTuple):
    kind: str
    data: bytes
    market_ticker: str | None = None
    trade_id: str | None = None


@dataclass(eq=False)
class _Subscription:
    sid: int
    channel: str
    tickers: set[str] | None  # None: every market
    use_yes_price: bool = False
    skip_ticker_ack: bool = False
    seq: int = 0

    def covers(self, ticker: str) -> bool:
        return self.tickers is None or ticker in self.tickers

    def add(self, tickers: list[str]) -> list[str]:
        if self.tickers is None:
            return []
        if not tickers:  # no filter means every market
            self.tickers = None
            return []
        added = [t for t in dict.fromkeys(tickers) if t not in self.tickers]
        self.tickers.update(added)
        return added

    def remove(self, tickers: list[str]) -> None:
        if self.tickers is not None:
            self.tickers.difference_update(tickers)


class _Session:
    """One accepted WebSocket: its subscriptions, outbox and sender task."""

    def __init__(
        self, sim: SimulatedExchange, ws: ServerConnection, commands: list[m.Command]
    ) -> None:
        self.sim = sim
        self.ws = ws
        self.commands = commands
        self.subs: dict[int, _Subscription] = {}
        self._outbox: deque[_Outgoing] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._unsilenced = asyncio.Event()
        self._unsilenced.set()
        self._silence_timer: asyncio.TimerHandle | None = None

    # Public methods

    @property
    def is_silenced(self) -> bool:
        return not self._unsilenced.is_set()

    def receive(self, text: str | bytes) -> None:
        """Handle one client frame; replies go to the outbox in order."""
        try:
            obj = msgspec.json.decode(text)
        except msgspec.DecodeError:
            return self._error(None, 1)
        cmd_id = obj.get("id") if isinstance(obj, dict) else None
        cmd_id = cmd_id if isinstance(cmd_id, int) and cmd_id > 0 else None
        code = _precheck(obj)
        if code:
            return self._error(cmd_id, code)
        try:
            command = m.decode_command(text)
        except DecodeError:
            return self._error(cmd_id, 1)
        self.commands.append(command)
        if isinstance(command, m.Subscribe):
            self._subscribe(cmd_id, command.params)
        elif isinstance(command, m.Unsubscribe):
            self._unsubscribe(cmd_id, command.params)
        elif isinstance(command, m.UpdateSubscription):
            self._update(cmd_id, command.params)
        else:
            infos = [m.SubscriptionInfo(channel=s.channel, sid=s.sid) for s in self.subs.values()]
            self._push("ok", m.Ok(id=cmd_id, msg=infos))
        self.sim._notify()
        return None

    def deliver(self, updates: Sequence[MarketUpdate]) -> None:
        """Queue the frames these market updates mean for this connection's subscriptions."""
        if self.is_silenced:
            return
        now = _now_ms()
        for update in updates:
            for sub in list(self.subs.values()):
                if sub.covers(update.market_ticker):
                    self._deliver_one(sub, update, now)

    def send_error(self, code: int, sid: int) -> None:
        """Queue an error frame scoped to ``sid``; codes 10 and 25 end the subscription."""
        sub = self.subs[sid]
        seq = self._next_seq(sub, None) if sub.channel in SEQUENCED else None
        self._error(None, code, sid=sid, seq=seq)
        if code in TERMINAL_CODES:
            del self.subs[sid]

    def send_raw(self, payload: bytes | str) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self._queue(_Outgoing("malformed", data))

    def silence(self, seconds: float | None) -> None:
        """Stop writing and stop reading (so pings go unanswered) for ``seconds``."""
        self.unsilence()
        if seconds is not None and seconds <= 0:
            return
        self._unsilenced.clear()
        self.ws.transport.pause_reading()
        if seconds is not None:
            loop = asyncio.get_running_loop()
            self._silence_timer = loop.call_later(seconds, self.unsilence)

    def unsilence(self) -> None:
        if self._silence_timer is not None:
            self._silence_timer.cancel()
            self._silence_timer = None
        if self.is_silenced:
            self._unsilenced.set()
            self.ws.transport.resume_reading()

    async def drained(self) -> None:
        """Return once the outbox is written (at once if silenced)."""
        if not self.is_silenced:
            await self._drained.wait()

    def closed(self) -> None:
        self.unsilence()
        self._drained.set()

    async def run_sender(self) -> None:
        """Write the outbox in order and send heartbeat pings; the connection's only writer."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + HEARTBEAT_INTERVAL
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._unsilenced.wait()
                while self._outbox and not self.is_silenced:
                    item = self._outbox.popleft()
                    await self.ws.send(item.data, text=True)
                    self.sim.stats._record(item)
                if self._outbox:
                    continue  # silenced mid-way
                self._drained.set()
                if loop.time() >= next_ping:
                    next_ping = loop.time() + HEARTBEAT_INTERVAL
                    if HEARTBEAT not in self.ws.pending_pings:
                        await self.ws.ping(HEARTBEAT)
                self._wake.clear()
                if not self._outbox:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(next_ping):
                            await self._wake.wait()

    # Private methods: commands

    def _subscribe(self, cmd_id: int | None, p: m.SubscribeParams) -> None:
        if any(channel not in m.CHANNELS for channel in p.channels):
            return self._error(cmd_id, 8)
        tickers = self._tickers(p.market_ticker, p.market_tickers, p.market_id, p.market_ids)
        if "orderbook_delta" in p.channels and not tickers:
            return self._error(cmd_id, 14)
        initial: list[tuple[_Subscription, list[str]]] = []  # acks first, then data
        for channel in dict.fromkeys(p.channels):
            sub = next((s for s in self.subs.values() if s.channel == channel), None)
            if sub is None:
                initial.append((self._open(cmd_id, channel, tickers, p), tickers))
            else:
                initial.append((sub, sub.add(tickers)))
                self._push_ok(cmd_id, sub)
        for sub, added in initial:
            if sub.channel == "orderbook_delta":
                self._snapshots(sub, added, None)
            elif sub.channel == "ticker" and p.send_initial_snapshot:
                self.deliver([self.sim._quote(t) for t in added if not self.sim.market(t).unknown])
        return None

    def _open(
        self, cmd_id: int | None, channel: str, tickers: list[str], p: m.SubscribeParams
    ) -> _Subscription:
        sub = _Subscription(
            self.sim._next_sid(),
            channel,
            None if channel in GLOBAL or not tickers else set(tickers),
            use_yes_price=bool(p.use_yes_price),
            skip_ticker_ack=bool(p.skip_ticker_ack),
        )
        self.subs[sub.sid] = sub
        msg = m.SubscribedMsg(channel=channel, sid=sub.sid)
        self._push("subscribed", m.Subscribed(id=cmd_id, msg=msg))
        return sub

    def _unsubscribe(self, cmd_id: int | None, p: m.UnsubscribeParams) -> None:
        for sid in p.sids:
            sub = self.subs.pop(sid, None)
            if sub is None:
                self._error(cmd_id, 7)
            else:
                self._push("unsubscribed", m.Unsubscribed(id=cmd_id, sid=sid, seq=sub.seq))

    def _update(self, cmd_id: int | None, p: m.UpdateSubscriptionParams) -> None:
        sid = _single_sid(p)
        if sid is None:
            return self._error(cmd_id, 12)
        sub = self.subs.get(sid)
        if sub is None:
            return self._error(cmd_id, 7)
        if p.action not in ACTIONS.get(sub.channel, ()):
            return self._error(cmd_id, 13)
        tickers = self._tickers(p.market_ticker, p.market_tickers, p.market_id, p.market_ids)
        if not tickers:
            return self._error(cmd_id, 14)
        if p.action == "get_snapshot":
            return self._snapshots(sub, tickers, cmd_id)
        if p.action == "delete_markets":
            sub.remove(tickers)
            return self._push_ok(cmd_id, sub)
        added = sub.add(tickers)
        self._push_ok(cmd_id, sub)
        if sub.channel == "orderbook_delta":
            self._snapshots(sub, added, None)
        return None

    def _tickers(
        self,
        one: str | None,
        many: list[str] | None,
        one_id: str | None,
        many_ids: list[str] | None,
    ) -> list[str]:
        ids = ([one_id] if one_id else []) + (many_ids or [])
        found = [t for t in map(self.sim._ticker_for_id, ids) if t]
        return list(dict.fromkeys(([one] if one else []) + (many or []) + found))

    def _snapshots(self, sub: _Subscription, tickers: Iterable[str], cmd_id: int | None) -> None:
        for ticker in tickers:
            market = self.sim.market(ticker)
            if market.unknown:
                continue  # Kalshi accepts unknown tickers silently and sends nothing
            frame = m.OrderbookSnapshot(
                id=cmd_id,
                sid=sub.sid,
                seq=self._next_seq(sub, None),
                msg=market.snapshot(sub.use_yes_price),
                sending_ts_ms=_now_ms(),
            )
            self._push("orderbook_snapshot", frame, ticker)

    def _push_ok(self, cmd_id: int | None, sub: _Subscription) -> None:
        tickers = None if sub.tickers is None else sorted(sub.tickers)
        msg = m.OkMarkets() if sub.skip_ticker_ack else m.OkMarkets(market_tickers=tickers)
        seq = sub.seq if sub.channel in SEQUENCED else None
        self._push("ok", m.Ok(id=cmd_id, sid=sub.sid, seq=seq, msg=msg))

    def _error(
        self, cmd_id: int | None, code: int, *, sid: int | None = None, seq: int | None = None
    ) -> None:
        msg = m.ErrorMsg(code=code, msg=ERROR_TEXT.get(code, "Error"))
        self._push("error", m.ErrorReply(id=cmd_id, sid=sid, seq=seq, msg=msg))

    # Private methods: data

    def _deliver_one(self, sub: _Subscription, u: MarketUpdate, now: int) -> None:
        ticker, sid = u.market_ticker, sub.sid
        if sub.channel == "ticker" and u.ticker is not None:
            self._push("ticker", m.Ticker(sid=sid, msg=u.ticker, sending_ts_ms=now), ticker)
        elif sub.channel == "trade":
            for t in u.trades:
                seq = self._next_seq(sub, t)
                trade = m.Trade(sid=sid, seq=seq, msg=t.to_msg(), sending_ts_ms=now)
                self._push("trade", trade, ticker, t.trade_id)
        elif sub.channel == "orderbook_delta":
            for d in u.deltas:
                msg = yes_leg(d) if sub.use_yes_price else d
                seq = self._next_seq(sub, None)
                delta = m.OrderbookDelta(sid=sid, seq=seq, msg=msg, sending_ts_ms=now)
                self._push("orderbook_delta", delta, ticker)
        elif sub.channel == "market_lifecycle_v2":
            for event in u.lifecycle:
                seq = self._next_seq(sub, None)
                life = m.MarketLifecycle(sid=sid, seq=seq, msg=event, sending_ts_ms=now)
                self._push("market_lifecycle_v2", life, ticker)

    def _next_seq(self, sub: _Subscription, trade: TradeRecord | None) -> int:
        if self.sim._take_gap(sub.channel):
            sub.seq += 1  # never sent; a skipped trade still exists for REST backfill
            if trade is not None:
                self.sim._lost_trade(trade)
        sub.seq += 1
        return sub.seq

    def _push(
        self, kind: str, frame: Any, ticker: str | None = None, trade_id: str | None = None
    ) -> None:
        if frame.sending_ts_ms is None:
            frame = msgspec.structs.replace(frame, sending_ts_ms=_now_ms())
        self._queue(_Outgoing(kind, m.encode(frame), ticker, trade_id))

    def _queue(self, item: _Outgoing) -> None:
        self._outbox.append(item)
        self._drained.clear()
        self._wake.set()


def _precheck(obj: Any) -> int | None:
    """Kalshi's error code for a command that cannot be decoded as typed, else None."""
    if not isinstance(obj, dict):
        return 1
    cmd = obj.get("cmd")
    if cmd not in _COMMANDS:
        return 5
    if cmd == "list_subscriptions":
        return None
    params = obj.get("params")
    if not isinstance(params, dict):
        return 2
    name, code = _REQUIRED[cmd]
    return None if params.get(name) else code


def _single_sid(p: m.UpdateSubscriptionParams) -> int | None:
    if (p.sid is None) == (p.sids is None):
        return None
    if p.sid is not None:
        return p.sid
    return p.sids[0] if p.sids and len(p.sids) == 1 else None


def _header(headers: Headers, name: str) -> str | None:
    try:
        return headers.get(name)
    except MultipleValuesError:
        return None


def _json_response(status: int, body: Any) -> Response:
    data = msgspec.json.encode(body)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
        ]
    )
    return Response(status, HTTPStatus(status).phrase, headers, data)


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
    ) -> None:
        self.stats = SimStats()
        self._host, self._port = host, port
        self._public_keys = dict(public_keys) if public_keys is not None else None
        self._tick_interval = tick_interval
        self._trade_probability = trade_probability
        self._rng = random.Random(seed)
        self._specs = dict(markets or {})
        self._markets: dict[str, SimMarket] = {}
        self._by_id: dict[str, str] = {}
        self._sessions: list[_Session] = []
        self._sids = itertools.count(1)
        self._gaps: set[str] = set()
        self._rejections: deque[int] = deque()
        self._accept_then_close = 0
        self._rest_limited = 0
        self._changed = asyncio.Event()
        self._server: Server | None = None
        self._clock: asyncio.Task[None] | None = None
        for ticker in self._specs:
            self.market(ticker)

    def __repr__(self) -> str:
        where = self.ws_url if self._server else "not started"
        return (
            f"<SimulatedExchange {where} connections={len(self._sessions)}"
            f" markets={len(self._markets)}>"
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
        market = self._markets.get(ticker)
        if market is None:
            market = SimMarket(ticker, self._specs.get(ticker), self._rng, _now_ms())
            self._markets[ticker] = market
            self._by_id[market.market_id] = ticker
        return market

    def set_quote(
        self, ticker: str, *, yes_bid: str, yes_ask: str, last: str | None = None
    ) -> None:
        """Pin a market's quote (dollar strings) and push a ticker frame to subscribers now.

        The market stops walking and trading at random; set ``market(t).pinned = False`` to
        let it walk again. Raises ValueError unless ``0 < yes_bid < yes_ask < 1``.
        """
        update = self.market(ticker).set_quote(yes_bid, yes_ask, last, self._rng, _now_ms())
        self._deliver([update])

    def push_trade(
        self, ticker: str, *, yes_price: str, count: str, taker_side: Literal["yes", "no"] = "yes"
    ) -> str:
        """Make one trade now, push it (and a ticker frame) to subscribers; return its id."""
        market, now = self.market(ticker), _now_ms()
        record = market.record_trade(
            parse_micros(yes_price), parse_micros(count), taker_side, now, random_uuid(self._rng)
        )
        self._deliver([MarketUpdate(ticker, market.ticker_msg(now), (record,))])
        return record.trade_id

    async def create_market(self, ticker: str, spec: SimMarketSpec | None = None) -> SimMarket:
        """Create a market and announce it with a ``created`` lifecycle event."""
        if ticker in self._markets:
            raise ValueError(f"market already exists: {ticker}")
        if spec is not None:
            self._specs[ticker] = spec
        market = self.market(ticker)
        self._deliver([market.created(_now_ms())])
        await self._flush()
        return market

    async def settle(self, ticker: str, result: Literal["yes", "no"]) -> None:
        """Emit ``market_lifecycle_v2`` ``determined`` (result, settlement_value) then
        ``settled``; REST then reports ``status: finalized`` and the result."""
        if result not in ("yes", "no"):
            raise ValueError(f"result must be 'yes' or 'no', but got {result!r}")
        self._deliver([self.market(ticker).settle(result, _now_ms())])
        await self._flush()

    async def wait_connected(
        self,
        n: int = 1,
        timeout: float = DEFAULT_WAIT,  # noqa: ASYNC109 (the documented API)
    ) -> None:
        """Wait until the ``n``-th handshake has been accepted. Raises TimeoutError."""
        await self._wait(lambda: self.stats.connections_accepted >= n, timeout, f"connection #{n}")

    async def wait_subscribed(
        self,
        channel: str,
        ticker: str,
        timeout: float = DEFAULT_WAIT,  # noqa: ASYNC109 (the documented API)
    ) -> None:
        """Wait until an open connection has ``channel`` covering ``ticker``."""
        await self._wait(
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
        self._accept_then_close += times

    def reject_handshakes(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` handshakes with HTTP ``status`` (401, 403, 429, 503…)."""
        self._rejections.extend([status] * times)

    def rate_limit_rest(self, times: int = 1) -> None:
        """Answer the next ``times`` REST requests with 429 ``{"error": "too many requests"}``."""
        self._rest_limited += times

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
        self._gaps.add(channel)

    async def malformed(self, payload: bytes | str) -> None:
        """Send ``payload`` as a raw text frame to every connection (bytes are not checked:
        use them for invalid UTF-8). Counted as ``frames_sent["malformed"]``."""
        for session in self._sessions:
            session.send_raw(payload)
        await self._flush()

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
        self._notify()
        await self._flush()

    # Private methods: used by sessions

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _next_sid(self) -> int:
        return next(self._sids)

    def _ticker_for_id(self, market_id: str) -> str | None:
        return self._by_id.get(market_id)

    def _take_gap(self, channel: str) -> bool:
        if channel in self._gaps:
            self._gaps.discard(channel)
            return True
        return False

    def _lost_trade(self, like: TradeRecord) -> None:
        self.market(like.market_ticker).record_trade(
            like.yes_price, like.count, like.taker_side, like.ts_ms, random_uuid(self._rng)
        )

    def _quote(self, ticker: str) -> MarketUpdate:
        return MarketUpdate(ticker, self.market(ticker).ticker_msg(_now_ms()))

    # Private methods

    def _netloc(self) -> str:
        if self._server is None:
            raise RuntimeError("simulated exchange is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def _deliver(self, updates: Sequence[MarketUpdate]) -> None:
        for session in self._sessions:
            session.deliver(updates)

    async def _flush(self) -> None:
        waits = [session.drained() for session in self._sessions]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await asyncio.gather(*waits)

    async def _wait(self, predicate: Callable[[], bool], limit: float, what: str) -> None:
        try:
            async with asyncio.timeout(limit):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"timed out after {limit} s waiting for {what}") from None

    async def _run_clock(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval)
            now = _now_ms()
            updates = [
                market.step(self._rng, now, self._trade_probability)
                for market in self._walking(now)
            ]
            if updates:
                self._deliver(updates)

    def _walking(self, now: int) -> list[SimMarket]:
        """Markets some data subscription wants, that are trading and not pinned."""
        wanted: set[str] = set()
        for session in self._sessions:
            for sub in session.subs.values():
                if sub.channel in DATA_CHANNELS:
                    wanted |= set(self._markets) if sub.tickers is None else sub.tickers
        markets = (self.market(ticker) for ticker in sorted(wanted))
        return [mk for mk in markets if mk.is_trading(now) and not mk.pinned]

    # Private methods: HTTP

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path.startswith(REST_PREFIX + "/"):
            return self._rest(request, path, query)
        if path != WS_PATH:
            return _json_response(404, {"error": {"code": "not_found", "message": path}})
        if self._rejections:
            self.stats.handshakes_rejected += 1
            status = self._rejections.popleft()
            logger.info("handshake rejected by fault injection: HTTP %d", status)
            text = "too many requests" if status == 429 else HTTPStatus(status).phrase.lower()
            return _json_response(status, {"error": text})
        problem = self._auth_problem(request.headers, WS_PATH, required=True)
        if problem is not None:
            self.stats.handshakes_rejected += 1
            logger.info("handshake rejected with HTTP 401: %s", problem)
            return _json_response(401, {"error": {"code": "unauthorized", "message": problem}})
        return None

    def _rest(self, request: Request, path: str, query: str) -> Response:
        if request.method != "GET":
            return _json_response(
                405, {"error": {"code": "method_not_allowed", "message": request.method}}
            )
        if self._rest_limited > 0:
            self._rest_limited -= 1
            return _json_response(429, {"error": "too many requests"})
        problem = self._auth_problem(request.headers, path, required=False)
        if problem is not None:
            return _json_response(401, {"error": {"code": "unauthorized", "message": problem}})
        status, body = route_rest(
            path[len(REST_PREFIX) :],
            parse_qs(query),
            market=self.market,
            every=lambda: list(self._markets.values()),
            now_ms=_now_ms(),
        )
        return _json_response(status, body)

    def _auth_problem(self, headers: Headers, path: str, *, required: bool) -> str | None:
        """Why a request's signature is not acceptable, or None if it is (or need not be)."""
        if self._public_keys is None:
            return None
        names = ("KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE")
        key_id, stamp, signature = (_header(headers, name) for name in names)
        if not (key_id or stamp or signature):
            return "missing KALSHI-ACCESS-* headers" if required else None
        if not (key_id and stamp and signature):
            return "incomplete KALSHI-ACCESS-* headers"
        key = self._public_keys.get(key_id)
        if key is None:
            return f"unknown API key id {key_id!r}"
        if not stamp.isdigit():
            return f"timestamp is not milliseconds: {stamp!r}"
        skew = int(stamp) - _now_ms()
        if abs(skew) > MAX_CLOCK_SKEW_MS:
            return f"timestamp is {skew} ms off the server clock"
        if not verify_signature(
            key, timestamp_ms=stamp, method="GET", path=path, signature_b64=signature
        ):
            return f"signature does not verify for GET {path}"
        return None

    # Private methods: WebSocket

    async def _handle(self, ws: ServerConnection) -> None:
        commands: list[m.Command] = []
        self.stats.connections_accepted += 1
        self.stats.commands.append(commands)
        if ws.request is not None and (
            stamp := _header(ws.request.headers, "KALSHI-ACCESS-TIMESTAMP")
        ):
            self.stats.handshake_timestamps.append(stamp)
        self._notify()
        if self._accept_then_close > 0:
            self._accept_then_close -= 1
            logger.info("closing accepted connection by fault injection")
            await ws.close(1001, "going away")
            return
        session = _Session(self, ws, commands)
        self._sessions.append(session)
        sender = asyncio.create_task(session.run_sender(), name="watcher.sim sender")
        try:
            async for message in ws:
                session.receive(message)
        except ConnectionClosed:
            pass
        finally:
            self._sessions.remove(session)
            session.closed()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self._notify()


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
