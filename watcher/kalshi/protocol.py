"""Sans-I/O Kalshi WebSocket session: commands out, typed events in.

This module imports neither asyncio nor websockets (style.md habit 1). The transport feeds it
text with :meth:`KalshiProtocol.receive_text`, then collects :meth:`events_received` and writes
:meth:`data_to_send` to the socket. It owns:

- command ids (from 1 on every connection) and the replies to them;
- the wanted subscriptions (channel → markets, ``None`` = every market), which survive
  reconnects, and the live ``channel → sid → markets`` map of the current connection;
- per-sid ``seq`` tracking on sequenced channels, emitting :class:`SequenceGapEvent`;
- recovery that Kalshi asks of clients: a ``get_snapshot`` on an order-book gap and a fresh
  subscribe after the terminal channel errors 10 and 25.

Call :meth:`connection_made` when a connection opens: it queues the subscribe commands that
restore every wanted subscription.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from watcher.kalshi import messages as m
from watcher.kalshi.errors import DecodeError
from watcher.kalshi.events import CommandRejected, DecodeFailure, Event, SequenceGapEvent

__all__ = [
    "LIFECYCLE_CHANNELS",
    "TERMINAL_ERROR_CODES",
    "CommandRejected",
    "DecodeFailure",
    "Event",
    "KalshiProtocol",
    "SequenceGapEvent",
    "State",
    "Subscription",
]

logger = logging.getLogger("watcher.feed")

#: Channel errors after which the subscription is gone and must be made again (§5, §8).
TERMINAL_ERROR_CODES = frozenset({10, 17, 25})
#: Channels that accept no market filter (§3.1).
LIFECYCLE_CHANNELS = frozenset({"market_lifecycle_v2", "multivariate_market_lifecycle"})


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"


@dataclass(slots=True)
class Subscription:
    """One live subscription of the current connection."""

    sid: int
    channel: str
    markets: set[str] | None
    last_seq: int | None = None


@dataclass(slots=True)
class _Pending:
    command: m.Command
    # For an update_subscription: what to do if the server refuses it.
    channel: str | None = None
    markets: tuple[str, ...] = ()
    done_sids: set[int] = field(default_factory=set)


class KalshiProtocol:
    """State of one logical Kalshi session across connections.

    Args:
        use_yes_price: sent explicitly on every order-book subscribe, so Kalshi's planned flip
            of the default cannot silently invert the NO side (§7.4).
        debug: log every frame at DEBUG (guarded, so the hot path pays nothing when off).
    """

    def __init__(self, *, use_yes_price: bool = False, debug: bool = False) -> None:
        self.use_yes_price = use_yes_price
        self.debug = debug
        self.state = State.CLOSED
        self.wanted: dict[str, set[str] | None] = {}
        self.subscriptions: dict[int, Subscription] = {}
        self._next_id = 1
        self._pending: dict[int, _Pending] = {}
        self._events: list[Event] = []
        self._outgoing: list[bytes] = []

    def __repr__(self) -> str:
        return (
            f"<KalshiProtocol {self.state.value} wanted={sorted(self.wanted)}"
            f" sids={sorted(self.subscriptions)}>"
        )

    # Public methods

    def connection_made(self) -> None:
        """Start a new connection: fresh ids and sids, and resubscribe everything wanted."""
        self.state = State.OPEN
        self._next_id = 1
        self._pending.clear()
        self.subscriptions.clear()
        groups: dict[frozenset[str] | None, list[str]] = {}
        key: frozenset[str] | None
        for channel, markets in self.wanted.items():
            key = None if markets is None else frozenset(markets)
            groups.setdefault(key, []).append(channel)
        for group, channels in groups.items():
            self._send_subscribe(channels, None if group is None else sorted(group))

    def connection_lost(self) -> None:
        self.state = State.CLOSED
        self.subscriptions.clear()
        self._pending.clear()

    def subscribe(
        self, channels: Iterable[str], market_tickers: Iterable[str] | None = None
    ) -> None:
        """Want ``channels`` for ``market_tickers`` (``None``: all markets) from now on.

        Markets are added to what is already wanted. When the connection is open the commands
        go out at once (``subscribe`` for a new channel, ``update_subscription`` otherwise).
        """
        tickers = None if market_tickers is None else sorted(set(market_tickers))
        new_channels = []
        for channel in channels:
            if channel in LIFECYCLE_CHANNELS or tickers is None:
                self.wanted[channel] = None
                new_channels.append(channel)
            elif channel in self.wanted:
                self.add_markets(channel, tickers)
            else:
                self.wanted[channel] = set(tickers)
                new_channels.append(channel)
        if self.state is State.OPEN and new_channels:
            filtered = [c for c in new_channels if self.wanted[c] is not None]
            unfiltered = [c for c in new_channels if self.wanted[c] is None]
            if filtered:
                self._send_subscribe(filtered, tickers)
            if unfiltered:
                self._send_subscribe(unfiltered, None)

    def unsubscribe(self, channels: Iterable[str]) -> None:
        """Stop wanting ``channels`` and unsubscribe their live sids."""
        channels = set(channels)
        for channel in channels:
            self.wanted.pop(channel, None)
        sids = [s.sid for s in self.subscriptions.values() if s.channel in channels]
        if sids and self.state is State.OPEN:
            self._send(m.Unsubscribe(id=self._take_id(), params=m.UnsubscribeParams(sids=sids)))

    def add_markets(self, channel: str, tickers: Iterable[str]) -> None:
        """Add markets to a wanted channel, on the live connection without reconnecting."""
        wanted = self.wanted.get(channel)
        new = sorted(set(tickers) - wanted) if wanted is not None else []
        if wanted is None or not new:
            return
        wanted.update(new)
        self._update(channel, "add_markets", new)

    def remove_markets(self, channel: str, tickers: Iterable[str]) -> None:
        """Remove markets from a wanted channel on the live connection."""
        wanted = self.wanted.get(channel)
        gone = sorted(wanted & set(tickers)) if wanted is not None else []
        if wanted is None or not gone:
            return
        wanted.difference_update(gone)
        if not wanted:
            self.unsubscribe([channel])
            return
        self._update(channel, "delete_markets", gone)

    def request_snapshot(self, sid: int, market_tickers: Iterable[str]) -> None:
        """Ask for a fresh ``orderbook_snapshot`` without touching the delta stream."""
        params = m.UpdateSubscriptionParams(
            action="get_snapshot", sids=[sid], market_tickers=sorted(market_tickers)
        )
        self._send(m.UpdateSubscription(id=self._take_id(), params=params))

    def list_subscriptions(self) -> int:
        """Send ``list_subscriptions``; the answer is an :class:`~messages.Ok` with that id."""
        command_id = self._take_id()
        self._send(m.ListSubscriptions(id=command_id))
        return command_id

    def sid_of(self, channel: str) -> int | None:
        for sub in self.subscriptions.values():
            if sub.channel == channel:
                return sub.sid
        return None

    def receive_text(self, data: str | bytes) -> None:
        """Feed one text frame. Call :meth:`events_received` and :meth:`data_to_send` after it.

        ``bytes`` are preferred: msgspec validates UTF-8 while decoding, so the transport need
        not decode the frame to ``str`` first.
        """
        if self.debug:
            logger.debug("< %.200s", data)
        try:
            message = m.decode_message(data)
        except DecodeError as exc:
            self._events.append(DecodeFailure(exc))
            return
        # Data frames (ticker, trade, ...) are by far the most frequent: they pass with two
        # attribute reads and a dict lookup; control replies update the session's state.
        if message.seq is not None and message.sid is not None and not self._check_seq(message):
            return
        track = _TRACKERS.get(type(message))
        if track is not None:
            track(self, message)
        self._events.append(message)

    def events_received(self) -> list[Event]:
        """Events decoded since the last call, in arrival order."""
        events, self._events = self._events, []
        return events

    @property
    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` would return frames (a cheap check for the hot path)."""
        return bool(self._outgoing)

    def data_to_send(self) -> list[bytes]:
        """Frames to write, in order, since the last call."""
        data, self._outgoing = self._outgoing, []
        return data

    # Private methods

    def _take_id(self) -> int:
        command_id = self._next_id
        self._next_id += 1
        return command_id

    def _send(self, command: m.Command, pending: _Pending | None = None) -> None:
        if command.id is not None:
            self._pending[command.id] = pending or _Pending(command)
        frame = m.encode(command)
        if self.debug:
            logger.debug("> %s", frame.decode())
        self._outgoing.append(frame)

    def _send_subscribe(self, channels: list[str], tickers: list[str] | None) -> None:
        use_yes = self.use_yes_price if "orderbook_delta" in channels else None
        params = m.SubscribeParams(
            channels=channels, market_tickers=tickers or None, use_yes_price=use_yes
        )
        self._send(m.Subscribe(id=self._take_id(), params=params))

    def _update(self, channel: str, action: str, tickers: list[str]) -> None:
        if self.state is not State.OPEN:
            return  # connection_made() subscribes with the full wanted set
        sid = self.sid_of(channel)
        if sid is None:
            # Not acknowledged yet: subscribe is additive and idempotent (§3.1).
            self._send_subscribe([channel], sorted(self.wanted[channel] or ()))
            return
        params = m.UpdateSubscriptionParams(action=action, sids=[sid], market_tickers=tickers)
        command = m.UpdateSubscription(id=self._take_id(), params=params)
        self._send(command, _Pending(command, channel=channel, markets=tuple(tickers)))

    def _check_seq(self, message: m.Message | m.UnknownMessage) -> bool:
        """Track ``seq``; return False for a stale duplicate that must be dropped."""
        sub = self.subscriptions.get(message.sid)  # type: ignore[arg-type]
        seq = message.seq
        if sub is None or seq is None:
            return True
        kind = type(message)
        if kind in _ACKS:
            sub.last_seq = seq  # acks report the subscription's current seq (§5)
            return True
        if kind not in _SEQUENCED and _type_of(message) not in m.SEQUENCED_TYPES:
            return True  # e.g. a ticker frame carrying seq: tolerated, never checked (§5)
        last = sub.last_seq
        if last is None or seq == last + 1 or isinstance(message, m.OrderbookSnapshot):
            sub.last_seq = seq
            return True
        if seq <= last:
            logger.warning(
                "dropping stale frame on %s sid %d: seq %d after %d",
                sub.channel,
                sub.sid,
                seq,
                last,
            )
            return False
        sub.last_seq = seq
        markets = tuple(sorted(sub.markets)) if sub.markets else ()
        logger.warning(
            "sequence gap on %s sid %d: expected seq %d, got %d",
            sub.channel,
            sub.sid,
            last + 1,
            seq,
        )
        self._events.append(SequenceGapEvent(sub.sid, sub.channel, last + 1, seq, markets))
        if sub.channel == "orderbook_delta" and markets:
            self.request_snapshot(sub.sid, markets)
        return True

    def _on_snapshot(self, message: m.OrderbookSnapshot) -> None:
        if message.id is not None:
            self._pending.pop(message.id, None)

    def _on_subscribed(self, message: m.Subscribed) -> None:
        pending = self._pending.get(message.id) if message.id is not None else None
        channel, sid = message.msg.channel, message.msg.sid
        markets = self.wanted.get(channel)
        self.subscriptions[sid] = Subscription(
            sid, channel, None if markets is None else set(markets)
        )
        if pending is not None:
            pending.done_sids.add(sid)
            command = pending.command
            if isinstance(command, m.Subscribe) and len(pending.done_sids) >= len(
                command.params.channels
            ):
                del self._pending[message.id]  # type: ignore[arg-type]

    def _on_unsubscribed(self, message: m.Unsubscribed) -> None:
        if message.sid is not None:
            self.subscriptions.pop(message.sid, None)

    def _on_ok(self, message: m.Ok) -> None:
        pending = self._pending.pop(message.id, None) if message.id is not None else None
        sub = self.subscriptions.get(message.sid) if message.sid is not None else None
        if sub is not None and isinstance(message.msg, m.OkMarkets) and message.msg.market_tickers:
            sub.markets = set(message.msg.market_tickers)
        elif sub is not None and pending is not None and pending.channel is not None:
            sub.markets = set(self.wanted.get(pending.channel) or ())

    def _on_error(self, message: m.ErrorReply) -> None:
        code = message.msg.code
        pending = self._pending.pop(message.id, None) if message.id is not None else None
        if message.sid is not None and code in TERMINAL_ERROR_CODES:
            self._resubscribe_sid(message.sid, code)
            return
        if pending is not None and pending.channel is not None:
            self._fallback_update(pending, code)
        self._events.append(
            CommandRejected(code, message.msg.msg, pending.command if pending else None)
        )

    def _resubscribe_sid(self, sid: int, code: int) -> None:
        sub = self.subscriptions.pop(sid, None)
        if sub is None or sub.channel not in self.wanted:
            return
        logger.warning("terminal error %d on %s sid %d: resubscribing", code, sub.channel, sid)
        markets = self.wanted[sub.channel]
        self._send_subscribe([sub.channel], None if markets is None else sorted(markets))

    def _fallback_update(self, pending: _Pending, code: int) -> None:
        """An update_subscription was refused: rebuild the channel's subscription instead."""
        channel = pending.channel
        assert channel is not None
        logger.warning(
            "update_subscription on %s refused (code %d): resubscribing the channel", channel, code
        )
        sid = self.sid_of(channel)
        if sid is not None:
            self.subscriptions.pop(sid, None)
            self._send(m.Unsubscribe(id=self._take_id(), params=m.UnsubscribeParams(sids=[sid])))
        markets = self.wanted.get(channel)
        if channel in self.wanted:
            self._send_subscribe([channel], None if markets is None else sorted(markets))


#: Control replies that update the session's state, and the method that handles each;
#: data frames pass through untouched.
_TRACKERS: dict[type[Any], Callable[[KalshiProtocol, Any], None]] = {
    m.Subscribed: KalshiProtocol._on_subscribed,
    m.Ok: KalshiProtocol._on_ok,
    m.ErrorReply: KalshiProtocol._on_error,
    m.Unsubscribed: KalshiProtocol._on_unsubscribed,
    m.OrderbookSnapshot: KalshiProtocol._on_snapshot,
}
_ACKS = frozenset({m.Ok, m.Unsubscribed})
_SEQUENCED = frozenset(cls for cls, tag in m.FRAME_TYPES.items() if tag in m.SEQUENCED_TYPES)


def _type_of(message: m.Message | m.UnknownMessage) -> str:
    if isinstance(message, m.UnknownMessage):
        return message.type
    return str(type(message).__struct_config__.tag)
