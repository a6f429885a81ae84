"""The one decision step (rules/session.py) and its boundary (rules/feed.py): pure, no event loop.

Truth tables: what each event does to market state, what the step decides and keeps, when the
recorded clock ticks, and what a Kalshi frame becomes.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from watcher.domain.market import Markets
from watcher.domain.positions import Portfolio, Position
from watcher.kalshi import messages as m
from watcher.kalshi.fixed import cents_to_micros
from watcher.rules import RulesConfig, parse_rules
from watcher.rules.events import ClockEvent, Event, LifecycleEvent, TickEvent, TradeEvent
from watcher.rules.feed import lifecycle_event, tick_event, trade_event
from watcher.rules.session import CLOCK_INTERVAL_MS, RecordedClock, Session, apply_event

TICKER = "KXCPI-26JAN-T0.3"
NY = ZoneInfo("America/New_York")
#: 2026-01-15 12:00 in New York: outside any quiet hours.
T0 = int(datetime(2026, 1, 15, 12, tzinfo=NY).timestamp()) * 1000
MINUTE = 60_000
FIXTURES = Path(__file__).parent / "fixtures" / "kalshi"


def c(cents: float | str) -> int:
    return cents_to_micros(str(cents))


def rules(*lines: str) -> RulesConfig:
    text = "timezone: America/New_York\nrules:\n" + "".join(f"  - {r}\n" for r in lines)
    return parse_rules(text, env={})


def session(*lines: str) -> Session:
    """A session over one watched YES position at 30¢, its market watched since T0."""
    held = Position(
        index=1,
        line=1,
        ticker=TICKER,
        side="YES",
        entry_micros=c(30),
        contracts=Decimal(10),
        status="OPEN",
    )
    run = Session(rules=rules(*lines), portfolio=Portfolio((held,)))
    run.markets.watch(TICKER, T0)
    return run


def frame(name: str) -> m.Message | m.UnknownMessage:
    return m.decode_message((FIXTURES / name).read_text())


# What an event does to market state


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # (events applied in order) → (yes_bid, yes_ask, yes_last, last_tick_ms)
        ([TickEvent(TICKER, 1, c(40), c(42), c(41))], (c(40), c(42), c(41), 1)),
        (
            [TickEvent(TICKER, 1, c(40), c(42), c(41)), TickEvent(TICKER, 2, None, c(43), None)],
            (c(40), c(43), c(41), 2),
        ),
        (
            [TickEvent(TICKER, 5, c(40), c(42), c(41)), TickEvent(TICKER, 4, c(1), c(2), c(1))],
            (c(40), c(42), c(41), 5),
        ),
        ([TradeEvent(TICKER, 3, "t1", c(44), 10_000_000)], (None, None, c(44), None)),
        ([TradeEvent(TICKER, 3, "t1", c(44), 10_000_000, late=True)], (None, None, None, None)),
        (
            [TickEvent(TICKER, 5, c(40), c(42), c(41)), TradeEvent(TICKER, 4, "t1", c(50), 1)],
            (c(40), c(42), c(41), 5),
        ),
        ([ClockEvent(9)], (None, None, None, None)),
    ],
)
def test_an_event_moves_the_quote_only_when_it_is_newer(events: list[Event], expected) -> None:
    """A tick sets the quote (None keeps a price) unless older than the newest; a trade sets the
    last price unless late or older; the clock changes nothing."""
    markets = Markets()
    for event in events:
        apply_event(markets, event)
    state = markets.get(TICKER)
    seen = (None, None, None, None)
    if state is not None:
        seen = (state.yes_bid, state.yes_ask, state.yes_last, state.last_tick_ms)
    assert seen == expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # event → (status, result, close_time_ms, settlement_value_micros)
        (LifecycleEvent(TICKER, 1, "activated"), ("active", None, None, None)),
        (
            LifecycleEvent(TICKER, 1, "close_date_updated", close_time_ms=9_000),
            (None, None, 9_000, None),
        ),
        (
            LifecycleEvent(TICKER, 1, "determined", "yes", 1_000_000),
            ("determined", "yes", None, 1_000_000),
        ),
        (LifecycleEvent(TICKER, 1, "settled", "no", 0), ("finalized", "no", None, 0)),
    ],
)
def test_a_lifecycle_event_sets_status_result_close_time_and_payout(event, expected) -> None:
    """Status follows the lifecycle word; result, close time and payout are kept when given."""
    markets = Markets()
    state = apply_event(markets, event)
    assert state is not None
    assert (state.status, state.result, state.close_time_ms, state.settlement_value_micros) == (
        expected
    )


# What the step decides, and what it keeps


def test_the_step_applies_the_tick_then_fires_once_and_keeps_the_rule_state() -> None:
    """A tight spread fires once; the changed state is in the decision and in the session, so
    the same quote again decides nothing."""
    run = session("{name: tight, type: spread, max_cents: 2}")
    first = run.step(TickEvent(TICKER, T0 + 1, c(40), c(41), c(40)), T0 + 1)
    assert [alert.key for alert in first.alerts] == [f"tight|{TICKER}|{T0 + 1}"]
    assert run.markets[TICKER].yes_ask == c(41)
    assert first.changed and run.states == first.changed
    again = run.step(TickEvent(TICKER, T0 + 2, c(40), c(41), c(40)), T0 + 2)
    assert again.alerts == [] and again.changed == {}


@pytest.mark.parametrize(
    ("events", "fired"),
    [
        # (event, now) in order → rule names that fired, per step
        ([(TickEvent(TICKER, T0, c(40), c(50), c(45)), T0)], [[]]),
        ([(TickEvent(TICKER, T0, c(40), c(41), c(45)), T0)], [["tight"]]),
        ([(ClockEvent(T0 + 4 * MINUTE), T0 + 4 * MINUTE)], [[]]),
        ([(ClockEvent(T0 + 6 * MINUTE), T0 + 6 * MINUTE)], [["quiet"]]),
        (
            [
                (ClockEvent(T0 + 6 * MINUTE), T0 + 6 * MINUTE),
                (TickEvent(TICKER, T0 + 7 * MINUTE, c(40), c(50), c(45)), T0 + 7 * MINUTE),
            ],
            [["quiet"], ["quiet"]],  # the stale alert, then its recovery
        ),
        ([(TradeEvent(TICKER, T0, "t1", c(45), 600_000_000), T0)], [["whale"]]),
        ([(TradeEvent(TICKER, T0, "t1", c(45), 10_000_000), T0)], [[]]),
        ([(LifecycleEvent(TICKER, T0, "determined", "yes", 1_000_000), T0)], [["done"]]),
        ([(LifecycleEvent(TICKER, T0, "activated"), T0)], [[]]),
    ],
)
def test_each_event_runs_the_rules_it_concerns(events, fired) -> None:
    """Ticks run price rules and recover `stale`; the clock runs `stale`; trades `trade_size`;
    lifecycle `settled` on determination."""
    run = session(
        "{name: tight, type: spread, max_cents: 2}",
        "{name: quiet, type: stale, after: 5m}",
        "{name: whale, type: trade_size, min_contracts: 500}",
        "{name: done, type: settled}",
    )
    seen = [[alert.rule for alert in run.step(event, now).alerts] for event, now in events]
    assert seen == fired


def test_new_rules_take_effect_at_the_next_step_with_their_history_window() -> None:
    """set_rules swaps the rules and sizes the market history for the longest velocity window."""
    run = session("{name: tight, type: spread, max_cents: 2}")
    assert run.markets.history_ms == 0
    run.set_rules(rules("{name: fast, type: velocity, cents: 5, within: 10m}"))
    assert run.markets.history_ms == 10 * MINUTE
    assert run.step(TickEvent(TICKER, T0, c(40), c(41), c(40)), T0).alerts == []


# The recorded clock of a replay


@pytest.mark.parametrize(
    ("times", "ticks"),
    [
        ([0], [0]),
        ([0, 1, 4_999, 5_000], [0, 5_000]),
        ([1_000, 3_000, 6_000, 6_500, 11_000], [1_000, 6_000, 11_000]),
        ([0, 60_000, 60_001], [0, 60_000]),
    ],
)
def test_the_recorded_clock_ticks_at_the_first_event_and_each_interval_after(times, ticks) -> None:
    """A clock event at the first event, then whenever recorded time moved on by the interval,
    at the time of the event that moved it."""
    clock = RecordedClock()
    assert clock.interval_ms == CLOCK_INTERVAL_MS == 5_000
    events = [clock.advance(ts) for ts in times]
    assert [e.now_ms for e in events if e is not None] == ticks


# Kalshi frames → events (the boundary)


def test_frames_become_events_with_micro_prices_and_the_frames_own_time() -> None:
    """Ticker and trade frames keep their ts_ms and prices in micro-dollars; a lifecycle frame
    without settlement time takes its sending time and its close time in ms."""
    ticker = frame("ticker.json")
    assert isinstance(ticker, m.Ticker)
    assert tick_event(ticker, 1) == TickEvent(
        "FED-23DEC-T3.00",
        1669149841000,
        450_000,
        530_000,
        480_000,
        volume=33_896_000_000,  # cumulative contracts × 1,000,000 (volume_spike)
        open_interest=20_422_000_000,
        yes_bid_size=300_000_000,  # contracts at the YES bid and ask (the event rules' depth)
        yes_ask_size=150_000_000,
    )
    trade = frame("trade.json")
    assert isinstance(trade, m.Trade)
    assert trade_event(trade, 1, late=True) == TradeEvent(
        "HIGHNY-22DEC23-B53.5",
        1669149841000,
        "d91bc706-ee49-470d-82d8-11418bda6fed",
        360_000,
        136_000_000,
        "no",
        True,
    )
    created = frame("market_lifecycle_v2_created.json")
    assert isinstance(created, m.MarketLifecycle)
    assert lifecycle_event(created, 1) == LifecycleEvent(
        "INXD-23SEP14-B4487", 1669149841234, "created", None, None, 1694721600000
    )


def test_a_frame_without_any_time_takes_the_fallback() -> None:
    """No ts_ms, ts or sending_ts_ms: the event is at the fallback (receive or stored) time."""
    data = json.loads((FIXTURES / "market_lifecycle_v2_created.json").read_text())
    del data["sending_ts_ms"]
    created = m.decode_message(json.dumps(data))
    assert isinstance(created, m.MarketLifecycle)
    assert lifecycle_event(created, 42).ts_ms == 42
