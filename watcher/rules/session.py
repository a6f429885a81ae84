"""The one decision step: an event in, market state updated, the rules' decision out.

The live pipeline (:mod:`watcher.service.pipeline`) and ``watcher replay``
(:mod:`watcher.ops.replay`) both go through :meth:`Session.step`, so what replay decides over a
recording is what the live run decided. Pure: no I/O, no clock of its own (time is passed in),
no Kalshi frames or SQL rows (the callers turn those into :mod:`watcher.rules.events` first).

Typical use::

    session = Session(rules=config, portfolio=portfolio, markets=Markets(history_ms=...))
    decision = session.step(TickEvent(ticker, ts_ms, yes_bid, yes_ask, yes_last), now_ms)
    # decision.alerts → outbox; decision.changed → rule_state table (already in session.states)

Time-driven rules need a :class:`~watcher.rules.events.ClockEvent` every
:data:`CLOCK_INTERVAL` seconds: the service's scheduler sends one on wall time, and a replay
takes one from :class:`RecordedClock` whenever recorded time moved on by the interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from watcher.domain.event import EventInfo
from watcher.domain.market import Markets, MarketState
from watcher.domain.positions import Portfolio
from watcher.rules.engine import Decision, StateKey, evaluate
from watcher.rules.events import ClockEvent, Event, LifecycleEvent, TickEvent, TradeEvent
from watcher.rules.model import RulesConfig
from watcher.rules.state import RuleState
from watcher.rules.volume import volume_plan

__all__ = ["CLOCK_INTERVAL", "CLOCK_INTERVAL_MS", "RecordedClock", "Session", "apply_event"]

#: How often time-driven rules (closing_soon, stale, expiry) are evaluated, in seconds.
CLOCK_INTERVAL = 5.0
CLOCK_INTERVAL_MS = int(CLOCK_INTERVAL * 1000)


def apply_event(markets: Markets, event: Event) -> MarketState | None:
    """Apply ``event`` to market state; return the market it changed (None for the clock).

    A tick sets the quote (None leaves a price as it was; an older tick is ignored), a trade
    the last price (unless late or older), a lifecycle event status, result, close time and
    payout.
    """
    if isinstance(event, TickEvent):
        return markets.apply_ticker(
            event.ticker,
            event.ts_ms,
            event.yes_bid,
            event.yes_ask,
            event.yes_last,
            event.volume,
            event.open_interest,
            event.yes_bid_size,
            event.yes_ask_size,
        )
    if isinstance(event, TradeEvent):
        return markets.apply_trade(event.ticker, event.ts_ms, event.yes_price, late=event.late)
    if isinstance(event, LifecycleEvent):
        return markets.apply_lifecycle(
            event.ticker,
            event.ts_ms,
            event.event_type,
            result=event.result,
            close_time_ms=event.close_time_ms,
            settlement_value_micros=event.settlement_value_micros,
        )
    return None


@dataclass(slots=True, repr=False)
class Session:
    """Rules, positions, market state and rule state of one run (live or replay).

    Attributes:
        rules: the rules in force (change them with :meth:`set_rules`).
        portfolio: the positions in force; rules without ``markets`` apply to watched ones.
        markets: the market view the events are applied to (default: empty, keeping the
            price history the rules need).
        states: rule state by (rule name, scope); missing means new (armed).
        events: the watched events by event ticker, as last expanded (``watch`` in rules.yaml).
    """

    rules: RulesConfig
    portfolio: Portfolio
    markets: Markets = field(default_factory=Markets)
    states: dict[StateKey, RuleState] = field(default_factory=dict)
    events: dict[str, EventInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.markets.history_ms = self.rules.history_ms
        self.markets.set_volume_plan(volume_plan(self.rules))

    def __repr__(self) -> str:
        return (
            f"<Session rules={len(self.rules.rules)} markets={len(self.markets)}"
            f" states={len(self.states)}>"
        )

    def set_rules(self, rules: RulesConfig) -> None:
        """Put ``rules`` in force from the next step (market history follows their window)."""
        self.rules = rules
        self.markets.history_ms = rules.history_ms
        self.markets.set_volume_plan(volume_plan(rules))

    def step(self, event: Event, now_ms: int) -> Decision:
        """Apply ``event`` to market state and run the rules it concerns.

        The changed rule states are merged into :attr:`states` before returning, so the next
        step sees them whether or not the caller has persisted them yet.

        Args:
            event: one tick, trade, lifecycle change or clock event.
            now_ms: the time now, Unix ms (cooldowns, quiet hours, expiry, clock rules).

        Returns:
            the alerts to record, in order, and the rule states that changed.
        """
        if type(event) is TickEvent:  # the usual event: one call fewer on the hot path
            self.markets.apply_ticker(
                event.ticker,
                event.ts_ms,
                event.yes_bid,
                event.yes_ask,
                event.yes_last,
                event.volume,
                event.open_interest,
                event.yes_bid_size,
                event.yes_ask_size,
            )
        else:
            apply_event(self.markets, event)
        decision = evaluate(
            self.rules, self.portfolio, self.markets, event, self.states, now_ms, self.events
        )
        if decision.changed:
            self.states.update(decision.changed)
        return decision


@dataclass(slots=True)
class RecordedClock:
    """The clock of a replay: recorded time, not wall time.

    :meth:`advance` gives a :class:`ClockEvent` at the first event and then whenever recorded
    time moved on by ``interval_ms`` since the last one, at the time of the event that moved it
    (the live clock ticks every :data:`CLOCK_INTERVAL` seconds; a replay has no time between
    its events).
    """

    interval_ms: int = CLOCK_INTERVAL_MS
    last_ms: int | None = None

    def advance(self, ts_ms: int) -> ClockEvent | None:
        """The clock event due before the event at ``ts_ms``, or None."""
        if self.last_ms is not None and ts_ms - self.last_ms < self.interval_ms:
            return None
        self.last_ms = ts_ms
        return ClockEvent(ts_ms)
