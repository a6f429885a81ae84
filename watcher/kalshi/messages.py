"""Typed Kalshi WebSocket frames (server → client) and commands (client → server).

Sans-I/O: this module imports neither asyncio nor websockets. Text goes in, typed frozen
structs come out. It follows the current wire format (kalshi-protocol.md §3–§4): every data
frame is an envelope ``{"type", "sid", ["seq"], "msg", ["sending_ts_ms"]}``, prices are
fixed-point dollar strings decoded exactly into :class:`~decimal.Decimal`, counts are ``*_fp``
strings. Unknown fields are ignored; legacy integer fields are simply not read.

A real frame, for reference (Kalshi's published ``ticker`` example)::

    {"type": "ticker", "sid": 11, "sending_ts_ms": 1669149841123,
     "msg": {"market_ticker": "FED-23DEC-T3.00", "price_dollars": "0.4800",
             "yes_bid_dollars": "0.4500", "yes_ask_dollars": "0.5300", "ts_ms": 1669149841000, ...}}

Frames of a type this module does not know (``ticker_v2``, a channel added next month) decode
to :class:`UnknownMessage`, never to an exception: the caller logs, counts and hands them on.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, TypeAlias, get_args

import msgspec

from watcher.errors import DecodeError

__all__ = [
    "CHANNELS",
    "FRAME_TYPES",
    "SEQUENCED_TYPES",
    "Command",
    "ErrorMsg",
    "ErrorReply",
    "EventFeeUpdate",
    "EventFeeUpdateMsg",
    "EventLifecycle",
    "EventLifecycleMsg",
    "Fill",
    "FillMsg",
    "ListSubscriptions",
    "MarketLifecycle",
    "MarketLifecycleMsg",
    "MarketPosition",
    "MarketPositionMsg",
    "Message",
    "Ok",
    "OkMarkets",
    "OrderGroupUpdate",
    "OrderbookDelta",
    "OrderbookDeltaMsg",
    "OrderbookSnapshot",
    "OrderbookSnapshotMsg",
    "RestMarket",
    "RestMarketResponse",
    "RestOrderbook",
    "RestOrderbookResponse",
    "RestTrade",
    "RestTradesResponse",
    "Subscribe",
    "SubscribeParams",
    "Subscribed",
    "SubscribedMsg",
    "SubscriptionInfo",
    "Ticker",
    "TickerMsg",
    "Trade",
    "TradeMsg",
    "UnknownMessage",
    "Unsubscribe",
    "UnsubscribeParams",
    "Unsubscribed",
    "UpdateSubscription",
    "UpdateSubscriptionParams",
    "UserOrder",
    "decode_command",
    "decode_message",
    "decode_rest",
    "encode",
    "timestamp_ms",
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

Side: TypeAlias = Literal["yes", "no"]


class _Struct(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Common base: immutable, keyword-only, unknown fields ignored.

    ``gc=False``: decoded frames never form reference cycles, so the cyclic garbage collector
    need not track them. Tens of thousands of them wait in queues under load; untracked, they
    neither trigger collections nor make each collection walk them (a full collection over the
    queues took tens of milliseconds, a stall on the decision path).
    """


def timestamp_ms(ts_ms: int | None, ts: int | None, fallback: int | None) -> int | None:
    """Pick the best timestamp: ``ts_ms``, else deprecated ``ts`` seconds, else ``fallback``."""
    if ts_ms is not None:
        return ts_ms
    if ts is not None:
        return ts * 1000
    return fallback


# ---------------------------------------------------------------------------------------------
# Payloads (the ``msg`` object of each frame)


class TickerMsg(_Struct, kw_only=True, frozen=True):
    """``ticker`` payload: best YES bid/ask, last price, sizes, volume (§4.1)."""

    market_ticker: str
    market_id: str | None = None
    price_dollars: Decimal
    yes_bid_dollars: Decimal
    yes_ask_dollars: Decimal
    volume_fp: Decimal | None = None
    open_interest_fp: Decimal | None = None
    dollar_volume: int | None = None
    dollar_open_interest: int | None = None
    yes_bid_size_fp: Decimal | None = None
    yes_ask_size_fp: Decimal | None = None
    last_trade_size_fp: Decimal | None = None
    ts: int | None = None
    ts_ms: int | None = None
    time: str | None = None


class TradeMsg(_Struct, kw_only=True, frozen=True):
    """``trade`` payload: one public execution (§4.2)."""

    trade_id: str
    market_ticker: str
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    count_fp: Decimal
    taker_side: Side | None = None
    taker_outcome_side: Side | None = None
    taker_book_side: Literal["bid", "ask"] | None = None
    is_block_trade: bool | None = None
    ts: int | None = None
    ts_ms: int | None = None


class OrderbookSnapshotMsg(_Struct, kw_only=True, frozen=True):
    """``orderbook_snapshot`` payload; a side is absent when it has no bids (§4.3)."""

    market_ticker: str
    market_id: str | None = None
    yes_dollars_fp: list[tuple[Decimal, Decimal]] = []
    no_dollars_fp: list[tuple[Decimal, Decimal]] = []


class OrderbookDeltaMsg(_Struct, kw_only=True, frozen=True):
    """``orderbook_delta`` payload: add ``delta_fp`` contracts at (side, price) (§4.3)."""

    market_ticker: str
    market_id: str | None = None
    price_dollars: Decimal
    delta_fp: Decimal
    side: Side
    client_order_id: str | None = None
    subaccount: int | None = None
    ts: str | None = None
    ts_ms: int | None = None


class FillMsg(_Struct, kw_only=True, frozen=True):
    """``fill`` payload: one of your own executions (§4.4)."""

    trade_id: str
    order_id: str
    market_ticker: str
    yes_price_dollars: Decimal
    count_fp: Decimal
    side: Side | None = None
    is_taker: bool | None = None
    fee_cost: Decimal | None = None
    action: str | None = None
    outcome_side: Side | None = None
    book_side: Literal["bid", "ask"] | None = None
    post_position_fp: Decimal | None = None
    purchased_side: Side | None = None
    client_order_id: str | None = None
    subaccount: int | None = None
    exchange_index: int | None = None
    ts: int | None = None
    ts_ms: int | None = None


class MarketPositionMsg(_Struct, kw_only=True, frozen=True):
    """``market_position`` payload (channel ``market_positions``) (§4.5)."""

    market_ticker: str
    position_fp: Decimal
    user_id: str | None = None
    position_cost_dollars: Decimal | None = None
    realized_pnl_dollars: Decimal | None = None
    fees_paid_dollars: Decimal | None = None
    position_fee_cost_dollars: Decimal | None = None
    volume_fp: Decimal | None = None
    subaccount: int | None = None


class MarketLifecycleMsg(_Struct, kw_only=True, frozen=True):
    """``market_lifecycle_v2`` payload; which fields are set depends on ``event_type`` (§4.6)."""

    market_ticker: str
    event_type: str
    exchange_index: int | None = None
    open_ts: int | None = None
    close_ts: int | None = None
    result: str | None = None
    determination_ts: int | None = None
    settlement_value: Decimal | None = None
    settled_ts: int | None = None
    is_deactivated: bool | None = None
    price_level_structure: str | None = None
    price_ranges: list[dict[str, Any]] | None = None
    additional_metadata: dict[str, Any] | None = None
    strike_type: str | None = None
    floor_strike: int | float | None = None
    cap_strike: int | float | None = None
    yes_sub_title: str | None = None


class EventLifecycleMsg(_Struct, kw_only=True, frozen=True):
    """``event_lifecycle`` payload (arrives on the lifecycle channels)."""

    event_ticker: str
    exchange_index: int | None = None
    title: str | None = None
    subtitle: str | None = None
    collateral_return_type: str | None = None
    series_ticker: str | None = None


class EventFeeUpdateMsg(_Struct, kw_only=True, frozen=True):
    """``event_fee_update`` payload."""

    event_ticker: str
    fee_type_override: str | None = None
    fee_multiplier_override: int | float | None = None


class SubscribedMsg(_Struct, kw_only=True, frozen=True):
    channel: str
    sid: int


class SubscriptionInfo(_Struct, kw_only=True, frozen=True):
    """One entry of the ``list_subscriptions`` answer."""

    channel: str
    sid: int


class OkMarkets(_Struct, kw_only=True, frozen=True):
    """``ok`` payload after ``update_subscription``: the full market list after the change."""

    market_tickers: list[str] | None = None
    market_ids: list[str] | None = None


class ErrorMsg(_Struct, kw_only=True, frozen=True):
    code: int
    msg: str
    market_ticker: str | None = None
    market_tickers: list[str] | None = None


# ---------------------------------------------------------------------------------------------
# Frames (envelopes), a tagged union on ``type``


class _Frame(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type", gc=False
):
    """Common base of the envelopes (untracked by the garbage collector, as :class:`_Struct`)."""

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


# ---------------------------------------------------------------------------------------------
# Commands (client → server), a tagged union on ``cmd``


class SubscribeParams(_Struct, kw_only=True, frozen=True):
    channels: list[str]
    market_ticker: str | None = None
    market_tickers: list[str] | None = None
    market_id: str | None = None
    market_ids: list[str] | None = None
    send_initial_snapshot: bool | None = None
    skip_ticker_ack: bool | None = None
    use_yes_price: bool | None = None


class UnsubscribeParams(_Struct, kw_only=True, frozen=True):
    sids: list[int]


class UpdateSubscriptionParams(_Struct, kw_only=True, frozen=True):
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


# ---------------------------------------------------------------------------------------------
# REST bodies (kalshi-protocol.md §11)


class RestMarket(_Struct, kw_only=True, frozen=True):
    """The fields of ``GET /markets/{ticker}`` that watcher uses; the rest are ignored."""

    ticker: str
    event_ticker: str | None = None
    title: str | None = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    status: str | None = None
    open_time: str | None = None
    close_time: str | None = None
    latest_expiration_time: str | None = None
    result: str | None = None
    yes_bid_dollars: Decimal | None = None
    yes_ask_dollars: Decimal | None = None
    no_bid_dollars: Decimal | None = None
    no_ask_dollars: Decimal | None = None
    last_price_dollars: Decimal | None = None
    volume_fp: Decimal | None = None
    open_interest_fp: Decimal | None = None
    yes_bid_size_fp: Decimal | None = None
    yes_ask_size_fp: Decimal | None = None
    settlement_value_dollars: Decimal | None = None
    can_close_early: bool | None = None


class RestMarketResponse(_Struct, kw_only=True, frozen=True):
    market: RestMarket


class RestOrderbook(_Struct, kw_only=True, frozen=True):
    yes_dollars: list[tuple[Decimal, Decimal]] | None = None
    no_dollars: list[tuple[Decimal, Decimal]] | None = None


class RestOrderbookResponse(_Struct, kw_only=True, frozen=True):
    orderbook_fp: RestOrderbook


class RestTrade(_Struct, kw_only=True, frozen=True):
    trade_id: str
    ticker: str
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    count_fp: Decimal
    taker_side: Side | None = None
    created_time: str | None = None
    ts_ms: int | None = None


class RestTradesResponse(_Struct, kw_only=True, frozen=True):
    trades: list[RestTrade] = []
    cursor: str | None = None


def decode_rest(data: str | bytes, type_: type[Any]) -> Any:
    """Decode a REST body into ``type_``. Raises :class:`DecodeError`."""
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid {type_.__name__} body: {exc}", data) from exc
