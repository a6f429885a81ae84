"""Event rules (issue 14): event_arbitrage and ladder, truth tables with fees per leg."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from watcher.domain.alert import Alert
from watcher.domain.event import EventInfo, EventMarket
from watcher.domain.market import Markets
from watcher.domain.positions import Portfolio
from watcher.kalshi.fixed import cents_to_micros
from watcher.rules import RulesConfig, RuleState, StateKey, TickEvent, evaluate, parse_rules
from watcher.rules.event_checks import Basket, Leg, arbitrage_baskets, basket_text, leg_fee

NY = ZoneInfo("America/New_York")
T0 = int(datetime(2026, 1, 15, 12, tzinfo=NY).timestamp()) * 1000
CLOSE = T0 + 86_400_000
RATE = Decimal("0.07")


def c(cents: float | str) -> int:
    return cents_to_micros(str(cents))


def k(contracts: int) -> int:
    """Contracts in micro-contracts, as market state keeps sizes."""
    return contracts * 1_000_000


def rules(*lines: str, head: str = "") -> RulesConfig:
    text = f"timezone: America/New_York\n{head}rules:\n" + "".join(f"  - {r}\n" for r in lines)
    return parse_rules(text, env={})


def me_event(n: int = 3, *, exclusive: bool = True, ticker: str = "KXWIN-26") -> EventInfo:
    markets = tuple(EventMarket(f"{ticker}-{chr(65 + i)}") for i in range(n))
    return EventInfo(ticker, "KXWIN", "Who wins", exclusive, markets)


def ladder_event(
    strikes: tuple[int, ...] = (50, 60, 70),
    *,
    kind: str = "greater",
    closes: tuple[int, ...] | None = None,
) -> EventInfo:
    closes = closes or (CLOSE,) * len(strikes)
    markets = tuple(
        EventMarket(
            f"KXHIGH-26-T{strike}",
            strike_type=kind,
            floor_strike=Decimal(strike) if kind == "greater" else None,
            cap_strike=Decimal(strike) if kind != "greater" else None,
            close_time_ms=close,
        )
        for strike, close in zip(strikes, closes, strict=True)
    )
    return EventInfo("KXHIGH-26", "KXHIGH", "High temperature", False, markets)


class Harness:
    """Markets + evaluate() with the watched events, keeping rule states like the session."""

    def __init__(self, config: RulesConfig, *events: EventInfo) -> None:
        self.config = config
        self.events = {event.event_ticker: event for event in events}
        self.markets = Markets()
        self.states: dict[StateKey, RuleState] = {}

    def quote(
        self,
        ticker: str,
        yes_bid: float | None,
        yes_ask: float | None,
        at: int = T0,
        sizes: tuple[int | None, int | None] = (None, None),
    ):
        bid = None if yes_bid is None else c(yes_bid)
        ask = None if yes_ask is None else c(yes_ask)
        bid_size, ask_size = (None if n is None else n * 1_000_000 for n in sizes)
        self.markets.apply_ticker(
            ticker, at, bid, ask, None, yes_bid_size=bid_size, yes_ask_size=ask_size
        )

    def tick(
        self,
        ticker: str,
        yes_bid=None,
        yes_ask=None,
        *,
        at: int = T0,
        sizes: tuple[int | None, int | None] = (None, None),
    ) -> list[Alert]:
        """Quote ``ticker`` (``sizes``: contracts at the YES bid and ask) and evaluate."""
        self.quote(ticker, yes_bid, yes_ask, at, sizes)
        decision = evaluate(
            self.config,
            Portfolio(()),
            self.markets,
            TickEvent(ticker, at),
            self.states,
            at,
            events=self.events,
        )
        self.states.update(decision.changed)
        return decision.alerts


def quote_all(h: Harness, event: EventInfo, bids: list[float], asks: list[float]) -> list[Alert]:
    """Quote every market of ``event`` (the last tick is the one evaluated fully)."""
    alerts: list[Alert] = []
    for market, bid, ask in zip(event.markets, bids, asks, strict=True):
        alerts += h.tick(market.ticker, bid, ask)
    return alerts


ARB = "{name: arb, type: event_arbitrage, min_edge_cents: 1}"
ARB_ALL = "{name: arb, type: event_arbitrage, min_edge_cents: 1, exhaustive: true}"


# fees


def test_the_fee_is_rounded_up_per_leg_not_per_basket():
    """Three NO legs at 10¢: 0.63¢ each is 1¢ each (3¢), not 1.89¢ → 2¢ for the basket."""
    assert leg_fee(c(10), RATE) == c(1)
    assert leg_fee(c(50), RATE) == c(2)  # 1.75¢ → 2¢
    basket = Basket(
        "no", tuple(Leg(f"M{i}", "NO", c(10), leg_fee(c(10), RATE)) for i in range(3)), c(200), "no"
    )
    assert basket.cost == c(33)


# event_arbitrage truth table


@pytest.mark.parametrize(
    ("rule", "exclusive", "bids", "asks", "expected"),
    [
        # NO asks 55 + 60 + 70 = 185¢, fees 2 + 2 + 2: 191¢ for at least $2.00 → 9¢.
        (ARB, True, [45, 40, 30], [47, 42, 32], "edge 9¢"),
        # 1¢ gross edge (NO asks 66 + 66 + 67 = 199¢) is −5¢ after 6¢ of fees: nothing.
        (ARB, True, [34, 34, 33], [36, 36, 35], None),
        # Not mutually exclusive: never evaluated.
        (ARB, False, [45, 40, 30], [47, 42, 32], None),
        # YES asks 30 × 3 + 6¢ fees = 96¢ < $1: only an exhaustive rule looks at it.
        (ARB, True, [28, 28, 28], [30, 30, 30], None),
        (ARB_ALL, True, [28, 28, 28], [30, 30, 30], "edge 4¢"),
        (ARB_ALL, False, [28, 28, 28], [30, 30, 30], None),
        # Edge exactly the minimum fires (inclusive); one cent short does not.
        (
            "{name: arb, type: event_arbitrage, min_edge_cents: 9}",
            True,
            [45, 40, 30],
            [47, 42, 32],
            "edge 9¢",
        ),
        (
            "{name: arb, type: event_arbitrage, min_edge_cents: 10}",
            True,
            [45, 40, 30],
            [47, 42, 32],
            None,
        ),
    ],
)
def test_event_arbitrage_truth_table(rule, exclusive, bids, asks, expected):
    event = me_event(exclusive=exclusive)
    h = Harness(rules(rule), event)
    alerts = quote_all(h, event, bids, asks)
    if expected is None:
        assert alerts == []
        return
    assert len(alerts) == 1
    assert expected in alerts[0].body
    assert alerts[0].market_ticker == "KXWIN-26"


def test_the_no_basket_alert_names_the_event_every_leg_the_edge_and_the_depth():
    event = me_event(4)
    h = Harness(rules(ARB), event)
    # NO asks 60 + 70 + 80 + 85 = 295¢ + fees 2 + 2 + 2 + 1 = 302¢ for at least $3.00: −2¢.
    assert quote_all(h, event, [40, 30, 20, 15], [42, 32, 22, 17]) == []
    # D's bid rises to 25¢: NO D 75¢ (fee 2¢): 293¢ → edge 7¢.
    [alert] = h.tick("KXWIN-26-D", 25, 27)
    assert alert.body == (
        "KXWIN-26: all-NO basket of 4 mutually exclusive markets costs $2.93 with fees and pays"
        " at least $3.00: edge 7¢ after fees for 1 contract per leg (depth unknown) · legs:"
        " NO KXWIN-26-A 60¢ + 2¢ fee, NO KXWIN-26-B 70¢ + 2¢ fee, NO KXWIN-26-C 80¢ + 2¢ fee,"
        " NO KXWIN-26-D 75¢ + 2¢ fee"
    )
    assert alert.title == "KXWIN-26 · arb"
    assert alert.key == f"arb|KXWIN-26|{T0}"


def test_the_size_is_the_least_displayed_depth_of_the_legs():
    legs = (Leg("A", "NO", c(55), c(2), Decimal(10)), Leg("B", "NO", c(60), c(2), Decimal(4)))
    text = basket_text(me_event(2), Basket("no", legs, c(100), "no"))
    assert "(depth allows 4 each)" in text
    unknown = (legs[0], Leg("B", "NO", c(60), c(2), None))
    assert "(depth unknown)" in basket_text(me_event(2), Basket("no", unknown, c(100), "no"))


def test_a_leg_without_a_quote_means_no_evaluation():
    event = me_event()
    h = Harness(rules(ARB), event)
    assert h.tick("KXWIN-26-A", 45, 47) == []
    assert h.tick("KXWIN-26-B", 40, 42) == []
    assert h.states == {}  # C has no bid: nothing evaluated, no state
    assert h.tick("KXWIN-26-C", None, 32) == []
    assert h.states == {}
    assert len(h.tick("KXWIN-26-C", 30, 32)) == 1


def test_it_re_arms_only_after_the_edge_has_gone():
    """min 5¢, rearm 1¢: fires at 9¢, quiet at 5¢, re-arms at 4¢ or less, fires again."""
    event = me_event()
    h = Harness(rules("{name: arb, type: event_arbitrage, min_edge_cents: 5}"), event)
    assert len(quote_all(h, event, [45, 40, 30], [47, 42, 32])) == 1  # edge 9¢
    assert h.states[("arb", "KXWIN-26")].armed is False
    assert h.tick("KXWIN-26-A", 45, 47, at=T0 + 1) == []  # still 9¢: once only
    assert h.tick("KXWIN-26-A", 41, 43, at=T0 + 2) == []  # 5¢: still active, disarmed
    assert h.tick("KXWIN-26-A", 40, 42, at=T0 + 3) == []  # 4¢: gone, re-armed
    assert h.states[("arb", "KXWIN-26")].armed is True
    assert len(h.tick("KXWIN-26-A", 45, 47, at=T0 + 4)) == 1


def test_a_tick_of_an_unwatched_market_or_an_unmatched_event_is_ignored():
    event = me_event()
    h = Harness(
        rules("{name: arb, type: event_arbitrage, min_edge_cents: 1, events: ['KXOTHER*']}"), event
    )
    assert quote_all(h, event, [45, 40, 30], [47, 42, 32]) == []
    h = Harness(rules(ARB), event)
    quote_all(h, event, [10, 10, 10], [12, 12, 12])
    assert h.tick("KXELSE", 45, 47) == []


def test_fee_rounding_is_the_only_thing_between_a_1c_gross_edge_and_an_alert():
    event = me_event()
    free = rules(ARB, head='fees: {taker_rate: "0"}\n')
    h = Harness(free, event)
    [alert] = quote_all(h, event, [34, 34, 33], [36, 36, 35])
    assert "edge 1¢" in alert.body


# the event's fee multiplier (its series' fee_multiplier, or its override in force), carried by
# the event


def priced(event: EventInfo, multiplier: str) -> EventInfo:
    return dataclasses.replace(event, fee_multiplier=Decimal(multiplier))


@pytest.mark.parametrize(
    ("multiplier", "expected"),
    [
        # NO asks 60 + 65 + 68 = 193¢: 7¢ under $2.00 before fees.
        ("1", "edge 1¢"),  # fees 1.68 / 1.59 / 1.52¢ → 2 + 2 + 2 = 6¢
        ("0.5", "edge 4¢"),  # 0.84 / 0.80 / 0.76¢ → 1 + 1 + 1 = 3¢
        ("0", "edge 7¢"),  # a fee-free series
        ("2", None),  # 3.36 / 3.19 / 3.05¢ → 4 + 4 + 4 = 12¢: the 1¢ edge is gone (−5¢)
    ],
)
def test_the_series_fee_multiplier_scales_every_legs_fee(multiplier, expected):
    event = priced(me_event(), multiplier)
    h = Harness(rules(ARB), event)
    alerts = quote_all(h, event, [40, 35, 32], [42, 37, 34])
    if expected is None:
        assert alerts == []
        [basket] = arbitrage_baskets(event, h.markets, RATE)  # evaluated, and short
        assert basket.edge == -c(5)
        return
    [alert] = alerts
    assert expected in alert.body
    assert ("fee_multiplier" in alert.body) is (multiplier != "1")


def test_a_fee_multiplier_turns_a_ladder_edge_into_none():
    """YES T50 40¢ + NO T60 50¢ = 90¢: 6¢ after 2 + 2¢ of fees, −2¢ after 6 + 6¢ at ×3."""
    for multiplier, fired in (("1", True), ("3", False)):
        event = priced(ladder_event(), multiplier)
        h = Harness(rules("{name: ladder, type: ladder, min_edge_cents: 1}"), event)
        assert bool(quote_all(h, event, [38, 50, 20], [40, 52, 22])) is fired


def test_the_alert_names_a_multiplier_that_is_not_1():
    event = priced(me_event(), "0.5")
    h = Harness(rules(ARB), event)
    [alert] = quote_all(h, event, [40, 35, 32], [42, 37, 34])
    assert alert.body.endswith(
        "NO KXWIN-26-C 68¢ + 1¢ fee · fees × 0.5 (the event's fee_multiplier)"
    )


# depth: the sizes at the touch the ticker channel gives


def test_the_depth_is_the_least_size_at_the_legs_prices():
    """A NO leg at $1 − YES bid takes the YES bid's size; a YES leg the YES ask's. A price
    given without its size makes that depth unknown again."""
    event = me_event()
    h = Harness(
        rules("{name: arb, type: event_arbitrage, min_edge_cents: 1, rearm_cents: 1}"), event
    )
    assert h.tick("KXWIN-26-A", 45, 47, sizes=(40, 7)) == []
    assert h.tick("KXWIN-26-B", 40, 42, sizes=(25, 9)) == []
    [alert] = h.tick("KXWIN-26-C", 30, 32, sizes=(60, 1))
    assert "edge 9¢ after fees for 1 contract per leg (depth allows 25 each)" in alert.body
    state = h.markets["KXWIN-26-B"]
    assert (state.yes_bid_size, state.yes_ask_size) == (k(25), k(9))
    h.tick("KXWIN-26-C", 20, 22, at=T0 + 1, sizes=(60, 1))  # edge gone (−1¢): re-armed
    [again] = h.tick("KXWIN-26-C", 30, 32, at=T0 + 2)  # a price without its size
    assert "(depth unknown)" in again.body

    ladder = ladder_event()
    h = Harness(rules(LADDER), ladder)
    h.tick("KXHIGH-26-T70", 20, 22, sizes=(1, 1))  # T70 is in no mispriced pair
    h.tick("KXHIGH-26-T50", 38, 40, sizes=(3, 12))
    [alert] = h.tick("KXHIGH-26-T60", 50, 52, sizes=(5, 2))
    # YES T50 at its ask (12 shown) + NO T60 at $1 − its bid (5 shown at the bid): 5 each.
    assert "(depth allows 5 each)" in alert.body


def test_a_ticker_frame_carries_its_sizes_into_the_alert():
    """Through the live boundary: ticker frames → TickEvent (sizes in micro-contracts) → the
    session's market view → the basket's size."""
    from watcher.kalshi.messages import Ticker, TickerMsg
    from watcher.rules.feed import tick_event
    from watcher.rules.session import Session

    event = me_event()
    session = Session(rules=rules(ARB), portfolio=Portfolio(()), events={"KXWIN-26": event})
    alerts: list[Alert] = []
    for market, bid, size in zip(
        event.markets, (45, 40, 30), ("120.00", "35.00", "64.00"), strict=True
    ):
        msg = TickerMsg(
            market_ticker=market.ticker,
            price_dollars=Decimal(bid) / 100,
            yes_bid_dollars=Decimal(bid) / 100,
            yes_ask_dollars=Decimal(bid + 2) / 100,
            yes_bid_size_fp=Decimal(size),
            yes_ask_size_fp=Decimal("1.00"),
            ts_ms=T0,
        )
        alerts += session.step(tick_event(Ticker(sid=1, msg=msg), T0), T0).alerts
    [alert] = alerts
    assert "edge 9¢ after fees for 1 contract per leg (depth allows 35 each)" in alert.body


# ladder


LADDER = "{name: ladder, type: ladder, min_edge_cents: 1}"


@pytest.mark.parametrize(
    ("event", "bids", "asks", "expected"),
    [
        # YES T50 ask 40¢ + NO T60 ask (1 − 50¢) 50¢ + 2 + 2 fees = 94¢ < $1 → 6¢.
        (ladder_event(), [38, 50, 20], [40, 52, 22], "edge 6¢"),
        # A consistent ladder: YES T50 60¢ + NO T60 55¢ > $1.
        (ladder_event(), [58, 45, 20], [60, 47, 22], None),
        # 1¢ gross (YES T50 49¢ + NO T60 50¢ = 99¢) is −3¢ after fees.
        (ladder_event(), [47, 50, 20], [49, 52, 22], None),
        # Different close times are different quantities: not compared.
        (ladder_event(closes=(CLOSE, CLOSE + 1, CLOSE + 2)), [38, 50, 20], [40, 52, 22], None),
        # `between` strikes are not thresholds.
        (ladder_event(kind="between"), [38, 50, 20], [40, 52, 22], None),
        # `less`: "below 70" is worth at least "below 60": YES T70 40¢ + NO T60 (1 − 50¢) 50¢.
        (ladder_event(kind="less"), [20, 50, 38], [22, 52, 40], "edge 6¢"),
    ],
)
def test_ladder_truth_table(event, bids, asks, expected):
    h = Harness(rules(LADDER), event)
    alerts = quote_all(h, event, bids, asks)
    if expected is None:
        assert alerts == []
        return
    assert len(alerts) == 1 and expected in alerts[0].body


def test_the_ladder_alert_names_both_legs():
    event = ladder_event()
    h = Harness(rules(LADDER), event)
    [alert] = quote_all(h, event, [38, 50, 20], [40, 52, 22])
    assert alert.body == (
        "KXHIGH-26: ladder inverted: YES of the wider threshold + NO of the narrower costs 94¢"
        " with fees and pays at least $1.00: edge 6¢ after fees for 1 contract per leg"
        " (depth unknown) · legs: YES KXHIGH-26-T50 (above 50) 40¢ + 2¢ fee,"
        " NO KXHIGH-26-T60 (above 60) 50¢ + 2¢ fee"
    )


def test_the_decision_step_runs_event_rules_on_a_watch_only_market():
    """Session.step (live and replay) passes its events: no position needed."""
    from watcher.rules.session import Session

    event = me_event()
    session = Session(rules=rules(ARB), portfolio=Portfolio(()), events={"KXWIN-26": event})
    alerts: list[Alert] = []
    for market, bid in zip(event.markets, (45, 40, 30), strict=True):
        tick = TickEvent(market.ticker, T0, c(bid), c(bid + 2), None)
        alerts += session.step(tick, T0).alerts
    assert [a.market_ticker for a in alerts] == ["KXWIN-26"]
    assert session.states[("arb", "KXWIN-26")].armed is False


@pytest.mark.parametrize(
    "watch", ["", "watch: {events: [KXWIN-26]}\n", "watch: {series: [KXWIN]}\n"]
)
def test_an_event_rule_is_never_said_to_apply_to_no_market(watch: str) -> None:
    """Event rules wait for watched events: with or without a `watch:` section neither
    `watcher check` nor the service warns about them (the shipped rules.yaml has them on, for
    --simulate); a market rule whose globs match nothing still is warned about."""
    from watcher.rules.coverage import unmatched_rules

    config = parse_rules(
        f"version: 1\n{watch}rules:\n"
        "  - {name: arb, type: event_arbitrage, min_edge_cents: 1}\n"
        "  - {name: steps, type: ladder, min_edge_cents: 1}\n"
        "  - {name: cpi, type: spread, max_cents: 2, markets: [KXCPI-*]}\n",
        env={},
    )
    warnings = unmatched_rules(config, Portfolio(path="trades.json", positions=()))
    (warning,) = warnings
    assert warning.endswith(": rule 'cpi' applies to no market (markets: KXCPI-*)")


# replay: the stored event expansion makes the event rules fire over the recorded ticks


def test_replay_finds_the_event_arbitrage_of_a_stored_event(tmp_path, capsys):
    """A store with an event written (no position in it) and ticks that make its all-NO basket
    cheap: `watcher replay` goes over the event's markets and prints the event_arbitrage alert
    (with the depth the stored sizes allow);
    `watcher status` lists the event after the (no) positions."""
    import asyncio
    import json

    from watcher.cli import main
    from watcher.kalshi.messages import Ticker, TickerMsg
    from watcher.store import open_backend

    event = me_event(3)
    db = tmp_path / "w.db"

    async def record() -> None:
        sink = open_backend(db).tick_sink()
        await sink.start()
        await sink.write_events([event])
        quotes = zip(event.markets, [45, 40, 30], [47, 42, 32], [30, 20, 50], strict=True)
        for i, (market, bid, ask, size) in enumerate(quotes):
            msg = TickerMsg(
                market_ticker=market.ticker,
                price_dollars=Decimal(bid) / 100,
                yes_bid_dollars=Decimal(bid) / 100,
                yes_ask_dollars=Decimal(ask) / 100,
                yes_bid_size_fp=Decimal(size),
                yes_ask_size_fp=Decimal(1),
                ts_ms=T0 + i * 1000,
            )
            await sink.put(Ticker(sid=1, msg=msg), T0 + i * 1000)
        await sink.close()

    asyncio.run(record())
    (tmp_path / "trades.json").write_text(json.dumps({"trades": []}))
    (tmp_path / "rules.yaml").write_text(f"version: 1\ntimezone: UTC\nrules:\n  - {ARB}\n")
    args = ["--trades", str(tmp_path / "trades.json"), "--rules", str(tmp_path / "rules.yaml")]
    assert main(["replay", *args, "--db", str(db)]) == 0
    out = capsys.readouterr()
    (line,) = out.out.splitlines()
    assert "[" in line and "arb:" in line and "KXWIN-26" in line and "edge 9¢" in line
    assert "(depth allows 20 each)" in line  # the stored sizes, as live
    assert "of 3 markets" in out.err and "1 alerts" in out.err
    assert main(["status", *args, "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "event KXWIN-26 (3 markets, mutually exclusive)" in lines
    assert lines.index("(no watched positions)") + 1 == lines.index(
        "event KXWIN-26 (3 markets, mutually exclusive)"
    )


def test_status_names_an_event_with_its_market_count():
    from watcher.ops.status import event_line

    assert event_line(me_event(4, ticker="KXELECT-26")) == (
        "event KXELECT-26 (4 markets, mutually exclusive)"
    )
    assert event_line(ladder_event((50,))) == "event KXHIGH-26 (1 market)"
