"""The pure rule engine: a truth table per rule type, side-aware wording, hysteresis, state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watcher.domain.alert import Alert
from watcher.domain.market import Markets
from watcher.domain.positions import Portfolio, Position, pnl_dollars
from watcher.kalshi.fixed import cents_to_micros
from watcher.rules import (
    ClockEvent,
    Event,
    LifecycleEvent,
    RulesConfig,
    RulesError,
    RuleState,
    StateKey,
    TickEvent,
    TradeEvent,
    evaluate,
    parse_rules,
    unmatched_rules,
)
from watcher.rules.checks import Subject, check_level

TICKER = "KXCPI-26JAN-T0.3"
NY = ZoneInfo("America/New_York")
#: 2026-01-15 12:00 in New York (17:00 UTC): outside any quiet hours used here.
T0 = int(datetime(2026, 1, 15, 12, tzinfo=NY).timestamp()) * 1000
MINUTE = 60_000


def c(cents: float | str) -> int:
    return cents_to_micros(str(cents))


def position(
    side: str = "YES",
    entry: float = 30,
    contracts: int | str = 10,
    *,
    ticker: str = TICKER,
    index: int = 1,
    id: str | None = None,
    status: str = "OPEN",
) -> Position:
    return Position(
        index=index,
        line=index,
        ticker=ticker,
        side=side,  # type: ignore[arg-type]
        entry_micros=c(entry),
        contracts=Decimal(contracts),
        status=status,
        id=id,
    )


def rules(*lines: str, head: str = "") -> RulesConfig:
    text = f"timezone: America/New_York\n{head}rules:\n" + "".join(f"  - {r}\n" for r in lines)
    return parse_rules(text, env={})


class Harness:
    """Feeds events to Markets and evaluate(), keeping rule states like the app does."""

    def __init__(self, config: RulesConfig, positions: Sequence[Position] = ()) -> None:
        self.config = config
        self.portfolio = Portfolio(tuple(positions))
        self.markets = Markets(history_ms=config.history_ms)
        self.states: dict[StateKey, RuleState] = {}
        for ticker in self.portfolio.tickers():
            self.markets.watch(ticker, T0)

    def run(self, event: Event, now_ms: int) -> list[Alert]:
        decision = evaluate(self.config, self.portfolio, self.markets, event, self.states, now_ms)
        self.states.update(decision.changed)
        return decision.alerts

    def tick(
        self,
        yes_bid: float | None = None,
        yes_ask: float | None = None,
        yes_last: float | None = None,
        *,
        at: int = T0,
        ticker: str = TICKER,
    ) -> list[Alert]:
        micros = [None if v is None else c(v) for v in (yes_bid, yes_ask, yes_last)]
        self.markets.apply_ticker(ticker, at, *micros)
        return self.run(TickEvent(ticker, at), at)

    def last(self, yes_last: float, *, at: int = T0, ticker: str = TICKER) -> list[Alert]:
        return self.tick(yes_last=yes_last, at=at, ticker=ticker)

    def trade(
        self,
        yes_price: float,
        count: int,
        *,
        at: int = T0,
        trade_id: str = "t1",
        late: bool = False,
    ) -> list[Alert]:
        self.markets.apply_trade(TICKER, at, c(yes_price), late=late)
        event = TradeEvent(TICKER, at, trade_id, c(yes_price), count * 1_000_000, "yes", late)
        return self.run(event, at)

    def clock(self, at: int) -> list[Alert]:
        return self.run(ClockEvent(at), at)


def bodies(alerts: Sequence[Alert]) -> list[str]:
    return [alert.body for alert in alerts]


# spread


@pytest.mark.parametrize(
    ("rule", "side", "yes_bid", "yes_ask", "expected"),
    [
        ("max_cents: 2", "YES", 45, 47, "spread 2¢ (at most 2¢): YES bid 45¢ / ask 47¢"),
        ("max_cents: 2", "YES", 45, 46, "spread 1¢ (at most 2¢): YES bid 45¢ / ask 46¢"),
        ("max_cents: 2", "YES", 45, 48, None),
        ("max_cents: 2", "NO", 45, 47, "spread 2¢ (at most 2¢): NO bid 53¢ / ask 55¢"),
        ("max_cents: 2.5", "YES", 45, 47.5, "spread 2.5¢ (at most 2.5¢): YES bid 45¢ / ask 47.5¢"),
        ("min_cents: 5", "YES", 40, 45, "spread 5¢ (at least 5¢): YES bid 40¢ / ask 45¢"),
        ("min_cents: 5", "YES", 40, 44, None),
        ("min_cents: 5", "NO", 40, 46, "spread 6¢ (at least 5¢): NO bid 54¢ / ask 60¢"),
    ],
)
def test_spread_fires_at_or_inside_its_bound_in_the_positions_side(
    rule, side, yes_bid, yes_ask, expected
):
    """`max_cents: 2` fires at 2¢ or less, `min_cents: 5` at 5¢ or more; NO quotes in NO terms."""
    harness = Harness(rules(f"{{name: tight spread, type: spread, {rule}}}"), [position(side)])
    alerts = harness.tick(yes_bid, yes_ask, 46)
    assert bodies(alerts) == ([] if expected is None else [expected])
    if expected:
        assert alerts[0].title == f"{TICKER} · tight spread"
        assert alerts[0].key == f"tight spread|{TICKER}|{T0}"


def test_spread_waits_for_both_sides_of_the_book():
    """No spread alert until both the bid and the ask are known."""
    harness = Harness(rules("{name: s, type: spread, max_cents: 2}"), [position()])
    assert harness.tick(yes_bid=45) == []
    assert len(harness.tick(yes_ask=46, at=T0 + 1)) == 1


# move_from_entry


@pytest.mark.parametrize(
    ("side", "entry", "yes_last", "direction", "expected"),
    [
        ("YES", 30, 35, "either", "YES 35¢, up 5¢ from entry 30¢ (P&L +$0.50)"),
        ("YES", 30, 34, "either", None),
        ("YES", 30, 25, "either", "YES 25¢, down 5¢ from entry 30¢ (P&L -$0.50)"),
        ("YES", 30, 26, "either", None),
        ("NO", 30, 64, "either", "NO 36¢, up 6¢ from entry 30¢ (P&L +$0.60)"),
        ("NO", 30, 75, "either", "NO 25¢, down 5¢ from entry 30¢ (P&L -$0.50)"),
        ("NO", 30, 66, "either", None),
        ("YES", 30, 40, "up", "YES 40¢, up 10¢ from entry 30¢ (P&L +$1.00)"),
        ("YES", 30, 20, "up", None),
        ("YES", 30, 20, "down", "YES 20¢, down 10¢ from entry 30¢ (P&L -$1.00)"),
        ("NO", 30, 60, "down", None),
        ("NO", 30, 80, "down", "NO 20¢, down 10¢ from entry 30¢ (P&L -$1.00)"),
        ("YES", 30.5, 35.5, "either", "YES 35.5¢, up 5¢ from entry 30.5¢ (P&L +$0.50)"),
    ],
)
def test_move_from_entry_is_measured_on_the_positions_own_side(
    side, entry, yes_last, direction, expected
):
    """±N¢ from entry, with a NO position moving with the NO price (1 − YES)."""
    config = rules(f"{{name: moved, type: move_from_entry, cents: 5, direction: {direction}}}")
    harness = Harness(config, [position(side, entry)])
    assert bodies(harness.last(yes_last)) == ([] if expected is None else [expected])


def test_move_from_entry_can_use_the_bid_as_the_mark():
    """`price: bid` marks at what the position could be sold for (a NO bid is 1 − YES ask)."""
    config = rules("{name: m, type: move_from_entry, cents: 5, price: bid}")
    harness = Harness(config, [position("NO", 30)])
    assert bodies(harness.tick(yes_bid=60, yes_ask=64, yes_last=50)) == [
        "NO 36¢, up 6¢ from entry 30¢ (P&L +$0.60)"
    ]


def test_two_positions_on_one_market_keep_separate_states():
    """Position-scoped rules keep state per position: TICKER#id, or TICKER#index without id."""
    config = rules("{name: m, type: move_from_entry, cents: 5}")
    yes = position("YES", 30, id="a1")
    no = position("NO", 60, index=2)
    harness = Harness(config, [yes, no])
    alerts = harness.last(35)
    assert [(a.key, a.body) for a in alerts] == [
        (f"m|{TICKER}#a1|{T0}", "YES 35¢, up 5¢ from entry 30¢ (P&L +$0.50)"),
        (f"m|{TICKER}#2|{T0}", "NO 65¢, up 5¢ from entry 60¢ (P&L +$0.50)"),
    ]
    assert set(harness.states) == {("m", f"{TICKER}#a1"), ("m", f"{TICKER}#2")}


# Rules that act

PNL_CLOSE = "{name: r, type: pnl, below_dollars: -5, action: close}"
MOVE_CLOSE = "{name: r, type: move_from_entry, cents: 10, action: close}"


@pytest.mark.parametrize(
    ("rule", "side", "quote", "expected"),
    [
        # A YES position sells at the YES bid.
        (PNL_CLOSE, "YES", (20, 22, 21), 20),
        # A NO position sells at the NO bid: 100¢ − YES ask.
        (PNL_CLOSE, "NO", (77, 80, 79), 20),
        # The mark may be the last price; the action still takes the bid of that tick.
        (MOVE_CLOSE, "YES", (18, 21, 20), 18),
        # No bid on that tick: the alert says close, with no price to close at.
        (MOVE_CLOSE, "YES", (None, None, 20), None),
    ],
)
def test_a_position_rule_that_closes_marks_its_alert_with_the_position_and_bid(
    rule, side, quote, expected
):
    """An alert of a position rule with `action: close` carries the action, the position's id,
    side and contracts, and the side's bid at the tick that fired it."""
    harness = Harness(rules(rule), [position(side, 40, 50, id="p7")])
    (alert,) = harness.tick(*quote)
    assert alert.action == "close"
    marked = (alert.position_id, alert.action_side, alert.action_contracts)
    assert marked == ("p7", side, Decimal(50))
    assert alert.action_price_micros == (None if expected is None else c(expected))
    assert alert.key == f"r|{TICKER}#p7|{T0}"


@pytest.mark.parametrize(
    "rule",
    [
        "{name: r, type: pnl, below_dollars: -5}",
        "{name: r, type: move_from_entry, cents: 10}",
        "{name: r, type: spread, max_cents: 5}",
        "{name: r, type: price_cross, cents: 25, direction: down}",
    ],
)
def test_a_rule_without_an_action_only_alerts(rule):
    """Without `action`, alerts carry no action, position or price: nothing is done."""
    harness = Harness(rules(rule), [position("YES", 40, 50, id="p7")])
    (alert,) = harness.tick(20, 22, 21)
    assert (alert.action, alert.position_id, alert.action_price_micros) == (None, None, None)
    assert (alert.action_side, alert.action_contracts) == (None, None)


def test_a_market_rule_cannot_close_and_each_position_is_closed_on_its_own():
    """A market rule is refused at load; two positions in one market each get their own close
    (an entry without an id is named by its scope, TICKER#N, which the paper desk knows)."""
    with pytest.raises(RulesError, match="action: close needs a rule about positions"):
        rules("{name: r, type: spread, max_cents: 5, action: close}")
    config = rules("{name: r, type: pnl, below_dollars: -5, action: close}")
    harness = Harness(config, [position("YES", 40, 50, id="a"), position("NO", 50, 20, index=2)])
    alerts = harness.tick(20, 30, 25)  # YES bid 20¢; NO bid 70¢ (NO mark 75¢: +$5, no alert)
    assert [(a.position_id, a.action_side, a.action_price_micros) for a in alerts] == [
        ("a", "YES", c(20))
    ]
    alerts = harness.tick(70, 80, 76)  # NO mark 24¢: 20 × −26¢ = −$5.20
    assert [(a.position_id, a.action_side, a.action_price_micros) for a in alerts] == [
        (f"{TICKER}#2", "NO", c(20))
    ]


# pnl


@pytest.mark.parametrize(
    ("bound", "side", "entry", "yes_last", "expected"),
    [
        (
            "below_dollars: -10",
            "YES",
            50,
            40,
            "paper P&L -$10.00 (at or below -$10.00): 100 YES from 50¢, now YES 40¢",
        ),
        ("below_dollars: -10", "YES", 50, 41, None),
        (
            "below_dollars: -10",
            "NO",
            30,
            80,
            "paper P&L -$10.00 (at or below -$10.00): 100 NO from 30¢, now NO 20¢",
        ),
        ("below_dollars: -10", "NO", 30, 79, None),
        (
            "above_dollars: 5",
            "YES",
            50,
            55,
            "paper P&L +$5.00 (at or above $5.00): 100 YES from 50¢, now YES 55¢",
        ),
        ("above_dollars: 5", "YES", 50, 54.5, None),
        (
            "above_dollars: 5",
            "NO",
            50,
            45,
            "paper P&L +$5.00 (at or above $5.00): 100 NO from 50¢, now NO 55¢",
        ),
    ],
)
def test_pnl_is_contracts_times_the_side_aware_mark_move(bound, side, entry, yes_last, expected):
    """Paper P&L = contracts × (mark − entry) on the position's side, thresholds inclusive."""
    harness = Harness(rules(f"{{name: p, type: pnl, {bound}}}"), [position(side, entry, 100)])
    assert bodies(harness.last(yes_last)) == ([] if expected is None else [expected])


def test_pnl_rearms_after_recovering_a_dollar_by_default():
    """A pnl rule's hysteresis is in cents of P&L, 100 (= $1) unless rearm_cents says otherwise."""
    harness = Harness(rules("{name: p, type: pnl, below_dollars: -10}"), [position("YES", 50, 100)])
    assert len(harness.last(40, at=T0)) == 1
    assert harness.last(40.5, at=T0 + 1) == []  # -$9.50: not recovered by $1 yet
    assert harness.last(40, at=T0 + 2) == []
    assert harness.last(41, at=T0 + 3) == []  # -$9.00: re-armed
    assert len(harness.last(39, at=T0 + 4)) == 1


# price_cross


@pytest.mark.parametrize(
    ("direction", "prices", "fired"),
    [
        ("up", [45, 50, 52, 50, 49, 50], [False, True, False, False, False, True]),
        ("up", [55], [True]),  # already above at start: fires once
        ("down", [55, 50, 48, 51, 50], [False, True, False, False, True]),
        ("down", [55, 51, 50.5], [False, False, False]),
    ],
)
def test_price_cross_fires_going_through_the_level_and_rearms_a_cent_back(direction, prices, fired):
    """Up through 50¢ fires at ≥ 50¢ and re-arms at ≤ 49¢ (rearm_cents 1); down mirrors it."""
    config = rules(f"{{name: x, type: price_cross, cents: 50, direction: {direction}}}")
    harness = Harness(config, [position()])
    seen = [bool(harness.last(price, at=T0 + i)) for i, price in enumerate(prices)]
    assert seen == fired


def test_price_cross_on_a_no_position_watches_the_no_price():
    """A market rule on a NO position's market speaks NO prices unless `side` says otherwise."""
    harness = Harness(
        rules("{name: x, type: price_cross, cents: 40, direction: up}"), [position("NO")]
    )
    assert bodies(harness.last(58)) == ["NO 42¢, crossed 40¢ going up"]
    yes_rule = rules("{name: x, type: price_cross, cents: 40, direction: up, side: yes}")
    assert bodies(Harness(yes_rule, [position("NO")]).last(58)) == ["YES 58¢, crossed 40¢ going up"]


# velocity


def test_velocity_compares_with_the_price_one_window_ago():
    """|price now − price at (now − within)| ≥ cents fires; the reference slides with time."""
    config = rules("{name: fast, type: velocity, cents: 5, within: 10m}")
    harness = Harness(config, [position()])
    assert harness.markets.history_ms == 10 * MINUTE
    assert harness.last(50, at=T0) == []
    assert harness.last(53, at=T0 + 5 * MINUTE) == []
    assert bodies(harness.last(56, at=T0 + 9 * MINUTE)) == ["YES 56¢, up 6¢ in 9m (from 50¢)"]
    assert harness.last(57, at=T0 + 12 * MINUTE) == []  # vs 50¢ at T0: still 7¢, disarmed
    assert harness.last(56, at=T0 + 16 * MINUTE) == []  # vs 53¢ at T0+5m: 3¢, re-armed
    assert bodies(harness.last(50, at=T0 + 22 * MINUTE)) == ["YES 50¢, down 7¢ in 10m (from 57¢)"]


@pytest.mark.parametrize(
    ("direction", "side", "yes_prices", "expected"),
    [
        ("up", "YES", [50, 44], None),
        ("down", "YES", [50, 44], "YES 44¢, down 6¢ in 1m (from 50¢)"),
        ("up", "NO", [50, 44], "NO 56¢, up 6¢ in 1m (from 50¢)"),
        ("either", "NO", [50, 55], "NO 45¢, down 5¢ in 1m (from 50¢)"),
        ("either", "NO", [50, 54], None),
    ],
)
def test_velocity_direction_is_in_the_side_of_the_position(direction, side, yes_prices, expected):
    """A YES drop is a NO rise: direction and wording follow the position's side."""
    config = rules(f"{{name: v, type: velocity, cents: 5, within: 5m, direction: {direction}}}")
    harness = Harness(config, [position(side)])
    harness.last(yes_prices[0], at=T0)
    alerts = harness.last(yes_prices[1], at=T0 + MINUTE)
    assert bodies(alerts) == ([] if expected is None else [expected])


# trade_size


@pytest.mark.parametrize(
    ("side", "count", "expected"),
    [
        ("YES", 499, None),
        ("YES", 500, "trade of 500 contracts at YES 60¢ (taker bought YES)"),
        ("NO", 600, "trade of 600 contracts at NO 40¢ (taker bought YES)"),
    ],
)
def test_trade_size_fires_on_a_single_large_trade(side, count, expected):
    """A single trade of at least min_contracts alerts, priced in the position's side."""
    harness = Harness(
        rules("{name: whale, type: trade_size, min_contracts: 500}"), [position(side)]
    )
    alerts = harness.trade(60, count, trade_id="abc")
    assert bodies(alerts) == ([] if expected is None else [expected])
    if expected:
        assert alerts[0].key == f"whale|{TICKER}|abc"


def test_trade_size_alerts_per_trade_within_the_cooldown_per_market():
    """Each big trade alerts (its id in the key) unless the market's cooldown is running."""
    config = rules("{name: whale, type: trade_size, min_contracts: 500, cooldown: 5m}")
    harness = Harness(config, [position()])
    assert len(harness.trade(60, 900, trade_id="a", at=T0)) == 1
    assert harness.trade(60, 900, trade_id="b", at=T0 + MINUTE) == []
    late = harness.trade(61, 900, trade_id="c", at=T0 + 6 * MINUTE, late=True)
    assert bodies(late) == ["trade of 900 contracts at YES 61¢ (taker bought YES) · reported late"]


# closing_soon


def test_closing_soon_fires_once_per_close_time():
    """close_time − now ≤ before fires once; a moved close time may fire again; past close never."""
    harness = Harness(rules("{name: closing, type: closing_soon, before: 2h}"), [position()])
    close = T0 + 180 * MINUTE
    harness.markets.apply_metadata(TICKER, close_time_ms=close)
    assert harness.clock(T0) == []
    assert bodies(harness.clock(T0 + 60 * MINUTE)) == ["closes in 2h (at 2026-01-15 15:00 EST)"]
    assert harness.clock(T0 + 90 * MINUTE) == []
    harness.markets.apply_lifecycle(
        TICKER, T0, "close_date_updated", close_time_ms=close + 60 * MINUTE
    )
    assert bodies(harness.clock(T0 + 135 * MINUTE)) == [
        "closes in 1h 45m (at 2026-01-15 16:00 EST)"
    ]
    fresh = Harness(rules("{name: closing, type: closing_soon, before: 2h}"), [position()])
    fresh.markets.apply_metadata(TICKER, close_time_ms=T0)
    assert fresh.clock(T0 + MINUTE) == []


# settled


@pytest.mark.parametrize(
    ("result", "value", "expected"),
    [
        ("yes", None, "result YES: 25 NO from 30¢ → -$7.50; 10 YES from 60¢ → +$4.00"),
        ("no", None, "result NO: 25 NO from 30¢ → +$17.50; 10 YES from 60¢ → -$6.00"),
        ("scalar", 0.25, "result SCALAR: 25 NO from 30¢ → +$11.25; 10 YES from 60¢ → -$3.50"),
        ("scalar", None, "result SCALAR (payout not known yet)"),
    ],
)
def test_settled_reports_the_realized_paper_pnl_of_each_position(result, value, expected):
    """Payout is $1 for the winning side ($0 else, or the settlement value); once per market."""
    positions = [position("NO", 30, 25), position("YES", 60, 10, index=2)]
    harness = Harness(rules("{name: settled, type: settled}"), positions)
    payout = None if value is None else c(value * 100)
    harness.markets.apply_lifecycle(
        TICKER, T0, "determined", result=result, settlement_value_micros=payout
    )
    alerts = harness.run(LifecycleEvent(TICKER, T0, "determined", result, payout), T0)
    assert bodies(alerts) == [expected]
    harness.markets.apply_lifecycle(TICKER, T0 + 1, "settled")
    assert harness.run(LifecycleEvent(TICKER, T0 + 1, "settled"), T0 + 1) == []
    assert harness.clock(T0 + 2) == []


def test_settled_also_fires_from_rest_metadata_on_the_clock():
    """A result learned from REST (status finalized) alerts at the next clock tick."""
    harness = Harness(
        rules("{name: s, type: settled, message: '{market} {result} {pnl}'}"),
        [position("NO", 30, 25)],
    )
    assert harness.clock(T0) == []
    harness.markets.apply_metadata(TICKER, status="finalized", result="no")
    assert bodies(harness.clock(T0 + 1)) == [f"{TICKER} NO +$17.50"]


# stale


def test_stale_alerts_once_then_once_more_when_data_flows_again():
    """No tick for `after` → one alert; the next tick → one recovery alert; then it re-arms."""
    harness = Harness(rules("{name: stale, type: stale, after: 5m}"), [position()])
    assert harness.clock(T0 + 4 * MINUTE) == []
    assert bodies(harness.clock(T0 + 5 * MINUTE)) == [
        "no ticker update in the 5m since watching began"
    ]
    assert harness.clock(T0 + 6 * MINUTE) == []
    recovered = harness.last(50, at=T0 + 7 * MINUTE)
    assert bodies(recovered) == ["data flowing again (stale alert at 2026-01-15 12:05 EST)"]
    assert recovered[0].severity == "info"
    assert recovered[0].key == f"stale|{TICKER}|{T0 + 7 * MINUTE}|recovered"
    assert harness.last(51, at=T0 + 8 * MINUTE) == []
    assert bodies(harness.clock(T0 + 13 * MINUTE + 1000)) == [
        "no ticker update for 5m 1s (last at 2026-01-15 12:08 EST)"
    ]


# Common behaviour


def test_cooldown_delays_a_second_firing_even_after_rearming():
    """Re-armed within the cooldown, a true condition waits; it fires once the cooldown passed."""
    config = rules("{name: s, type: spread, max_cents: 2, cooldown: 10m}")
    harness = Harness(config, [position()])
    assert len(harness.tick(45, 47, at=T0)) == 1
    assert harness.tick(45, 48, at=T0 + MINUTE) == []  # re-arms at 3¢
    assert harness.tick(45, 46, at=T0 + 2 * MINUTE) == []  # cooling down
    assert len(harness.tick(45, 46, at=T0 + 10 * MINUTE)) == 1


def test_defaults_cooldown_applies_to_rules_without_one():
    """`defaults.cooldown` is the cooldown of every rule that sets none."""
    config = rules("{name: s, type: spread, max_cents: 2}", head="defaults: {cooldown: 1h}\n")
    harness = Harness(config, [position()])
    assert len(harness.tick(45, 47, at=T0)) == 1
    harness.tick(45, 49, at=T0 + MINUTE)
    assert harness.tick(45, 47, at=T0 + 59 * MINUTE) == []
    assert len(harness.tick(45, 47, at=T0 + 60 * MINUTE)) == 1


def test_rearm_cents_sets_how_far_back_the_value_must_go():
    """With rearm_cents 3, a 2¢ spread rule re-arms only at 5¢ or wider."""
    harness = Harness(rules("{name: s, type: spread, max_cents: 2, rearm_cents: 3}"), [position()])
    fired = [
        bool(harness.tick(45, 45 + spread, at=T0 + i)) for i, spread in enumerate([2, 4, 2, 5, 2])
    ]
    assert fired == [True, False, False, False, True]


def test_state_survives_a_restart_through_json():
    """Persisted state (JSON) means a restart neither repeats an alert nor loses a firing."""
    config = rules("{name: s, type: spread, max_cents: 2}")
    first = Harness(config, [position()])
    assert len(first.tick(45, 47, at=T0)) == 1
    saved = {key: state.to_json() for key, state in first.states.items()}
    restarted = Harness(config, [position()])
    restarted.states = {key: RuleState.from_json(text) for key, text in saved.items()}
    assert restarted.tick(45, 47, at=T0 + MINUTE) == []
    assert restarted.tick(45, 48, at=T0 + 2 * MINUTE) == []
    assert len(restarted.tick(45, 47, at=T0 + 3 * MINUTE)) == 1


def test_replaying_an_event_gives_the_same_alert_key():
    """The alert key depends only on rule, scope and the event, so the outbox can dedupe."""
    config = rules("{name: s, type: spread, max_cents: 2}")
    harness = Harness(config, [position()])
    harness.markets.apply_ticker(TICKER, T0, c(45), c(47), c(46))
    event = TickEvent(TICKER, T0)
    first = evaluate(config, harness.portfolio, harness.markets, event, {}, T0)
    again = evaluate(config, harness.portfolio, harness.markets, event, {}, T0 + 5000)
    assert [a.key for a in first.alerts] == [a.key for a in again.alerts] == [f"s|{TICKER}|{T0}"]


def test_evaluate_changes_none_of_its_inputs():
    """The engine is pure: states passed in are not modified, changes come back in `changed`."""
    config = rules("{name: s, type: spread, max_cents: 2}")
    harness = Harness(config, [position()])
    harness.markets.apply_ticker(TICKER, T0, c(45), c(47), c(46))
    states: dict[StateKey, RuleState] = {}
    decision = evaluate(
        config, harness.portfolio, harness.markets, TickEvent(TICKER, T0), states, T0
    )
    assert states == {}
    assert decision.changed == {("s", TICKER): RuleState(armed=False, last_fired_ms=T0, tag="")}


def test_rules_without_markets_apply_to_watched_positions_only():
    """No `markets` = markets with a watched position; globs pick markets, case-insensitively."""
    config = rules(
        "{name: all, type: spread, max_cents: 2}",
        "{name: cpi, type: spread, max_cents: 2, markets: ['kxcpi-*']}",
    )
    closed = position(ticker="KXBTC-1", status="CLOSED")
    harness = Harness(config, [position(), closed])
    assert [a.rule for a in harness.tick(45, 47)] == ["all", "cpi"]
    assert harness.tick(45, 47, ticker="KXBTC-1") == []
    assert [a.rule for a in harness.tick(45, 47, ticker="KXCPI-OTHER")] == ["cpi"]


def test_disabled_and_expired_rules_do_not_fire():
    """`enabled: false` switches a rule off; `expires` stops it after that day."""
    config = rules(
        "{name: off, type: spread, max_cents: 2, enabled: false}",
        "{name: old, type: spread, max_cents: 2, expires: 2026-01-14}",
        "{name: today, type: spread, max_cents: 2, expires: 2026-01-15}",
    )
    assert [a.rule for a in Harness(config, [position()]).tick(45, 47)] == ["today"]


def test_alerts_carry_targets_severity_and_a_rendered_template():
    """A template substitutes named values in the position's side and the configured zone."""
    config = rules(
        "{name: m, type: move_from_entry, cents: 5, severity: critical, notify: [phone],"
        " message: '{market} {side} {price} ({move} from {entry}, P&L {pnl}) {rule}/{severity}"
        " at {time} {spread} {closes}'}",
        head="notify: {phone: 'tgram://a/b'}\n",
    )
    harness = Harness(config, [position("NO", 30, 25)])
    (alert,) = harness.tick(62, 64, 64)
    assert alert.body == (
        f"{TICKER} NO 36¢ (+6¢ from 30¢, P&L +$1.50) m/critical at 2026-01-15 12:00 EST 2¢ n/a"
    )
    assert (alert.severity, alert.targets, alert.market_ticker) == ("critical", ("phone",), TICKER)


@pytest.mark.parametrize(
    ("severity", "at_hour", "suppressed"),
    [("warning", 12, False), ("warning", 23, True), ("info", 6, True), ("critical", 23, False)],
)
def test_quiet_hours_suppress_but_still_record_alerts(severity, at_hour, suppressed):
    """In quiet hours an alert is returned with suppressed=True; critical bypasses them."""
    config = rules(
        f"{{name: s, type: spread, max_cents: 2, severity: {severity}}}",
        head="quiet_hours: {start: '23:00', end: '07:00'}\n",
    )
    at = int(datetime(2026, 1, 15, at_hour, 30, tzinfo=NY).timestamp()) * 1000
    (alert,) = Harness(config, [position()]).tick(45, 47, at=at)
    assert alert.suppressed is suppressed


def test_a_rule_that_applies_to_no_market_is_a_warning():
    """unmatched_rules names rules whose globs match no watched market, where they are written."""
    config = rules(
        "{name: cpi, type: spread, max_cents: 2, markets: ['KXCPI-*']}",
        "{name: btc, type: spread, max_cents: 2, markets: ['KXBTC-*']}",
        "{name: exact, type: settled, markets: [KXETH-1]}",
    )
    assert unmatched_rules(config, Portfolio((position(),))) == [
        "rules.yaml:4:5: rule 'btc' applies to no market (markets: KXBTC-*)"
    ]
    assert unmatched_rules(rules("{name: all, type: settled}"), Portfolio(())) == [
        "rules.yaml:3:5: rule 'all' applies to no market (no position is watched)"
    ]


@pytest.mark.parametrize(
    "state",
    [RuleState(), RuleState(armed=False, last_fired_ms=T0, tag="up"), RuleState(tag="1700000")],
)
def test_rule_state_round_trips_through_json(state):
    """RuleState.to_json / from_json are inverse."""
    assert RuleState.from_json(state.to_json()) == state


@pytest.mark.parametrize("text", ["", "[]", '{"armed": "yes"}', '{"last_fired_ms": 1.5}', "{"])
def test_corrupt_rule_state_is_a_value_error(text):
    """Bad persisted state raises ValueError naming what is wrong (the lead resets it)."""
    with pytest.raises(ValueError, match="rule state"):
        RuleState.from_json(text)


def test_stale_rule_stays_quiet_for_a_closed_market() -> None:
    """A market that closed or settled sends no ticks by design: `stale` does not fire for it."""
    from watcher.domain.market import Markets
    from watcher.domain.trades_file import parse_positions
    from watcher.rules import parse_rules
    from watcher.rules.engine import ClockEvent, evaluate

    config = parse_rules(
        "version: 1\ntimezone: UTC\nrules:\n  - {name: feed stale, type: stale, after: 5m}\n",
        env={},
    )
    portfolio = parse_positions(
        '[{"ticker": "KXA", "side": "YES", "entry_price": 40, "contracts": 1}]'
    )
    markets = Markets()
    markets.watch("KXA", 0)
    markets.apply_metadata("KXA", title=None, status="closed", close_time_ms=0, result=None)
    decision = evaluate(config, portfolio, markets, ClockEvent(3_600_000), {}, 3_600_000)
    assert decision.alerts == []
    markets.apply_metadata("KXA", title=None, status="active", close_time_ms=None, result=None)
    decision = evaluate(config, portfolio, markets, ClockEvent(3_600_000), {}, 3_600_000)
    assert [a.rule for a in decision.alerts] == ["feed stale"]


@settings(max_examples=300, deadline=None)
@given(
    contracts=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100_000), places=2),
    entry=st.integers(min_value=1, max_value=999_999),
    mark=st.integers(min_value=0, max_value=1_000_000),
    above=st.decimals(min_value=Decimal(-5000), max_value=Decimal(5000), places=6),
    below=st.decimals(min_value=Decimal(-5000), max_value=Decimal(5000), places=6),
    rearm=st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=4),
)
def test_pnl_condition_in_integers_agrees_with_exact_decimal_pnl(
    contracts, entry, mark, above, below, rearm
):
    """The hot-path pnl check (integers only) decides exactly what the Decimal P&L decides, for
    fractional contracts, sub-penny prices and 6-decimal dollar bounds."""
    rule = rules(
        f"{{name: p, type: pnl, above_dollars: '{above}', below_dollars: '{below}',"
        f" rearm_cents: '{rearm}'}}"
    ).rules[0]
    held = Position(1, 1, TICKER, "YES", entry, contracts)
    market = Markets(history_ms=0)
    market.watch(TICKER, T0)
    state = market.apply_ticker(TICKER, T0, yes_bid=None, yes_ask=None, yes_last=mark)
    check = check_level(rule, Subject.of(TICKER, state, "YES", held), T0)  # type: ignore[arg-type]
    pnl, step = pnl_dollars(held, mark), rearm / 100
    assert check is not None
    assert check.active == (pnl >= above or pnl <= below)
    assert check.tag == ("above" if pnl >= above else "below" if pnl <= below else "")
    assert check.clear == (pnl <= above - step and pnl >= below + step)
