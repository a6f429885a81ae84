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

This module is the one place to import them from; they are defined, by seam, in
:mod:`watcher.kalshi.payloads` (the ``msg`` objects), :mod:`watcher.kalshi.frames` (envelopes
and :func:`decode_message`), :mod:`watcher.kalshi.commands` (commands and :func:`encode`) and
:mod:`watcher.kalshi.rest_bodies` (REST answers and :func:`decode_rest`).
"""

from __future__ import annotations

from watcher.kalshi.commands import (
    CHANNELS,
    Command,
    ListSubscriptions,
    Subscribe,
    SubscribeParams,
    Unsubscribe,
    UnsubscribeParams,
    UpdateSubscription,
    UpdateSubscriptionParams,
    decode_command,
    encode,
)
from watcher.kalshi.frames import (
    FRAME_TYPES,
    SEQUENCED_TYPES,
    ErrorReply,
    EventFeeUpdate,
    EventLifecycle,
    Fill,
    MarketLifecycle,
    MarketPosition,
    Message,
    Ok,
    OrderbookDelta,
    OrderbookSnapshot,
    OrderGroupUpdate,
    Subscribed,
    Ticker,
    Trade,
    UnknownMessage,
    Unsubscribed,
    UserOrder,
    decode_message,
)
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
    timestamp_ms,
)
from watcher.kalshi.rest_bodies import (
    RestEvent,
    RestEventResponse,
    RestEventsResponse,
    RestMarket,
    RestMarketResponse,
    RestOrderbook,
    RestOrderbookResponse,
    RestSeries,
    RestSeriesResponse,
    RestTrade,
    RestTradesResponse,
    decode_rest,
)

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
    "RestEvent",
    "RestEventResponse",
    "RestEventsResponse",
    "RestMarket",
    "RestMarketResponse",
    "RestOrderbook",
    "RestOrderbookResponse",
    "RestSeries",
    "RestSeriesResponse",
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
