"""Wire constants, counters and command checks of the simulated Kalshi exchange.

Sans-I/O. Kalshi's error texts and channel sets (kalshi-protocol.md §3, §5, §8), the
:class:`SimStats` counters tests compare with what the client stored, and the checks that give
a command Kalshi's error code before it is decoded as typed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from watcher.kalshi import messages as m
from watcher.kalshi.auth import WS_SIGN_PATH

__all__ = [
    "ACTIONS",
    "DATA_CHANNELS",
    "ERROR_TEXT",
    "GLOBAL",
    "HEARTBEAT",
    "HEARTBEAT_INTERVAL",
    "REST_PREFIX",
    "SEQUENCED",
    "TERMINAL_CODES",
    "WS_PATH",
    "MarketStats",
    "Outgoing",
    "SimStats",
    "now_ms",
    "precheck",
    "single_sid",
]

WS_PATH = WS_SIGN_PATH
REST_PREFIX = "/trade-api/v2"
#: Kalshi pings every 10 s with the body ``heartbeat`` (§9).
HEARTBEAT_INTERVAL = 10.0
HEARTBEAT = b"heartbeat"
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


def now_ms() -> int:
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

    def _record(self, item: Outgoing) -> None:
        self.frames_sent[item.kind] += 1
        if item.kind == "ticker" and item.market_ticker:
            self.market(item.market_ticker).ticker_frames += 1
        elif item.kind == "trade" and item.market_ticker and item.trade_id:
            self.market(item.market_ticker).trade_ids.append(item.trade_id)


class Outgoing(NamedTuple):
    kind: str
    data: bytes
    market_ticker: str | None = None
    trade_id: str | None = None


def precheck(obj: Any) -> int | None:
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


def single_sid(p: m.UpdateSubscriptionParams) -> int | None:
    if (p.sid is None) == (p.sids is None):
        return None
    if p.sid is not None:
        return p.sid
    return p.sids[0] if p.sids and len(p.sids) == 1 else None
