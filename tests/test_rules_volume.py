"""``volume_spike``: a truth table over a synthetic tick sequence, the loader's errors, the
baseline seeded from a real SQLite store after a restart, and a replay that finds a spike.

The sequence: a tick every 15s, each adding 25 contracts (buckets are 75s, a quarter of the 5m
window, so each full bucket holds 125), from T0 for an hour; then one tick 15s later adds A.
At that tick the last window holds 125 × 3 + 25 + A and the baseline 45 buckets holding 5,600
(the first bucket 100, then 44 × 125): the average per window is 5,600 × 4 / 45 ≈ 497.8, so a
factor of 3 fires from 400 + A ≥ 1,493.3, i.e. A ≥ 1,094.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from watcher.domain.alert import Alert
from watcher.domain.positions import Portfolio, Position
from watcher.kalshi.messages import Ticker, TickerMsg
from watcher.ops.replay import replay
from watcher.rules import RulesConfig, RulesError, TickEvent, parse_rules
from watcher.rules.kinds import VolumeSpikeRule
from watcher.rules.session import Session
from watcher.rules.volume import silent_note
from watcher.service.volume_seed import seed_volume_history
from watcher.store import open_backend

MARKET = "KXCPI-26JAN-T0.3"
T0 = 75_000 * 22_700_000  # a bucket boundary
HOUR = 3_600_000
M = 1_000_000  # micro-units per contract
RULE = (
    "{name: spike, type: volume_spike, factor: 3, within: 5m, baseline: 1h, cooldown: 0s,"
    f" markets: [{MARKET}]"
)


def rules(extra: str = "", rule: str = RULE) -> RulesConfig:
    return parse_rules(f"rules:\n  - {rule}{extra}}}\n", env={})


def steady(minutes: int = 60, *, start: int = 0) -> list[tuple[int, int]]:
    """(ts_ms, cumulative contracts): a tick every 15s adding 25, from T0."""
    return [(T0 + i * 15_000, start + 25 * i) for i in range(minutes * 4 + 1)]


def feed(session: Session, ticks: list[tuple[int, int]], *, field: str = "volume") -> list[Alert]:
    alerts: list[Alert] = []
    for ts, value in ticks:
        amounts = {
            "volume": (value * M, None),
            "open_interest": (None, value * M),
            "both": (value * M, value * M),
        }[field]
        alerts += session.step(TickEvent(MARKET, ts, None, None, None, *amounts), ts).alerts
    return alerts


def spike_after_an_hour(added: int, config: RulesConfig | None = None) -> list[Alert]:
    session = Session(rules=config or rules(), portfolio=Portfolio(()))
    history = steady()
    assert feed(session, history) == []  # steady trading never fires
    return feed(session, [(T0 + HOUR + 15_000, history[-1][1] + added)])


# Truth table


@pytest.mark.parametrize(
    ("added", "fires"), [(0, False), (500, False), (1093, False), (1094, True)]
)
def test_a_spike_fires_at_factor_times_its_own_average_and_not_under(added, fires):
    assert bool(spike_after_an_hour(added)) is fires


def test_the_alert_says_the_amount_the_multiple_and_the_average_exactly():
    (alert,) = spike_after_an_hour(1094)
    assert alert.body == "volume +1,494 in 5m, 3.0× its 1h average of 498 per 5m"
    assert alert.market_ticker == MARKET
    (big,) = spike_after_an_hour(12_000)
    assert big.body == "volume +12,400 in 5m, 24.9× its 1h average of 498 per 5m"


def test_a_fractional_factor_compares_exactly():
    # 2.5 × 5,600 × 4 / 45 = 1,244.4: 400 + A ≥ 1,244.45 from A = 845
    half = rules(rule=RULE.replace("factor: 3", "factor: 2.5"))
    assert spike_after_an_hour(844, half) == []
    assert len(spike_after_an_hour(845, half)) == 1


def test_silent_until_three_windows_of_history_before_the_last():
    session = Session(rules=rules(), portfolio=Portfolio(()))
    # 19m of history: 15 buckets, of which 11 are baseline: silent however large the spike
    assert feed(session, steady(19)) == []
    assert feed(session, [(T0 + 19 * 60_000 + 5_000, 19 * 100 + 100_000)]) == []
    session = Session(rules=rules(), portfolio=Portfolio(()))
    assert feed(session, steady(20)) == []  # 20m: 13 baseline buckets, enough
    assert len(feed(session, [(T0 + 20 * 60_000 + 5_000, 20 * 100 + 100_000)])) == 1


def test_silent_while_the_baseline_is_zero():
    session = Session(rules=rules(), portfolio=Portfolio(()))
    flat = [(ts, 7) for ts, _ in steady()]
    assert feed(session, [*flat, (T0 + HOUR + 15_000, 5_007)]) == []


def test_open_interest_counts_only_what_is_added():
    config = rules(rule=RULE.replace("baseline: 1h,", "baseline: 1h, field: open_interest,"))
    session = Session(rules=config, portfolio=Portfolio(()))
    history = steady()
    assert feed(session, history, field="both") == []
    ts = T0 + HOUR
    assert feed(session, [(ts + 1_000, history[-1][1] + 9_000)]) == []  # volume: not its field
    fallen = history[-1][1] - 5_000  # positions closed: nothing added
    assert feed(session, [(ts + 5_000, fallen)], field="open_interest") == []
    (alert,) = feed(session, [(ts + 10_000, fallen + 2_000)], field="open_interest")
    assert alert.body.startswith("open interest +2,")


def test_it_rearms_at_the_average_and_cooldown_delays_a_second_alert():
    config = rules(rule=RULE.replace("cooldown: 0s", "cooldown: 30m"))
    session = Session(rules=config, portfolio=Portfolio(()))
    history = steady()
    feed(session, history)
    value, ts = history[-1][1] + 5_000, T0 + HOUR + 15_000
    assert len(feed(session, [(ts, value)])) == 1
    assert feed(session, [(ts + 5_000, value + 5_000)]) == []  # still spiking: disarmed
    # 10 quiet minutes: the window empties, the rule re-arms; a spike within 30m is held back
    quiet = [(ts + 15_000 * i, value + 5_000) for i in range(2, 42)]
    assert feed(session, quiet) == []
    assert feed(session, [(ts + 11 * 60_000, value + 20_000)]) == []
    later = ts + 31 * 60_000
    assert feed(session, [(later - 60_000, value + 20_000)]) == []
    assert len(feed(session, [(later, value + 40_000)])) == 1


def test_other_markets_keep_no_volume_history():
    session = Session(rules=rules(), portfolio=Portfolio(()))
    session.step(TickEvent("OTHER-MKT", T0, None, None, None, 5 * M, M), T0)
    session.step(TickEvent(MARKET, T0, None, None, None, 5 * M, M), T0)
    other, covered = session.markets["OTHER-MKT"], session.markets[MARKET]
    assert other.volumes is None
    assert covered.volumes is not None and list(covered.volumes) == [("volume", 300_000, HOUR)]


# Loader


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("factor: 1, within: 5m, baseline: 1h", "2:43: factor: expected a factor more than 1"),
        ("factor: x, within: 5m, baseline: 1h", "factor: expected a factor more than 1"),
        ("factor: 3, within: 2s, baseline: 1h", "within: expected a window of at least 4s"),
        ("factor: 3, within: 5m, baseline: 10m", "baseline must be at least 3 × within"),
        ("factor: 3, within: 1m, baseline: 30d", "baseline may hold at most 2016 windows"),
        ("factor: 3, within: 5m, baseline: 1h, field: trades", "field: "),
        ("factor: 3, within: 5m", "missing key 'baseline'"),
    ],
)
def test_bad_fields_are_located(rule, message):
    text = f"rules:\n  - {{name: s, type: volume_spike, {rule}}}\n"
    with pytest.raises(RulesError) as caught:
        parse_rules(text, env={})
    errors = [str(error) for error in caught.value.errors]
    assert any(message in error and ":2:" in error for error in errors), errors


def test_check_notes_that_the_rule_is_silent_until_there_is_history():
    (rule,) = rules().rules
    assert isinstance(rule, VolumeSpikeRule)
    note = silent_note(rule)
    assert note.startswith("note: rule 'spike' (volume_spike) is silent for a market until")
    assert "3 windows" in note and "about 21m 15s" in note and "1h baseline" in note


# The store: seeding after a restart, and replay


def frame(ts_ms: int, contracts: int) -> Ticker:
    msg = TickerMsg(
        market_ticker=MARKET,
        price_dollars=Decimal("0.45"),
        yes_bid_dollars=Decimal("0.44"),
        yes_ask_dollars=Decimal("0.46"),
        volume_fp=Decimal(contracts),
        open_interest_fp=Decimal(1000),
        ts_ms=ts_ms,
    )
    return Ticker(sid=1, msg=msg)


async def record(db: Path, ticks: list[tuple[int, int]]) -> None:
    sink = open_backend(db).tick_sink()
    await sink.start()
    for ts, contracts in ticks:
        await sink.put(frame(ts, contracts), ts)
    await sink.close()


async def test_a_restart_seeds_the_baseline_from_the_stored_ticks(tmp_path: Path):
    db = tmp_path / "watcher.db"
    history = steady()
    await record(db, history)
    spike = (T0 + HOUR + 15_000, history[-1][1] + 1094)
    fresh = Session(rules=rules(), portfolio=Portfolio(()))
    assert feed(fresh, [spike]) == []  # no history: silent
    session = Session(rules=rules(), portfolio=Portfolio(()))
    reader = await open_backend(db).read_model()
    try:
        fed = await seed_volume_history(reader, session, [MARKET, "OTHER"], T0 + HOUR + 1)
    finally:
        await reader.close()
    assert fed == len(history)
    assert session.markets[MARKET].last_tick_ms is None  # prices and times left alone
    (alert,) = feed(session, [spike])
    assert alert.body == "volume +1,494 in 5m, 3.0× its 1h average of 498 per 5m"


async def test_replay_of_a_recording_finds_the_spike(tmp_path: Path):
    db = tmp_path / "watcher.db"
    history = steady()
    await record(db, [*history, (T0 + HOUR + 15_000, history[-1][1] + 1094)])
    position = Position(
        index=1, line=1, ticker=MARKET, side="YES", entry_micros=400_000, contracts=Decimal(1)
    )
    reader = await open_backend(db).read_model()
    try:
        alerts = [a async for a in replay(reader, rules(), Portfolio((position,)))]
    finally:
        await reader.close()
    assert [a.body for a in alerts] == ["volume +1,494 in 5m, 3.0× its 1h average of 498 per 5m"]
    assert alerts[0].at_ms == T0 + HOUR + 15_000
