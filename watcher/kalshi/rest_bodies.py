"""The bodies of the Kalshi REST answers watcher reads (kalshi-protocol.md §11), and their decoder.

Sans-I/O. Only the fields watcher uses are declared; the rest are ignored.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from watcher.kalshi.errors import DecodeError
from watcher.kalshi.payloads import KalshiStruct, Side

__all__ = [
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
    "decode_rest",
]


class RestMarket(KalshiStruct, kw_only=True, frozen=True):
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
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None


class RestMarketResponse(KalshiStruct, kw_only=True, frozen=True):
    market: RestMarket


class RestOrderbook(KalshiStruct, kw_only=True, frozen=True):
    yes_dollars: list[tuple[Decimal, Decimal]] | None = None
    no_dollars: list[tuple[Decimal, Decimal]] | None = None


class RestOrderbookResponse(KalshiStruct, kw_only=True, frozen=True):
    orderbook_fp: RestOrderbook


class RestTrade(KalshiStruct, kw_only=True, frozen=True):
    trade_id: str
    ticker: str
    yes_price_dollars: Decimal
    no_price_dollars: Decimal
    count_fp: Decimal
    taker_side: Side | None = None
    created_time: str | None = None
    ts_ms: int | None = None


class RestTradesResponse(KalshiStruct, kw_only=True, frozen=True):
    trades: list[RestTrade] = []  # noqa: RUF012 (msgspec copies a Struct's defaults)
    cursor: str | None = None


class RestEvent(KalshiStruct, kw_only=True, frozen=True):
    """The fields of ``GET /events/{event_ticker}``'s ``event`` that watcher uses (§14)."""

    event_ticker: str
    series_ticker: str | None = None
    title: str | None = None
    sub_title: str | None = None
    category: str | None = None
    mutually_exclusive: bool | None = None
    collateral_return_type: str | None = None
    #: Filled with ``with_nested_markets=true`` (and by the client from beside the event).
    markets: list[RestMarket] = []  # noqa: RUF012 (msgspec copies a Struct's defaults)


class RestEventResponse(KalshiStruct, kw_only=True, frozen=True):
    """``GET /events/{event_ticker}``: the markets inside the event (``with_nested_markets``)
    or beside it (without; deprecated by Kalshi but still sent)."""

    event: RestEvent
    markets: list[RestMarket] = []  # noqa: RUF012 (msgspec copies a Struct's defaults)

    def full_event(self) -> RestEvent:
        """The event with its markets, wherever they came."""
        if self.event.markets or not self.markets:
            return self.event
        return msgspec.structs.replace(self.event, markets=self.markets)


class RestEventsResponse(KalshiStruct, kw_only=True, frozen=True):
    """One page of ``GET /events``; ``cursor`` is empty on the last page."""

    events: list[RestEvent] = []  # noqa: RUF012 (msgspec copies a Struct's defaults)
    cursor: str | None = None


class RestSeries(KalshiStruct, kw_only=True, frozen=True):
    """The fields of ``GET /series/{series_ticker}``'s ``series`` that watcher uses (§14).

    ``fee_type`` is ``"quadratic"``, ``"quadratic_with_maker_fees"`` or ``"flat"`` (Kalshi's fee
    schedule); ``fee_multiplier`` scales the fee (a JSON number, decoded exactly).
    """

    ticker: str
    title: str | None = None
    category: str | None = None
    frequency: str | None = None
    fee_type: str | None = None
    fee_multiplier: Decimal | None = None


class RestSeriesResponse(KalshiStruct, kw_only=True, frozen=True):
    series: RestSeries


def decode_rest(data: str | bytes, type_: type[Any]) -> Any:
    """Decode a REST body into ``type_``. Raises :class:`DecodeError`."""
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid {type_.__name__} body: {exc}", data) from exc
