"""Kalshi's WebSocket commands (client → server), a tagged union on ``cmd``, and the encoder.

Sans-I/O: this module imports neither asyncio nor websockets (kalshi-protocol.md §3).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

from watcher.kalshi.errors import DecodeError
from watcher.kalshi.payloads import KalshiStruct

__all__ = [
    "CHANNELS",
    "Command",
    "ListSubscriptions",
    "Subscribe",
    "SubscribeParams",
    "Unsubscribe",
    "UnsubscribeParams",
    "UpdateSubscription",
    "UpdateSubscriptionParams",
    "decode_command",
    "encode",
]

#: Channel names Kalshi accepts in ``subscribe`` today (kalshi-protocol.md §3.1).
CHANNELS = frozenset(
    {
        "orderbook_delta",
        "ticker",
        "trade",
        "fill",
        "market_positions",
        "market_lifecycle_v2",
        "multivariate_market_lifecycle",
        "communications",
        "order_group_updates",
        "user_orders",
        "cfbenchmarks_value",
        "cfbenchmarks_value_5hz",
        "pyth_value",
    }
)


class SubscribeParams(KalshiStruct, kw_only=True, frozen=True):
    channels: list[str]
    market_ticker: str | None = None
    market_tickers: list[str] | None = None
    market_id: str | None = None
    market_ids: list[str] | None = None
    send_initial_snapshot: bool | None = None
    skip_ticker_ack: bool | None = None
    use_yes_price: bool | None = None


class UnsubscribeParams(KalshiStruct, kw_only=True, frozen=True):
    sids: list[int]


class UpdateSubscriptionParams(KalshiStruct, kw_only=True, frozen=True):
    action: str
    sid: int | None = None
    sids: list[int] | None = None
    market_ticker: str | None = None
    market_tickers: list[str] | None = None
    market_id: str | None = None
    market_ids: list[str] | None = None
    send_initial_snapshot: bool | None = None


class _Command(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="cmd"):
    id: int | None = None


class Subscribe(_Command, tag="subscribe", kw_only=True, frozen=True):
    params: SubscribeParams


class Unsubscribe(_Command, tag="unsubscribe", kw_only=True, frozen=True):
    params: UnsubscribeParams


class UpdateSubscription(_Command, tag="update_subscription", kw_only=True, frozen=True):
    params: UpdateSubscriptionParams


class ListSubscriptions(_Command, tag="list_subscriptions", kw_only=True, frozen=True):
    pass


Command: TypeAlias = Subscribe | Unsubscribe | UpdateSubscription | ListSubscriptions

_command_decoder: msgspec.json.Decoder[Command] = msgspec.json.Decoder(Command)
_encoder = msgspec.json.Encoder(decimal_format="string")


def decode_command(data: str | bytes) -> Command:
    """Decode a client command (used by the simulator). Raises :class:`DecodeError`."""
    try:
        return _command_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid command: {exc}", data) from exc


def encode(obj: Any) -> bytes:
    """Encode a command or frame to compact JSON (Decimals as strings, ``None`` fields left out)."""
    return _encoder.encode(obj)
