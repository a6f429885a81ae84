"""Rules about whole events: ``event_arbitrage`` and ``ladder`` (issue 14; kalshi-protocol.md §14).

A *basket* is a set of one-contract legs bought at their asks (NO ask = $1 − YES bid) whose
payout has a known floor:

* the **all-NO basket** of a mutually exclusive event of N markets pays at least $(N − 1);
* the **all-YES basket** pays $1 only if exactly one market resolves YES, which the rule has to
  promise (``exhaustive: true``);
* a **ladder pair** — YES of the wider threshold ("above a") and NO of the narrower one
  ("above b", a < b; or "below b" and "below a" for ``less`` strikes), same close time —
  pays at least $1.

Each leg pays Kalshi's taker fee for one contract, rounded up to the cent per leg
(:func:`watcher.domain.fees.taker_fee`), scaled by the fee multiplier the event carries (its
series' ``fee_multiplier``, or the event's fee override in force). The edge is payout − (prices
+ fees), in integer micro-dollars. A leg's displayed depth is the size at the touch the
``ticker`` channel (and REST) gives: a NO leg at NO ask = $1 − YES bid takes the YES bid's
size, a YES leg the YES ask's; a basket's size is its least leg's. A leg without a quote (no
YES bid for a NO leg, no YES ask for a YES leg) or in a market that is not trading means no
evaluation: silent, state unchanged.

Event rules keep one state per event (scope: the event ticker) with :func:`step`'s hysteresis.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import translate
from functools import lru_cache

from watcher.domain.alert import Alert
from watcher.domain.event import EventInfo, EventMarket
from watcher.domain.fees import taker_fee
from watcher.domain.market import Markets, MarketState
from watcher.domain.positions import Side
from watcher.kalshi.fixed import (
    DOLLAR,
    MICROS_PER_UNIT,
    format_cents,
    format_dollars,
    micros_to_decimal,
    to_micros,
)
from watcher.rules.events import TickEvent
from watcher.rules.kinds import EventArbitrageRule, EventRule, LadderRule
from watcher.rules.model import RulesConfig
from watcher.rules.quiet import is_suppressed
from watcher.rules.state import RuleState, step
from watcher.rules.template import render
from watcher.rules.wording import clock_text, contracts_text

__all__ = [
    "Basket",
    "Leg",
    "arbitrage_baskets",
    "basket_text",
    "check_event_rules",
    "ladder_baskets",
    "leg_fee",
]

StateKey = tuple[str, str]
#: Market statuses (REST words) in which a leg cannot be bought.
_NOT_TRADING = frozenset({"closed", "determined", "disputed", "amended", "finalized", "settled"})
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Leg:
    """One contract bought at its ask: ``price`` and ``fee`` in micro-dollars, ``size`` the
    displayed depth at that ask in contracts (None when unknown), ``label`` what it stands for
    (``above 50``)."""

    ticker: str
    side: Side
    price: int
    fee: int
    size: Decimal | None = None
    label: str = ""


@dataclass(frozen=True, slots=True)
class Basket:
    """Legs of one contract each whose payout is at least ``payout`` (micro-dollars).

    ``kind`` is ``no``, ``yes`` or ``ladder``; ``tag`` names the condition for the rule state.
    """

    kind: str
    legs: tuple[Leg, ...]
    payout: int
    tag: str

    @property
    def cost(self) -> int:
        """Prices plus fees, micro-dollars."""
        return sum(leg.price + leg.fee for leg in self.legs)

    @property
    def edge(self) -> int:
        """Payout floor − cost: the riskless profit per contract per leg after fees."""
        return self.payout - self.cost

    @property
    def size(self) -> Decimal | None:
        """How many baskets the displayed depth allows: the least leg size (None if unknown)."""
        sizes = [leg.size for leg in self.legs]
        if not sizes or any(size is None for size in sizes):
            return None
        return min(size for size in sizes if size is not None)


@lru_cache(maxsize=4096)
def leg_fee(price: int, rate: Decimal, multiplier: Decimal = _ONE) -> int:
    """The taker fee of one contract at ``price`` micro-dollars, rounded up to the cent
    (``multiplier``: the event's fee multiplier)."""
    dollars = Decimal(price) / MICROS_PER_UNIT
    return to_micros(taker_fee(_ONE, dollars, rate=rate, multiplier=multiplier))


def _leg(
    market: MarketState | None, side: Side, fee: tuple[Decimal, Decimal], label: str = ""
) -> Leg | None:
    """The leg of ``side`` in ``market`` at its ask, or None without a usable quote.

    ``fee`` is (rate, multiplier); the leg's size is the depth at that ask, if known.
    """
    if market is None or market.status in _NOT_TRADING:
        return None
    quote = market.yes_bid if side == "NO" else market.yes_ask
    if quote is None or not 0 < quote < DOLLAR:
        return None
    price = DOLLAR - quote if side == "NO" else quote
    depth = market.yes_bid_size if side == "NO" else market.yes_ask_size
    size = None if depth is None else micros_to_decimal(depth)
    return Leg(market.ticker, side, price, leg_fee(price, *fee), size, label)


def _legs(
    markets: Markets, tickers: Iterable[str], side: Side, fee: tuple[Decimal, Decimal]
) -> tuple[Leg, ...] | None:
    legs: list[Leg] = []
    for ticker in tickers:
        leg = _leg(markets.get(ticker), side, fee)
        if leg is None:
            return None
        legs.append(leg)
    return tuple(legs)


def arbitrage_baskets(
    event: EventInfo, markets: Markets, rate: Decimal, *, exhaustive: bool = False
) -> list[Basket]:
    """The all-NO basket (and the all-YES one when ``exhaustive``) of a mutually exclusive
    event, each only when every leg has a quote; none for any other event."""
    tickers = event.tickers
    if not event.mutually_exclusive or len(tickers) < 2:
        return []
    found: list[Basket] = []
    fee = (rate, event.fee_multiplier)
    no_legs = _legs(markets, tickers, "NO", fee)
    if no_legs is not None:
        found.append(Basket("no", no_legs, (len(tickers) - 1) * DOLLAR, "no"))
    if exhaustive:
        yes_legs = _legs(markets, tickers, "YES", fee)
        if yes_legs is not None:
            found.append(Basket("yes", yes_legs, DOLLAR, "yes"))
    return found


def _rungs(event: EventInfo) -> dict[tuple[str, int], list[tuple[Decimal, EventMarket]]]:
    """The event's threshold markets by (strike type, close time), with their strikes."""
    groups: dict[tuple[str, int], list[tuple[Decimal, EventMarket]]] = {}
    for market in event.markets:
        close = market.close_time_ms
        kind = market.strike_type
        strike = market.floor_strike if kind == "greater" else market.cap_strike
        if kind in ("greater", "less") and strike is not None and close is not None:
            groups.setdefault((kind, close), []).append((strike, market))
    return groups


def ladder_baskets(event: EventInfo, markets: Markets, rate: Decimal) -> list[Basket]:
    """Every pair (YES of the wider threshold, NO of the narrower one) with both quotes.

    ``greater``: "above a" is at least "above b" when a < b; ``less``: "below b" is at least
    "below a". Only markets with the same close time and strike type are compared.
    """
    found: list[Basket] = []
    fee = (rate, event.fee_multiplier)
    for (kind, _), rungs in _rungs(event).items():
        word = "above" if kind == "greater" else "below"
        for strike_a, wide in rungs:
            for strike_b, narrow in rungs:
                wider = strike_a < strike_b if kind == "greater" else strike_a > strike_b
                if not wider:
                    continue
                yes = _leg(markets.get(wide.ticker), "YES", fee, f"{word} {strike_a}")
                no = _leg(markets.get(narrow.ticker), "NO", fee, f"{word} {strike_b}")
                if yes is not None and no is not None:
                    tag = f"ladder:{wide.ticker}|{narrow.ticker}"
                    found.append(Basket("ladder", (yes, no), DOLLAR, tag))
    return found


def _money(micros: int) -> str:
    return format_cents(micros) if abs(micros) < DOLLAR else format_dollars(micros)


def basket_text(event: EventInfo, basket: Basket) -> str:
    """The alert text: the event, every leg with its price and fee, the edge, the depth (and
    the event's fee multiplier when it is not 1: its series', or its override)."""
    legs = ", ".join(
        f"{leg.side} {leg.ticker}{f' ({leg.label})' if leg.label else ''} "
        f"{format_cents(leg.price)} + {format_cents(leg.fee)} fee"
        for leg in basket.legs
    )
    n = len(basket.legs)
    if basket.kind == "no":
        what = f"all-NO basket of {n} mutually exclusive markets"
    elif basket.kind == "yes":
        what = f"all-YES basket of {n} markets (exhaustive by the rule)"
    else:
        what = "ladder inverted: YES of the wider threshold + NO of the narrower"
    size = basket.size
    depth = "depth unknown" if size is None else f"depth allows {contracts_text(size)} each"
    scaled = event.fee_multiplier
    fees = "" if scaled == _ONE else f" · fees × {scaled} (the event's fee_multiplier)"
    return (
        f"{event.event_ticker}: {what} costs {_money(basket.cost)} with fees and pays at least "
        f"{_money(basket.payout)}: edge {_money(basket.edge)} after fees for 1 contract per leg"
        f" ({depth}) · legs: {legs}{fees}"
    )


def _baskets(rule: EventRule, event: EventInfo, markets: Markets, rate: Decimal) -> list[Basket]:
    if isinstance(rule, EventArbitrageRule):
        return arbitrage_baskets(event, markets, rate, exhaustive=rule.exhaustive)
    if isinstance(rule, LadderRule):
        return ladder_baskets(event, markets, rate)
    return []


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(translate(pattern), re.IGNORECASE)


def _applies(rule: EventRule, config: RulesConfig, event: EventInfo, now_ms: int) -> bool:
    if not rule.enabled:
        return False
    if rule.events is not None and not any(_glob(g).match(event.event_ticker) for g in rule.events):
        return False
    expires = rule.expires_ms(config.tz) if rule.expires is not None else None
    return expires is None or now_ms < expires


def check_event_rules(
    config: RulesConfig,
    markets: Markets,
    events: Mapping[str, EventInfo],
    tick: TickEvent,
    states: Mapping[StateKey, RuleState],
    now_ms: int,
) -> tuple[list[Alert], dict[StateKey, RuleState]]:
    """Evaluate the event rules for every event whose market just ticked (``tick``).

    Returns:
        the alerts (keyed ``rule|EVENT|ts``) and the rule states that changed.
    """
    alerts: list[Alert] = []
    changed: dict[StateKey, RuleState] = {}
    rules = config.event_rules if events else ()
    if not rules:
        return alerts, changed
    rate = config.fees.taker_rate
    for event in events.values():
        if tick.ticker not in event.tickers:
            continue
        for rule in rules:
            if not _applies(rule, config, event, now_ms):
                continue
            baskets = _baskets(rule, event, markets, rate)
            if not baskets:
                continue  # a leg without a quote, or nothing to compare: silent
            best = max(baskets, key=lambda basket: basket.edge)
            key = (rule.name, event.event_ticker)
            state = states.get(key, RuleState())
            new, fired = _step(config, rule, state, best, now_ms)
            if new != state:
                changed[key] = new
            if fired:
                alerts.append(_alert(config, rule, event, best, now_ms, tick.ts_ms))
    return alerts, changed


def _step(
    config: RulesConfig, rule: EventRule, state: RuleState, best: Basket, now_ms: int
) -> tuple[RuleState, bool]:
    """Hysteresis: fire at ``min_edge``; re-arm once the edge is ``rearm`` below it."""
    return step(
        state,
        active=best.edge >= rule.min_edge_micros,
        clear=best.edge <= rule.min_edge_micros - rule.rearm_micros,
        tag=best.tag,
        now_ms=now_ms,
        cooldown_ms=config.cooldown_ms(rule),
    )


def _alert(
    config: RulesConfig, rule: EventRule, event: EventInfo, basket: Basket, now_ms: int, ts_ms: int
) -> Alert:
    severity = config.severity_of(rule)
    ticker = event.event_ticker
    body = basket_text(event, basket)
    if rule.message is not None:
        values = {
            "market": ticker,
            "title": event.title or ticker,
            "price": _money(basket.cost),
            "move": _money(basket.edge),
            "rule": rule.name,
            "severity": severity,
            "time": clock_text(ts_ms, config.tz),
        }
        body = render(rule.message, values)
    return Alert(
        key=f"{rule.name}|{ticker}|{ts_ms}",
        rule=rule.name,
        market_ticker=ticker,
        severity=severity,
        title=f"{ticker} · {rule.name}",
        body=body,
        targets=config.targets_of(rule),
        at_ms=ts_ms,
        suppressed=is_suppressed(config.quiet_hours, config.tz, now_ms, severity),
    )
