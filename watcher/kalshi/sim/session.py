"""One accepted WebSocket of the simulated exchange: subscriptions, outbox and sender task.

The :class:`SimSession` turns client commands into replies and market updates into data frames,
in order, for one connection of :class:`~watcher.kalshi.sim.exchange.SimulatedExchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from watcher.kalshi import messages as m
from watcher.kalshi.errors import DecodeError
from watcher.kalshi.sim.market import MarketUpdate, TradeRecord, yes_leg
from watcher.kalshi.sim.state import ExchangeState
from watcher.kalshi.sim.wire import (
    ACTIONS,
    ERROR_TEXT,
    GLOBAL,
    HEARTBEAT,
    SEQUENCED,
    TERMINAL_CODES,
    Outgoing,
    now_ms,
    precheck,
    single_sid,
)

__all__ = ["SimSession", "SimSubscription"]


@dataclass(eq=False)
class SimSubscription:
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


class SimSession:
    """One accepted WebSocket: its subscriptions, outbox and sender task.

    Args:
        state: what the exchange's connections share (markets, sids, scripted gaps, counters).
        ws: the accepted connection.
        commands: every command decoded on it is appended here (tests read them).
        heartbeat_interval: seconds between heartbeat pings.
    """

    def __init__(
        self,
        state: ExchangeState,
        ws: ServerConnection,
        commands: list[m.Command],
        *,
        heartbeat_interval: float,
    ) -> None:
        self.state = state
        self.heartbeat_interval = heartbeat_interval
        self.ws = ws
        self.commands = commands
        self.subs: dict[int, SimSubscription] = {}
        self._outbox: deque[Outgoing] = deque()
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
        code = precheck(obj)
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
        self.state.notify()
        return None

    def deliver(self, updates: Sequence[MarketUpdate]) -> None:
        """Queue the frames these market updates mean for this connection's subscriptions."""
        if self.is_silenced:
            return
        now = now_ms()
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
        self._queue(Outgoing("malformed", data))

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
        interval = self.heartbeat_interval
        next_ping = loop.time() + interval
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._unsilenced.wait()
                while self._outbox and not self.is_silenced:
                    item = self._outbox.popleft()
                    await self.ws.send(item.data, text=True)
                    self.state.stats._record(item)
                if self._outbox:
                    continue  # silenced mid-way
                self._drained.set()
                if loop.time() >= next_ping:
                    next_ping = loop.time() + interval
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
        initial: list[tuple[SimSubscription, list[str]]] = []  # acks first, then data
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
                known = [t for t in added if not self.state.market(t).unknown]
                self.deliver([self.state.quote(t) for t in known])
        return None

    def _open(
        self, cmd_id: int | None, channel: str, tickers: list[str], p: m.SubscribeParams
    ) -> SimSubscription:
        sub = SimSubscription(
            self.state.next_sid(),
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
        sid = single_sid(p)
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
        found = [t for t in map(self.state.ticker_for_id, ids) if t]
        return list(dict.fromkeys(([one] if one else []) + (many or []) + found))

    def _snapshots(self, sub: SimSubscription, tickers: Iterable[str], cmd_id: int | None) -> None:
        for ticker in tickers:
            market = self.state.market(ticker)
            if market.unknown:
                continue  # Kalshi accepts unknown tickers silently and sends nothing
            frame = m.OrderbookSnapshot(
                id=cmd_id,
                sid=sub.sid,
                seq=self._next_seq(sub, None),
                msg=market.snapshot(sub.use_yes_price),
                sending_ts_ms=now_ms(),
            )
            self._push("orderbook_snapshot", frame, ticker)

    def _push_ok(self, cmd_id: int | None, sub: SimSubscription) -> None:
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

    def _deliver_one(self, sub: SimSubscription, u: MarketUpdate, now: int) -> None:
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

    def _next_seq(self, sub: SimSubscription, trade: TradeRecord | None) -> int:
        if self.state.take_gap(sub.channel):
            sub.seq += 1  # never sent; a skipped trade still exists for REST backfill
            if trade is not None:
                self.state.lost_trade(trade)
        sub.seq += 1
        return sub.seq

    def _push(
        self, kind: str, frame: Any, ticker: str | None = None, trade_id: str | None = None
    ) -> None:
        if frame.sending_ts_ms is None:
            frame = msgspec.structs.replace(frame, sending_ts_ms=now_ms())
        self._queue(Outgoing(kind, m.encode(frame), ticker, trade_id))

    def _queue(self, item: Outgoing) -> None:
        self._outbox.append(item)
        self._drained.clear()
        self._wake.set()
