"""Values of the simulated exchange's market model: units, formatting, specs and records.

Sans-I/O. Prices are micro-dollars and counts micro-contracts (:mod:`watcher.kalshi.fixed`);
:func:`dollars` and :func:`contracts` format them the way Kalshi writes them on the wire.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypeAlias

import msgspec

from watcher.kalshi.fixed import CENT, DOLLAR, MICROS_PER_UNIT
from watcher.kalshi.messages import (
    MarketLifecycleMsg,
    OrderbookDeltaMsg,
    TickerMsg,
    TradeMsg,
)

__all__ = [
    "BOOK_DEPTH",
    "CONTRACT",
    "GRID",
    "MAX_PRICE",
    "MAX_SPREAD",
    "MAX_TRADES",
    "MIN_PRICE",
    "SIZES",
    "SPREADS",
    "MarketUpdate",
    "Side",
    "SimMarketSpec",
    "TradeRecord",
    "contracts",
    "dollars",
    "random_uuid",
    "rfc3339",
    "yes_leg",
]

Side: TypeAlias = Literal["yes", "no"]

#: Step of the random walk: half a cent, in micro-dollars.
GRID = 5_000
#: Trades kept per market for ``GET /markets/trades``.
MAX_TRADES = 1000
BOOK_DEPTH = 5
CONTRACT = MICROS_PER_UNIT
MIN_PRICE = CENT
MAX_PRICE = DOLLAR - CENT
MAX_SPREAD = 5 * CENT
DAY_MS = 86_400_000

SPREADS = (GRID, CENT, CENT, CENT + GRID, 2 * CENT, 2 * CENT, 3 * CENT, 4 * CENT, 5 * CENT)
SIZES = (1, 2, 5, 10, 25, 50, 100, 136, 250, 500, 1000)
_FOUR = Decimal("0.0001")
_SIX = Decimal("0.000001")
_TWO = Decimal("0.01")


def dollars(micros: int) -> Decimal:
    """Micro-dollars as Kalshi writes them: 4 decimals (``"0.4550"``), 6 when needed."""
    return Decimal(micros).scaleb(-6).quantize(_FOUR if micros % 100 == 0 else _SIX)


def contracts(micros: int) -> Decimal:
    """Micro-contracts as a ``*_fp`` count with 2 decimals (``"136.00"``)."""
    return Decimal(micros).scaleb(-6).quantize(_TWO)


def rfc3339(ms: int) -> str:
    """Unix milliseconds as RFC3339 UTC with whole seconds (``"2022-11-22T20:44:01Z"``)."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng``, so seeded runs repeat their trade ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def yes_leg(delta: OrderbookDeltaMsg) -> OrderbookDeltaMsg:
    """A NO-side delta re-priced in YES-leg terms (``use_yes_price: true``)."""
    if delta.side != "no":
        return delta
    return msgspec.structs.replace(delta, price_dollars=1 - delta.price_dollars)


@dataclass(frozen=True)
class SimMarketSpec:
    """Initial state of one simulated market; every field is optional.

    Args:
        title: market title for REST (default ``"Simulated market TICKER"``).
        yes_bid: starting YES bid as a dollar string; give it together with ``yes_ask``.
        yes_ask: starting YES ask as a dollar string.
        last: starting last-trade price as a dollar string (default ``yes_bid``).
        close_time: REST ``close_time`` (default one day after creation).
        status: REST ``status`` (``"active"`` walks and trades; anything else stays still).
        unknown: behave as a ticker Kalshi does not know: REST 404, no WebSocket data.
        pinned: keep the quote fixed: no random walk and no random trades.
        band: keep the walking YES bid within this many dollars (a string, e.g. ``"0.04"``)
            of its start, so the market wanders around its starting quote instead of
            drifting away (the demo events' markets; default: walk freely).
    """

    title: str | None = None
    yes_bid: str | None = None
    yes_ask: str | None = None
    last: str | None = None
    close_time: datetime | None = None
    status: str = "active"
    unknown: bool = False
    pinned: bool = False
    band: str | None = None


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One trade the simulator produced; prices and counts in micro-units."""

    trade_id: str
    market_ticker: str
    yes_price: int
    count: int
    taker_side: Side
    ts_ms: int

    def to_msg(self) -> TradeMsg:
        """The ``trade`` channel payload, shaped like Kalshi's ``trade.json``."""
        return TradeMsg(
            trade_id=self.trade_id,
            market_ticker=self.market_ticker,
            yes_price_dollars=dollars(self.yes_price),
            no_price_dollars=dollars(DOLLAR - self.yes_price),
            count_fp=contracts(self.count),
            taker_side=self.taker_side,
            taker_outcome_side=self.taker_side,
            taker_book_side="bid" if self.taker_side == "yes" else "ask",
            is_block_trade=False,
            ts=self.ts_ms // 1000,
            ts_ms=self.ts_ms,
        )

    def to_rest(self) -> dict[str, Any]:
        """One element of ``GET /markets/trades``."""
        return {
            "trade_id": self.trade_id,
            "ticker": self.market_ticker,
            "yes_price_dollars": str(dollars(self.yes_price)),
            "no_price_dollars": str(dollars(DOLLAR - self.yes_price)),
            "count_fp": str(contracts(self.count)),
            "taker_side": self.taker_side,
            "created_time": rfc3339(self.ts_ms),
            "ts_ms": self.ts_ms,
        }


@dataclass(frozen=True, slots=True)
class MarketUpdate:
    """Everything one market change produced; NO-side deltas are in NO-leg prices."""

    market_ticker: str
    ticker: TickerMsg | None = None
    trades: tuple[TradeRecord, ...] = ()
    deltas: tuple[OrderbookDeltaMsg, ...] = ()
    lifecycle: tuple[MarketLifecycleMsg, ...] = ()
