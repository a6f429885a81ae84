"""Events of the simulated exchange: ``GET /events/{t}`` and ``GET /events`` (§14), paginated.

Sans-I/O. Besides the events derived from markets created on demand (a market's event is its
ticker without the last part, see :mod:`watcher.kalshi.sim.series`), an :class:`EventBook`
holds configured events whose markets carry Kalshi's strike fields. By default it has a
mutually exclusive event of four markets (``KXELECT-26``) and a threshold ladder
(``KXHIGHTEMP-26DEC05``, ``strike_type`` ``greater`` with ``floor_strike``). Their markets
walk independently within a few cents of their start, just inside the fee boundary, so now and
then the all-NO basket or a ladder pair is mispriced after fees (``watcher start --simulate``
watches them when rules.yaml has an event rule and no ``watch:`` section). ``GET /events``
returns ``page_size`` events per page (a small one lets tests see several pages) with a
``cursor`` to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from watcher.kalshi.sim.market import SimMarket
from watcher.kalshi.sim.series import error_body, rest_event, series_of
from watcher.kalshi.sim.values import SimMarketSpec

__all__ = ["DEFAULT_EVENTS", "DEMO_BAND", "EventBook", "SimEvent", "SimEventMarket"]

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class SimEventMarket:
    """One market of a configured event: its ticker suffix, start quote and strike fields."""

    suffix: str
    yes_bid: str
    yes_ask: str
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None


@dataclass(slots=True)
class SimEvent:
    """A configured event; add markets to :attr:`markets` to grow it. ``band`` (dollars, e.g.
    ``"0.04"``) keeps each market's walking YES bid that close to its start (None: free)."""

    event_ticker: str
    title: str
    mutually_exclusive: bool
    markets: list[SimEventMarket] = field(default_factory=list)
    band: str | None = None

    def ticker(self, market: SimEventMarket) -> str:
        return f"{self.event_ticker}-{market.suffix}"


#: How far a demo market's YES bid wanders from its start.
DEMO_BAND = "0.04"


def _ladder(strikes: tuple[int, ...], mids: tuple[str, ...]) -> list[SimEventMarket]:
    return [
        SimEventMarket(
            f"T{strike}",
            yes_bid=str(Decimal(mid) - Decimal("0.01")),
            yes_ask=str(Decimal(mid) + Decimal("0.01")),
            strike_type="greater",
            floor_strike=Decimal(strike),
        )
        for strike, mid in zip(strikes, mids, strict=True)
    ]


def _default_events() -> list[SimEvent]:
    """The demo events. Both start just inside the fee boundary, so their walks (within
    :data:`DEMO_BAND` of the start) cross it now and then: the election's YES bids add up to
    $1.05, so its all-NO basket is 5¢ under $3 before fees and 3¢ over after (four 2¢ fees);
    the ladder's "above 50" is bid at the "above 45" ask (where it should be below), so YES
    "above 45" + NO "above 50" costs $1 before fees and 4¢ over after (two 2¢ fees)."""
    quotes = {"ALICE": "0.32", "BOB": "0.29", "CAROL": "0.25", "DAN": "0.19"}
    four = [
        SimEventMarket(name, bid, str(Decimal(bid) + 2 * _CENT)) for name, bid in quotes.items()
    ]
    ladder = _ladder((40, 45, 50, 55), ("0.80", "0.57", "0.59", "0.20"))
    return [
        SimEvent("KXELECT-26", "Who will win the simulated election?", True, four, DEMO_BAND),
        SimEvent("KXHIGHTEMP-26DEC05", "Simulated high temperature", False, ladder, DEMO_BAND),
    ]


#: The events a simulator serves unless told otherwise.
DEFAULT_EVENTS: tuple[str, ...] = tuple(event.event_ticker for event in _default_events())


class EventBook:
    """The configured events of one simulated exchange.

    Args:
        events: the events (default: :func:`_default_events`); None for the defaults.
        page_size: events per page of ``GET /events`` when the request gives no ``limit``.
    """

    def __init__(self, events: Iterable[SimEvent] | None = None, *, page_size: int = 200) -> None:
        chosen = _default_events() if events is None else list(events)
        self.events: dict[str, SimEvent] = {event.event_ticker: event for event in chosen}
        self.page_size = page_size
        #: Scripted failures: event ticker → the HTTP status ``GET /events/{ticker}`` answers.
        self.failures: dict[str, int] = {}
        close = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
        self.close_time = close

    def __repr__(self) -> str:
        return f"<EventBook {sorted(self.events)} page_size={self.page_size}>"

    # Public methods

    def add(self, event: SimEvent) -> None:
        """Serve ``event`` (replacing one of the same ticker)."""
        self.events[event.event_ticker] = event

    def spec(self, ticker: str) -> SimMarketSpec | None:
        """The starting state of a configured event's market, or None."""
        found = self._find(ticker)
        if found is None:
            return None
        return SimMarketSpec(
            title=f"{found[0].title}: {found[1].suffix}",
            yes_bid=found[1].yes_bid,
            yes_ask=found[1].yes_ask,
            close_time=self.close_time,
            band=found[0].band,
        )

    def strike_fields(self, ticker: str) -> dict[str, Any]:
        """The strike fields of a market body (empty for a market of no configured event)."""
        found = self._find(ticker)
        if found is None:
            return {}
        market = found[1]
        body: dict[str, Any] = {"strike_type": market.strike_type or "custom"}
        if market.floor_strike is not None:
            body["floor_strike"] = _number(market.floor_strike)
        if market.cap_strike is not None:
            body["cap_strike"] = _number(market.cap_strike)
        return body

    def rest_event(
        self,
        ticker: str,
        query: Mapping[str, list[str]],
        market: Callable[[str], SimMarket],
        every: Iterable[SimMarket],
        now_ms: int,
    ) -> tuple[int, Any]:
        """``(status, body)`` of ``GET /events/{ticker}``: markets nested or beside."""
        if ticker in self.failures:
            return self.failures[ticker], error_body("internal", f"event lookup failed: {ticker}")
        event = self.events.get(ticker)
        if event is None:
            return rest_event(ticker, every, now_ms)
        body = self._body(event, market, now_ms)
        markets = body.pop("markets")
        if _flag(query, "with_nested_markets"):
            return 200, {"event": body | {"markets": markets}, "markets": []}
        return 200, {"event": body, "markets": markets}

    def rest_events(
        self,
        query: Mapping[str, list[str]],
        market: Callable[[str], SimMarket],
        now_ms: int,
    ) -> tuple[int, Any]:
        """``(status, body)`` of ``GET /events``: filtered by series and status, paginated."""
        series = query.get("series_ticker", [""])[0]
        status = query.get("status", [""])[0]
        limit = int(query.get("limit", [""])[0] or self.page_size)
        limit = min(limit, self.page_size)
        if not 1 <= limit <= 200:
            raise ValueError(f"limit must be between 1 and 200, but got {limit}")
        chosen = []
        for event in sorted(self.events.values(), key=lambda e: e.event_ticker):
            if series and series_of(event.event_ticker) != series:
                continue
            body = self._body(event, market, now_ms)
            is_open = any(m["status"] == "active" for m in body["markets"])
            if status and status != ("open" if is_open else "closed"):
                continue
            if not _flag(query, "with_nested_markets"):
                body.pop("markets")
            chosen.append(body)
        start = int(query.get("cursor", [""])[0] or 0)
        end = start + limit
        return 200, {"events": chosen[start:end], "cursor": str(end) if end < len(chosen) else ""}

    # Private methods

    def _find(self, ticker: str) -> tuple[SimEvent, SimEventMarket] | None:
        event = self.events.get(ticker.rsplit("-", 1)[0])
        if event is None:
            return None
        for market in event.markets:
            if event.ticker(market) == ticker:
                return event, market
        return None

    def _body(
        self, event: SimEvent, market: Callable[[str], SimMarket], now_ms: int
    ) -> dict[str, Any]:
        markets = [market(event.ticker(m)) for m in event.markets]
        return {
            "event_ticker": event.event_ticker,
            "series_ticker": series_of(event.event_ticker),
            "title": event.title,
            "sub_title": "",
            "category": "Simulated",
            "mutually_exclusive": event.mutually_exclusive,
            "collateral_return_type": "MECNET" if event.mutually_exclusive else "",
            "strike_period": "",
            "available_on_brokers": False,
            "markets": [m.rest_market(now_ms) | self.strike_fields(m.ticker) for m in markets],
        }


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    return query.get(name, [""])[0].lower() == "true"


def _number(value: Decimal) -> int | float:
    """A strike as Kalshi sends it: a JSON number."""
    return int(value) if value == value.to_integral_value() else float(value)
