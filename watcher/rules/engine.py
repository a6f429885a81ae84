"""The rule engine: pure (rules, positions, market state, event, rule states, now) → decision.

:func:`evaluate` reads everything it is given and changes none of it; it returns the alerts to
record and the rule states that changed (to persist). The same event replayed gives alerts with
the same keys, which the outbox refuses twice.

What runs on which event:

* :class:`TickEvent` — level rules (spread, move_from_entry, pnl, price_cross, velocity) for
  that market only; a ``stale`` rule that fired sends one recovery alert.
* :class:`TradeEvent` — ``trade_size``; level rules too unless the trade is ``late``.
* :class:`LifecycleEvent` — ``settled`` on ``determined``/``settled``.
* :class:`ClockEvent` — ``closing_soon``, ``stale``, and ``settled`` for results learned from
  REST metadata, for every market.

A rule without ``markets`` applies to markets with a watched position; one with ``markets``
applies to the markets its globs match. Position-scoped rules (``move_from_entry``, ``pnl``)
keep one state per position (scope ``TICKER#id``, or ``TICKER#index`` without an id); the
others one per market (scope ``TICKER``). A position rule with ``action: close`` marks its
alert with the action, the position and the side's bid at that tick; the service carries the
action out (:mod:`watcher.service.recording`), a replay only says what it would have done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta

from watcher.domain.alert import Alert, Severity
from watcher.domain.event import EventInfo
from watcher.domain.market import Markets, MarketState
from watcher.domain.positions import Portfolio, Position, PriceBasis, Side
from watcher.kalshi.fixed import DOLLAR, format_cents, to_micros
from watcher.rules.checks import (
    Subject,
    check_level,
    level_text,
    settlement_text,
    subject_values,
    to_count,
)
from watcher.rules.coverage import unmatched_rules  # re-exported: `watcher check` imports it here
from watcher.rules.event_checks import check_event_rules
from watcher.rules.events import ClockEvent, Event, LifecycleEvent, TickEvent, TradeEvent
from watcher.rules.model import (
    ClosingSoonRule,
    LevelRule,
    RuleBase,
    RulesConfig,
    SettledRule,
    StaleRule,
    TradeSizeRule,
)
from watcher.rules.quiet import is_suppressed
from watcher.rules.state import RuleState, step
from watcher.rules.template import render
from watcher.rules.volume import VolumeSpikeRule, check_spike
from watcher.rules.wording import clock_text, contracts_text, span_text

__all__ = [
    "SETTLED_STATUSES",
    "ClockEvent",
    "Decision",
    "Event",
    "LifecycleEvent",
    "RuleState",
    "StateKey",
    "TickEvent",
    "TradeEvent",
    "evaluate",
    "unmatched_rules",
]

StateKey = tuple[str, str]
#: Market statuses (REST words) that mean the result is known.
SETTLED_STATUSES = frozenset({"determined", "finalized", "settled"})
_SETTLING_EVENTS = frozenset({"determined", "settled"})
_STALE = "stale"
#: Market statuses in which no ticks are expected (REST's words).
_NOT_TRADING = frozenset({"closed", "determined", "disputed", "amended", "finalized", "settled"})


@dataclass(frozen=True, slots=True)
class Decision:
    """What one event decided.

    Attributes:
        alerts: alerts to record (and send unless ``suppressed``), in order.
        changed: the new state of every (rule name, scope) whose state changed.
    """

    alerts: list[Alert] = field(default_factory=list)
    changed: dict[StateKey, RuleState] = field(default_factory=dict)


def evaluate(
    config: RulesConfig,
    portfolio: Portfolio,
    markets: Markets,
    event: Event,
    states: Mapping[StateKey, RuleState],
    now_ms: int,
    events: Mapping[str, EventInfo] | None = None,
) -> Decision:
    """Evaluate the rules that ``event`` concerns.

    Args:
        config: the rules.
        portfolio: the positions; only watched ones count.
        markets: live market state, with ``event`` already applied.
        event: what happened.
        states: persisted rule states by (rule name, scope); missing means new (armed).
        now_ms: the time now, Unix ms (cooldowns, quiet hours, expiry, clock rules).
        events: the watched events; a tick of one of their markets runs the event rules.

    Returns:
        the alerts and the changed states.
    """
    run = _Run(config, portfolio, markets, states, now_ms)
    if isinstance(event, TickEvent):
        run.on_tick(event)
        found = check_event_rules(config, markets, events or {}, event, states, now_ms)
        run.alerts += found[0]
        run.changed |= found[1]
    elif isinstance(event, TradeEvent):
        run.on_trade(event)
    elif isinstance(event, LifecycleEvent):
        run.on_lifecycle(event)
    else:
        run.on_clock(event)
    return Decision(run.alerts, run.changed)


class _Run:
    """One evaluation: the inputs, and the alerts and state changes decided so far."""

    def __init__(
        self,
        config: RulesConfig,
        portfolio: Portfolio,
        markets: Markets,
        states: Mapping[StateKey, RuleState],
        now_ms: int,
    ) -> None:
        self.config = config
        self.portfolio = portfolio
        self.markets = markets
        self.states = states
        self.now_ms = now_ms
        self.alerts: list[Alert] = []
        self.changed: dict[StateKey, RuleState] = {}
        self._watched: dict[str, tuple[Position, ...]] = {}
        self._subjects: dict[tuple[str, str, Side | None, PriceBasis], list[Subject]] = {}

    # Events

    def on_tick(self, event: TickEvent) -> None:
        market = self.markets.get(event.ticker)
        if market is None:
            return
        for rule in self.rules(market.ticker):
            if isinstance(rule, LevelRule):
                self.level(rule, market, event.ts_ms)
            elif isinstance(rule, StaleRule):
                self.recovered(rule, market, event.ts_ms)
            elif isinstance(rule, VolumeSpikeRule):
                check_spike(self, rule, market, event.ts_ms)

    def on_trade(self, event: TradeEvent) -> None:
        market = self.markets.get(event.ticker)
        if market is None:
            return
        for rule in self.rules(market.ticker):
            if isinstance(rule, TradeSizeRule):
                self.trade(rule, market, event)
            elif isinstance(rule, LevelRule) and not event.late:
                self.level(rule, market, event.ts_ms)

    def on_lifecycle(self, event: LifecycleEvent) -> None:
        market = self.markets.get(event.ticker)
        if market is None or event.event_type not in _SETTLING_EVENTS:
            return
        for rule in self.rules(market.ticker):
            if isinstance(rule, SettledRule):
                self.settled(rule, market, event.ts_ms)

    def on_clock(self, event: ClockEvent) -> None:
        for market in self.markets:
            settled = market.status in SETTLED_STATUSES or market.result in ("yes", "no")
            for rule in self.rules(market.ticker):
                if isinstance(rule, ClosingSoonRule):
                    self.closing(rule, market, event.now_ms)
                elif isinstance(rule, StaleRule):
                    self.stale(rule, market, event.now_ms)
                elif isinstance(rule, SettledRule) and settled:
                    self.settled(rule, market, event.now_ms)

    # Rules

    def level(self, rule: LevelRule, market: MarketState, ts_ms: int) -> None:
        for subject in self.subjects(rule, market):
            check = check_level(rule, subject, ts_ms)
            if check is None:
                continue
            state, fired = step(
                self.state(rule, subject.scope),
                active=check.active,
                clear=check.clear,
                tag=check.tag,
                now_ms=self.now_ms,
                cooldown_ms=self.config.cooldown_ms(rule),
            )
            self.save(rule, subject.scope, state)
            if fired:
                body = level_text(rule, subject, ts_ms, check)
                self.emit(rule, subject, str(ts_ms), ts_ms, body)

    def trade(self, rule: TradeSizeRule, market: MarketState, event: TradeEvent) -> None:
        if event.count_micros < to_micros(rule.min_contracts):
            return
        subject = self.subjects(rule, market)[0]
        state = self.state(rule, subject.scope)
        if not state.cooled(self.now_ms, self.config.cooldown_ms(rule)):
            return
        self.save(rule, subject.scope, RuleState(last_fired_ms=self.now_ms))
        price = event.yes_price if subject.side == "YES" else DOLLAR - event.yes_price
        count = contracts_text(to_count(event.count_micros))
        taker = f"taker bought {event.taker_side.upper()}" if event.taker_side else "taker unknown"
        late = " · reported late" if event.late else ""
        body = f"trade of {count} contracts at {subject.side} {format_cents(price)} ({taker}){late}"
        extra = {"contracts": count, "price": format_cents(price)}
        self.emit(rule, subject, event.trade_id, event.ts_ms, body, extra)

    def closing(self, rule: ClosingSoonRule, market: MarketState, now_ms: int) -> None:
        close = market.close_time_ms
        if close is None:
            return
        left = close - now_ms
        subject = self.subjects(rule, market)[0]
        active = 0 < left <= rule.before // _MS
        state, fired = step(
            self.state(rule, subject.scope),
            active=active,
            clear=False,
            tag=str(close),
            now_ms=now_ms,
            cooldown_ms=0,
        )
        self.save(rule, subject.scope, state)
        if fired:
            when = clock_text(close, self.config.tz)
            body = f"closes in {span_text(left)} (at {when})"
            self.emit(rule, subject, str(now_ms), now_ms, body, {"closes": when})

    def settled(self, rule: SettledRule, market: MarketState, ts_ms: int) -> None:
        subject = self.subjects(rule, market)[0]
        state = self.state(rule, subject.scope)
        if state.last_fired_ms is not None:
            return  # once per market
        self.save(rule, subject.scope, RuleState(armed=False, last_fired_ms=self.now_ms))
        body, extra = settlement_text(market, self.watched(market.ticker))
        self.emit(rule, subject, str(ts_ms), ts_ms, body, extra)

    def stale(self, rule: StaleRule, market: MarketState, now_ms: int) -> None:
        since = market.last_tick_ms if market.last_tick_ms is not None else market.watched_since_ms
        if since is None or market.status in _NOT_TRADING:
            return  # a closed or settled market is quiet by design, not stale
        silent = now_ms - since
        subject = self.subjects(rule, market)[0]
        state, fired = step(
            self.state(rule, subject.scope),
            active=silent >= rule.after // _MS,
            clear=False,
            tag=_STALE,
            now_ms=now_ms,
            cooldown_ms=self.config.cooldown_ms(rule),
        )
        self.save(rule, subject.scope, state)
        if not fired:
            return
        if market.last_tick_ms is None:
            body = f"no ticker update in the {span_text(silent)} since watching began"
        else:
            last = clock_text(since, self.config.tz)
            body = f"no ticker update for {span_text(silent)} (last at {last})"
        self.emit(rule, subject, str(now_ms), now_ms, body)

    def recovered(self, rule: StaleRule, market: MarketState, ts_ms: int) -> None:
        subject = self.subjects(rule, market)[0]
        state = self.state(rule, subject.scope)
        if state.armed or state.tag != _STALE or state.last_fired_ms is None:
            return
        self.save(rule, subject.scope, RuleState(last_fired_ms=state.last_fired_ms))
        alerted = clock_text(state.last_fired_ms, self.config.tz)
        body = f"data flowing again (stale alert at {alerted})"
        self.emit(rule, subject, f"{ts_ms}|recovered", ts_ms, body, severity="info")

    # Helpers

    def rules(self, ticker: str) -> list[RuleBase]:
        """Rules that apply to ``ticker`` now: enabled, not expired, matching."""
        found: list[RuleBase] = []
        for rule in self.config.rules_for(ticker):
            if rule.markets is None and not self.watched(ticker):
                continue
            expires = rule.expires_ms(self.config.tz) if rule.expires is not None else None
            if expires is None or self.now_ms < expires:
                found.append(rule)
        return found

    def watched(self, ticker: str) -> tuple[Position, ...]:
        found = self._watched.get(ticker)
        if found is None:
            found = self._watched[ticker] = self.portfolio.by_ticker(ticker, watched_only=True)
        return found

    def subjects(self, rule: RuleBase, market: MarketState) -> list[Subject]:
        """What ``rule`` is evaluated for in ``market``: each watched position, or the market.

        Rules that see the market the same way (scope, side, price basis) share the subjects.
        """
        basis = self.config.basis_of(rule)
        side = rule.named_side
        key = (market.ticker, rule.scope, side, basis)
        found = self._subjects.get(key)
        if found is None:
            found = self._subjects[key] = self._make_subjects(rule.scope, side, basis, market)
        return found

    def _make_subjects(
        self, scope: str, side: Side | None, basis: PriceBasis, market: MarketState
    ) -> list[Subject]:
        positions = self.watched(market.ticker)
        if scope == "position":
            return [
                Subject.of(f"{market.ticker}#{p.id or p.index}", market, p.side, p, basis)
                for p in positions
            ]
        if side is None:
            sides = {position.side for position in positions}
            side = sides.pop() if len(sides) == 1 else "YES"
        only = positions[0] if len(positions) == 1 and positions[0].side == side else None
        return [Subject.of(market.ticker, market, side, only, basis)]

    def state(self, rule: RuleBase, scope: str) -> RuleState:
        key = (rule.name, scope)
        found = self.changed.get(key)
        if found is None:
            found = self.states.get(key)
        return RuleState() if found is None else found

    def save(self, rule: RuleBase, scope: str, state: RuleState) -> None:
        current = self.state(rule, scope)
        if state is not current and state != current:
            self.changed[(rule.name, scope)] = state

    def emit(
        self,
        rule: RuleBase,
        subject: Subject,
        ident: str,
        at_ms: int,
        body: str,
        extra: Mapping[str, str] | None = None,
        *,
        severity: Severity | None = None,
    ) -> None:
        """Record an alert; the key is (rule, scope, ident) so a replay cannot repeat it."""
        config = self.config
        severity = severity or config.severity_of(rule)
        values = subject_values(subject) | dict(extra or {})
        values |= {"rule": rule.name, "severity": severity, "time": clock_text(at_ms, config.tz)}
        ticker = subject.market.ticker
        alert = Alert(
            key=f"{rule.name}|{subject.scope}|{ident}",
            rule=rule.name,
            market_ticker=ticker,
            severity=severity,
            title=f"{ticker} · {rule.name}",
            body=body if rule.message is None else render(rule.message, values),
            targets=config.targets_of(rule),
            at_ms=at_ms,
            suppressed=is_suppressed(config.quiet_hours, config.tz, self.now_ms, severity),
        )
        position = subject.position
        if rule.action is not None and position is not None and rule.scope == "position":
            alert = replace(
                alert,
                action=rule.action,
                position_id=position.id or subject.scope,  # TICKER#N for an entry without id
                action_side=position.side,
                action_contracts=position.contracts,
                action_price_micros=subject.quote.bid,  # what selling the side would get now
            )
        self.alerts.append(alert)


_MS = timedelta(milliseconds=1)
