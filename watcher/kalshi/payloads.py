"""The payloads of Kalshi's WebSocket frames: the ``msg`` object of each (kalshi-protocol.md §4).

Sans-I/O: this module imports neither asyncio nor websockets. Prices are fixed-point dollar
strings decoded exactly into :class:`~decimal.Decimal`, counts are ``*_fp`` strings. Unknown
fields are ignored; legacy integer fields are simply not read. :class:`KalshiStruct` is the base
of every payload, command parameter set and REST body.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, TypeAlias

import msgspec

__all__ = [
    "ErrorMsg",
    "EventFeeUpdateMsg",
    "EventLifecycleMsg",
    "FillMsg",
    "KalshiStruct",
    "MarketLifecycleMsg",
    "MarketPositionMsg",
    "OkMarkets",
    "OrderbookDeltaMsg",
    "OrderbookSnapshotMsg",
    "Side",
    "SubscribedMsg",
    "SubscriptionInfo",
    "TickerMsg",
    "TradeMsg",
    "timestamp_ms",
]

Side: TypeAlias = Literal["yes", "no"]


class KalshiStruct(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
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


class TickerMsg(KalshiStruct, kw_only=True, frozen=True):
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


class TradeMsg(KalshiStruct, kw_only=True, frozen=True):
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


class OrderbookSnapshotMsg(KalshiStruct, kw_only=True, frozen=True):
    """``orderbook_snapshot`` payload; a side is absent when it has no bids (§4.3)."""

    market_ticker: str
    market_id: str | None = None
    yes_dollars_fp: list[tuple[Decimal, Decimal]] = []
    no_dollars_fp: list[tuple[Decimal, Decimal]] = []


class OrderbookDeltaMsg(KalshiStruct, kw_only=True, frozen=True):
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


class FillMsg(KalshiStruct, kw_only=True, frozen=True):
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


class MarketPositionMsg(KalshiStruct, kw_only=True, frozen=True):
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


class MarketLifecycleMsg(KalshiStruct, kw_only=True, frozen=True):
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


class EventLifecycleMsg(KalshiStruct, kw_only=True, frozen=True):
    """``event_lifecycle`` payload (arrives on the lifecycle channels)."""

    event_ticker: str
    exchange_index: int | None = None
    title: str | None = None
    subtitle: str | None = None
    collateral_return_type: str | None = None
    series_ticker: str | None = None


class EventFeeUpdateMsg(KalshiStruct, kw_only=True, frozen=True):
    """``event_fee_update`` payload."""

    event_ticker: str
    fee_type_override: str | None = None
    fee_multiplier_override: Decimal | None = None  # a JSON number, decoded exactly


class SubscribedMsg(KalshiStruct, kw_only=True, frozen=True):
    channel: str
    sid: int


class SubscriptionInfo(KalshiStruct, kw_only=True, frozen=True):
    """One entry of the ``list_subscriptions`` answer."""

    channel: str
    sid: int


class OkMarkets(KalshiStruct, kw_only=True, frozen=True):
    """``ok`` payload after ``update_subscription``: the full market list after the change."""

    market_tickers: list[str] | None = None
    market_ids: list[str] | None = None


class ErrorMsg(KalshiStruct, kw_only=True, frozen=True):
    code: int
    msg: str
    market_ticker: str | None = None
    market_tickers: list[str] | None = None
