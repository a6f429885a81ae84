"""Kalshi's WebSocket frames (server → client), a tagged union on ``type``, and their decoder.

Sans-I/O: this module imports neither asyncio nor websockets. Every data frame is an envelope
``{"type", "sid", ["seq"], "msg", ["sending_ts_ms"]}`` around a payload of
:mod:`watcher.kalshi.payloads`. Frames of a type this module does not know decode to
:class:`UnknownMessage`, never to an exception.
"""

from __future__ import annotations

from typing import Any, TypeAlias, get_args

import msgspec

from watcher.kalshi.errors import DecodeError
from watcher.kalshi.payloads import (
    ErrorMsg,
    EventFeeUpdateMsg,
    EventLifecycleMsg,
    FillMsg,
    MarketLifecycleMsg,
    MarketPositionMsg,
    OkMarkets,
    OrderbookDeltaMsg,
    OrderbookSnapshotMsg,
    SubscribedMsg,
    SubscriptionInfo,
    TickerMsg,
    TradeMsg,
)

__all__ = [
    "FRAME_TYPES",
    "SEQUENCED_TYPES",
    "ErrorReply",
    "EventFeeUpdate",
    "EventLifecycle",
    "Fill",
    "MarketLifecycle",
    "MarketPosition",
    "Message",
    "Ok",
    "OrderGroupUpdate",
    "OrderbookDelta",
    "OrderbookSnapshot",
    "Subscribed",
    "Ticker",
    "Trade",
    "UnknownMessage",
    "Unsubscribed",
    "UserOrder",
    "decode_message",
]


class _Frame(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type", gc=False
):
    """Common base of the envelopes (untracked by the garbage collector, like payloads)."""

    sid: int | None = None
    seq: int | None = None
    sending_ts_ms: int | None = None


class Ticker(_Frame, tag="ticker", kw_only=True, frozen=True):
    msg: TickerMsg


class Trade(_Frame, tag="trade", kw_only=True, frozen=True):
    msg: TradeMsg


class OrderbookSnapshot(_Frame, tag="orderbook_snapshot", kw_only=True, frozen=True):
    id: int | None = None
    msg: OrderbookSnapshotMsg


class OrderbookDelta(_Frame, tag="orderbook_delta", kw_only=True, frozen=True):
    msg: OrderbookDeltaMsg


class Fill(_Frame, tag="fill", kw_only=True, frozen=True):
    msg: FillMsg


class MarketPosition(_Frame, tag="market_position", kw_only=True, frozen=True):
    msg: MarketPositionMsg


class MarketLifecycle(_Frame, tag="market_lifecycle_v2", kw_only=True, frozen=True):
    msg: MarketLifecycleMsg


class EventLifecycle(_Frame, tag="event_lifecycle", kw_only=True, frozen=True):
    msg: EventLifecycleMsg


class EventFeeUpdate(_Frame, tag="event_fee_update", kw_only=True, frozen=True):
    msg: EventFeeUpdateMsg


class UserOrder(_Frame, tag="user_order", kw_only=True, frozen=True):
    """Private ``user_orders`` frame; kept loose because watcher does not trade."""

    msg: dict[str, Any]


class OrderGroupUpdate(_Frame, tag="order_group_updates", kw_only=True, frozen=True):
    msg: dict[str, Any]


class Subscribed(_Frame, tag="subscribed", kw_only=True, frozen=True):
    id: int | None = None
    msg: SubscribedMsg


class Unsubscribed(_Frame, tag="unsubscribed", kw_only=True, frozen=True):
    id: int | None = None


class Ok(_Frame, tag="ok", kw_only=True, frozen=True):
    """Reply to ``update_subscription`` (``msg`` is :class:`OkMarkets`) or to
    ``list_subscriptions`` (``msg`` is a list of :class:`SubscriptionInfo`)."""

    id: int | None = None
    msg: list[SubscriptionInfo] | OkMarkets | None = None


class ErrorReply(_Frame, tag="error", kw_only=True, frozen=True):
    id: int | None = None
    msg: ErrorMsg


class UnknownMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A frame whose ``type`` watcher does not know; ``raw`` is the decoded JSON object."""

    type: str
    sid: int | None = None
    seq: int | None = None
    raw: dict[str, Any]


Message: TypeAlias = (
    Ticker
    | Trade
    | OrderbookSnapshot
    | OrderbookDelta
    | Fill
    | MarketPosition
    | MarketLifecycle
    | EventLifecycle
    | EventFeeUpdate
    | UserOrder
    | OrderGroupUpdate
    | Subscribed
    | Unsubscribed
    | Ok
    | ErrorReply
)

#: The wire ``type`` of every frame class (``Ticker`` → ``"ticker"``), for fast dispatch.
FRAME_TYPES: dict[type[Any], str] = {
    cls: str(cls.__struct_config__.tag) for cls in get_args(Message)
}

#: Frame types that carry a per-subscription ``seq`` worth checking (§5).
SEQUENCED_TYPES = frozenset(
    {
        "trade",
        "orderbook_snapshot",
        "orderbook_delta",
        "market_lifecycle_v2",
        "event_lifecycle",
        "event_fee_update",
        "order_group_updates",
    }
)

_KNOWN_TYPES = frozenset(
    {
        "ticker",
        "trade",
        "orderbook_snapshot",
        "orderbook_delta",
        "fill",
        "market_position",
        "market_lifecycle_v2",
        "event_lifecycle",
        "event_fee_update",
        "user_order",
        "order_group_updates",
        "subscribed",
        "unsubscribed",
        "ok",
        "error",
    }
)

_message_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)
_any_decoder = msgspec.json.Decoder()


def decode_message(data: str | bytes) -> Message | UnknownMessage:
    """Decode one server frame.

    Returns:
        A typed frame, or :class:`UnknownMessage` for a well-formed frame of a type we don't know.

    Raises:
        DecodeError: the text is not JSON, not a JSON object with a string ``type``, or a known
            type with a missing or mistyped field. The error text names the type and the field.
    """
    try:
        return _message_decoder.decode(data)
    except msgspec.DecodeError as exc:
        return _decode_slow(data, exc)
    except UnicodeDecodeError as exc:  # bytes whose tag ("type") is not UTF-8
        raise DecodeError(f"frame is not valid UTF-8: {exc}", data) from exc


def _decode_slow(data: str | bytes, exc: msgspec.DecodeError) -> UnknownMessage:
    """Second pass, only for frames the typed decoder refused."""
    try:
        obj = _any_decoder.decode(data)
    except msgspec.DecodeError as inner:
        raise DecodeError(f"frame is not valid JSON: {inner}", data) from inner
    except UnicodeDecodeError as inner:  # bytes: a key the typed pass skipped is not UTF-8
        raise DecodeError(f"frame is not valid UTF-8: {inner}", data) from inner
    if not isinstance(obj, dict):
        raise DecodeError(f"frame is not a JSON object but {type(obj).__name__}", data) from exc
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise DecodeError("frame has no string 'type' field", data) from exc
    if kind in _KNOWN_TYPES:
        raise DecodeError(f"invalid {kind} frame: {exc}", data) from exc
    sid, seq = obj.get("sid"), obj.get("seq")
    return UnknownMessage(
        type=kind,
        sid=sid if isinstance(sid, int) else None,
        seq=seq if isinstance(seq, int) else None,
        raw=obj,
    )
