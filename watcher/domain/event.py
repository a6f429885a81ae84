"""Kalshi events as the service reasons about them: which markets belong together.

An event groups markets (design.md §13, kalshi-protocol.md §14). ``mutually_exclusive`` means
at most one of its markets can resolve YES — not that exactly one will — so an all-NO basket of
N markets pays at least $(N − 1), while an all-YES basket is riskless only when the event is
also exhaustive (a rule has to say so). Threshold markets of one quantity carry ``strike_type``
(``greater``, ``less``, ``between``, …) with ``floor_strike`` / ``cap_strike``. Kalshi's taker
fee on the event's markets is scaled by its series' ``fee_multiplier`` (``GET /series/{t}``)
unless an event fee override is in force (``GET /events/fee_changes``, ``event_fee_update``).

Pure values: built from REST by the service, stored by the store, read by the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["EventInfo", "EventMarket"]


@dataclass(frozen=True, slots=True)
class EventMarket:
    """One market of an event, with what the ladder rule needs of it.

    Attributes:
        ticker: the market ticker.
        strike_type: Kalshi's ``strike_type`` (``greater``, ``less``, ``between``, ``custom``…).
        floor_strike: the lower strike, exact, or None.
        cap_strike: the upper strike, exact, or None.
        close_time_ms: the market's close time in Unix milliseconds, or None.
        status: Kalshi's market status (``active``, ``closed``, …), or None.
    """

    ticker: str
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    close_time_ms: int | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One Kalshi event and its markets, as last expanded over REST.

    Attributes:
        event_ticker: the event ticker.
        series_ticker: its series, or None.
        title: the event's title, or None.
        mutually_exclusive: at most one market can resolve YES.
        markets: the event's markets, in Kalshi's order.
        fee_multiplier: the fee multiplier in force when last expanded (exact): the event's
            override, else its series' ``fee_multiplier``; 1 when Kalshi gives none or cannot
            be asked (:mod:`watcher.service.paper_fees`).
    """

    event_ticker: str
    series_ticker: str | None
    title: str | None
    mutually_exclusive: bool
    markets: tuple[EventMarket, ...]
    fee_multiplier: Decimal = Decimal(1)

    @property
    def tickers(self) -> tuple[str, ...]:
        """The tickers of the event's markets."""
        return tuple(market.ticker for market in self.markets)
