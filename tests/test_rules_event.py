"""Event rules (issue 14): event_arbitrage and ladder, truth tables with fees per leg."""

from __future__ import annotations

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
from watcher.rules.event_checks import Basket, Leg, basket_text, leg_fee

NY = ZoneInfo("America/New_York")
T0 = int(datetime(2026, 1, 15, 12, tzinfo=NY).timestamp()) * 1000
CLOSE = T0 + 86_400_000
RATE = Decimal("0.07")


def c(cents: float | str) -> int:
    return cents_to_micros(str(cents))


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

    def quote(self, ticker: str, yes_bid: float | None, yes_ask: float | None, at: int = T0):
        bid = None if yes_bid is None else c(yes_bid)
        ask = None if yes_ask is None else c(yes_ask)
        self.markets.apply_ticker(ticker, at, bid, ask, None)

    def tick(self, ticker: str, yes_bid=None, yes_ask=None, *, at: int = T0) -> list[Alert]:
        self.quote(ticker, yes_bid, yes_ask, at)
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
    ("watch", "warned"),
    [("", True), ("watch: {events: [KXWIN-26]}\n", False), ("watch: {series: [KXWIN]}\n", False)],
)
def test_an_event_rule_without_watched_events_is_warned_about(watch: str, warned: bool) -> None:
    """An event rule applies to watched events: without a `watch:` section `watcher check` and
    the service say it applies to no market; with one, nothing is said."""
    from watcher.rules.coverage import unmatched_rules

    config = parse_rules(
        f"version: 1\n{watch}rules:\n  - {{name: arb, type: event_arbitrage, min_edge_cents: 1}}\n",
        env={},
    )
    warnings = unmatched_rules(config, Portfolio(path="trades.json", positions=()))
    assert bool(warnings) is warned
    assert not warned or "no event or series is watched" in warnings[0]


# replay: the stored event expansion makes the event rules fire over the recorded ticks


def test_replay_finds_the_event_arbitrage_of_a_stored_event(tmp_path, capsys):
    """A store with an event written (no position in it) and ticks that make its all-NO basket
    cheap: `watcher replay` goes over the event's markets and prints the event_arbitrage alert;
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
        quotes = zip(event.markets, [45, 40, 30], [47, 42, 32], strict=True)
        for i, (market, bid, ask) in enumerate(quotes):
            msg = TickerMsg(
                market_ticker=market.ticker,
                price_dollars=Decimal(bid) / 100,
                yes_bid_dollars=Decimal(bid) / 100,
                yes_ask_dollars=Decimal(ask) / 100,
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
