"""What the decision step reacts to: a tick, a trade, a lifecycle change, or the clock.

Domain events, not Kalshi frames: each carries what market state needs, so
:class:`watcher.rules.session.Session` applies it to :class:`watcher.domain.market.Markets`
and then calls :func:`watcher.rules.engine.evaluate` with it. The live pipeline builds them
from feed frames (:mod:`watcher.rules.feed`), ``watcher replay`` from stored rows. Prices are
YES prices in micro-dollars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["ClockEvent", "Event", "LifecycleEvent", "TickEvent", "TradeEvent"]


@dataclass(frozen=True, slots=True)
class TickEvent:
    """A ticker update: the YES quote and last price at ``ts_ms`` (None leaves a price as it
    was), the market's cumulative volume and open interest in micro-contracts (None when
    not given; ``volume_spike`` reads them), and the contracts displayed at the YES bid and
    ask in micro-contracts (None when not given; the event rules' depth). Price rules run;
    ``stale`` may recover."""

    ticker: str
    ts_ms: int
    yes_bid: int | None = None
    yes_ask: int | None = None
    yes_last: int | None = None
    volume: int | None = None
    open_interest: int | None = None
    yes_bid_size: int | None = None
    yes_ask_size: int | None = None


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """A public trade.

    Attributes:
        ticker: the market.
        ts_ms: when it traded.
        trade_id: Kalshi's id (part of the alert key, so a replayed trade cannot alert twice).
        yes_price: the YES price in micro-dollars.
        count_micros: contracts × 1,000,000.
        taker_side: ``"yes"`` or ``"no"``, if known.
        late: reported after newer data (a backfill); it does not move prices.
    """

    ticker: str
    ts_ms: int
    trade_id: str
    yes_price: int
    count_micros: int
    taker_side: Literal["yes", "no"] | None = None
    late: bool = False


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """A ``market_lifecycle_v2`` event (``determined``, ``settled``, ``close_date_updated``...).

    ``settlement_value_micros`` is the YES payout (1_000_000 when YES won), if given;
    ``close_time_ms`` the market's (new) close time, if given.
    """

    ticker: str
    ts_ms: int
    event_type: str
    result: str | None = None
    settlement_value_micros: int | None = None
    close_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ClockEvent:
    """Sent by the scheduler every few seconds: ``closing_soon``, ``stale`` and ``settled``
    (from REST metadata) are checked for every market."""

    now_ms: int


Event: TypeAlias = TickEvent | TradeEvent | LifecycleEvent | ClockEvent
