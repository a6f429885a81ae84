"""Mutes and pauses (issue 13): what holds an alert back, the Controls a face calls, and the
recording of a held-back alert as suppressed with its reason. Real SQLite files throughout;
only the clock is given."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from watcher.domain.alert import Alert
from watcher.domain.controls import ControlState, Mute, Pause, covers, pair_target
from watcher.ops.alerts import alert_json, alert_line
from watcher.ops.status import FeedHealth, StatusTable, control_lines, render_status
from watcher.rules import parse_rules
from watcher.service.controls import Controls, when_text
from watcher.service.recording import QUIET_HOURS, Recording
from watcher.store import open_backend

DAY0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
NOW = DAY0 + 12 * 3_600_000  # 12:00 UTC
HOUR_S, HOUR_MS = 3600, 3_600_000
CPI, FED = "KXCPI-26JAN-T0.3", "KXFED-26DEC-H0"
UTC = ZoneInfo("UTC")
RULES = """\
version: 1
timezone: UTC
rules:
  - {name: tight spread, type: spread, max_cents: 2}
  - {name: Big Trade, type: trade_size, min_contracts: 100}
"""


def alert(
    rule: str = "tight spread", ticker: str = CPI, severity: str = "warning", at: int = NOW
) -> Alert:
    return Alert(
        key=f"{rule}|{ticker}|{at}",
        rule=rule,
        market_ticker=ticker,
        severity=severity,  # type: ignore[arg-type]
        title=f"{ticker} · {rule}",
        body="spread 1¢",
        targets=("phone",),
        at_ms=at,
    )


def mute(target: str | None, until: int = NOW + HOUR_MS) -> Mute:
    return Mute(target, until, "telegram:987", NOW - 1)


PAUSE = Pause("web", NOW - 60_000)


# What holds an alert back: the truth table


@pytest.mark.parametrize(
    ("state", "held", "goes_out"),
    [
        # nothing in force: everything goes out
        (ControlState(), [], [alert(), alert(severity="critical")]),
        # a mute of everything holds every alert, critical ones and the service's own too
        (
            ControlState((mute(None),)),
            [alert(), alert(severity="critical"), alert("feed-stale", "", "warning")],
            [],
        ),
        # the pause holds everything but critical alerts
        (
            ControlState(paused=PAUSE),
            [alert(severity="info"), alert(), alert("digest", "", "info")],
            [alert(severity="critical"), alert("market-closed", FED, "critical")],
        ),
        # a market's mute: its alerts (critical too), not another market's
        (
            ControlState((mute(CPI),)),
            [alert(), alert("Big Trade", CPI, "critical")],
            [alert(ticker=FED), alert("feed-stale", "")],
        ),
        # a rule's mute, by name regardless of case: that rule on every market
        (
            ControlState((mute("big trade"),)),
            [alert("Big Trade", CPI), alert("Big Trade", FED, "critical")],
            [alert(), alert(ticker=FED)],
        ),
        # a rule on one market (the alert's "Mute 1h" button)
        (
            ControlState((mute(pair_target("tight spread", CPI)),)),
            [alert(), alert(severity="critical")],
            [alert(ticker=FED), alert("Big Trade", CPI)],
        ),
        # a mute and the pause: critical alerts obey the mute, ignore the pause
        (
            ControlState((mute(FED),), PAUSE),
            [alert(), alert(ticker=FED, severity="critical")],
            [alert(severity="critical")],
        ),
        # a mute ends by itself, compared with the alert's own time (until is exclusive)
        (
            ControlState((mute(None, until=NOW),)),
            [alert(at=NOW - 1)],
            [alert(at=NOW), alert(at=NOW + 1)],
        ),
    ],
    ids=["none", "everything", "pause", "market", "rule", "rule-on-market", "both", "expiry"],
)
def test_what_holds_an_alert_back(
    state: ControlState, held: list[Alert], goes_out: list[Alert]
) -> None:
    """Mutes hold back what they cover whatever the severity; the pause holds back all but
    critical alerts; a mute ends at its ``until_ms``."""
    for each in held:
        assert state.holding(each) is not None, each
    for each in goes_out:
        assert state.holding(each) is None, each


def test_a_target_matches_its_market_or_rule_regardless_of_case() -> None:
    assert covers("kxcpi-26jan-t0.3", alert())
    assert covers("TIGHT SPREAD", alert())
    assert covers("Tight Spread@kxcpi-26jan-t0.3", alert())
    assert not covers("tight", alert())
    assert not covers("tight spread@KXFED-26DEC-H0", alert())
    assert not covers("KXCPI", alert())


def test_the_longest_mute_is_the_reason_and_ended_mutes_are_left_out() -> None:
    short, long = mute(CPI, NOW + 60_000), mute(None, NOW + HOUR_MS)
    assert ControlState((short, long)).holding(alert()) == long
    state = ControlState((mute("x", NOW - 1), short), PAUSE)
    assert state.at(NOW) == ControlState((short,), PAUSE)
    assert state.at(NOW + 60_000) == ControlState((), PAUSE)


# Controls over a real SQLite file


class Scope:
    """The pipeline as Controls sees it: the rules in force and the watched markets."""

    def __init__(self) -> None:
        self.rules = parse_rules(RULES, env={})
        self.watched = frozenset({CPI, FED})


@pytest.fixture
async def controls(tmp_path: Path) -> AsyncIterator[Controls]:
    opened = await Controls.open(open_backend(tmp_path / "w.db"), scope=Scope(), max_age_s=0)
    async with opened:
        yield opened


async def test_mute_then_verdict_says_until_when_and_by_whom(controls: Controls) -> None:
    """A mute of everything, then of one market: each verdict names the mute in force."""
    everything = await controls.mute(HOUR_S, by="telegram:987", now_ms=NOW)
    assert everything == Mute(None, NOW + HOUR_MS, "telegram:987", NOW)
    assert controls.verdict(alert()) == "muted until 13:00 UTC by telegram:987"
    market = await controls.mute(2 * HOUR_S, f" {CPI.lower()} ", by="web", now_ms=NOW)
    assert market.target == CPI.lower()  # as given (stripped)
    assert controls.verdict(alert()) == f"muted {CPI.lower()} until 14:00 UTC by web"
    assert controls.verdict(alert(ticker=FED)) == "muted until 13:00 UTC by telegram:987"
    assert controls.verdict(alert(ticker=FED, at=NOW + HOUR_MS)) is None
    await controls.mute(24 * HOUR_S, "Big Trade", by="web", now_ms=NOW)
    reason = controls.verdict(alert("Big Trade", FED, at=NOW + 2 * HOUR_MS))
    assert reason == "muted Big Trade until 2026-01-02 12:00 UTC by web"


async def test_muting_a_target_again_replaces_its_mute_whatever_the_case(
    controls: Controls,
) -> None:
    await controls.mute(HOUR_S, CPI, by="a", now_ms=NOW)
    await controls.mute(60, CPI.lower(), by="b", now_ms=NOW + 1)
    assert (await controls.active(NOW + 2)).mutes == (
        Mute(CPI.lower(), NOW + 60_001, "b", NOW + 1),
    )


async def test_unmute_lifts_the_mutes_in_force_and_counts_them(controls: Controls) -> None:
    """unmute(target) lifts that target's mute (any case) and the rule-on-market mutes that
    name it; unmute() lifts all; ended mutes are not counted."""
    await controls.mute(60, "Big Trade", by="a", now_ms=NOW)
    await controls.mute(HOUR_S, pair_target("tight spread", CPI), by="a", now_ms=NOW)
    await controls.mute(HOUR_S, CPI, by="a", now_ms=NOW)
    await controls.mute(HOUR_S, FED, by="a", now_ms=NOW)
    await controls.mute(HOUR_S, by="a", now_ms=NOW)
    assert await controls.unmute(CPI.lower(), now_ms=NOW) == 2  # the market and the pair
    assert await controls.unmute(CPI, now_ms=NOW) == 0
    assert await controls.unmute(now_ms=NOW + 60_000) == 2  # everything and FED; Big Trade ended
    assert await controls.active(NOW) == ControlState()
    assert controls.verdict(alert()) is None


async def test_pause_holds_non_critical_alerts_until_resumed(controls: Controls) -> None:
    await controls.pause(by="telegram:987", now_ms=NOW)
    await controls.pause(by="web", now_ms=NOW + 5)  # already paused: the first pause stays
    assert (await controls.active(NOW)).paused == Pause("telegram:987", NOW)
    assert controls.verdict(alert()) == "paused by telegram:987 since 12:00 UTC"
    assert controls.verdict(alert(severity="critical")) is None
    assert await controls.resume(now_ms=NOW + 10) is True
    assert await controls.resume(now_ms=NOW + 11) is False
    assert controls.verdict(alert()) is None


@pytest.mark.parametrize("duration", [0, -5, float("nan"), float("inf"), 365 * 86_400 + 1])
async def test_a_mute_must_last_a_positive_time_of_at_most_a_year(
    controls: Controls, duration: float
) -> None:
    with pytest.raises(ValueError, match="mute"):
        await controls.mute(duration, by="a", now_ms=NOW)
    assert await controls.active(NOW) == ControlState()


async def test_a_mute_must_name_a_watched_market_or_a_rule(controls: Controls) -> None:
    """Rules in force (any case), the service's own alerts, watched markets and a rule on a
    watched market are accepted; anything else is refused, nothing stored."""
    for target in ("TIGHT SPREAD", "feed-stale", FED.lower(), f"Big Trade@{FED}", "  "):
        await controls.mute(60, target, by="a", now_ms=NOW)
    for target in ("tight", "KXNOPE-1", f"tight spread@{FED}x", "nope@KXCPI-26JAN-T0.3"):
        with pytest.raises(ValueError, match="neither a watched market nor a rule"):
            await controls.mute(60, target, by="a", now_ms=NOW)
    assert len((await controls.active(NOW)).mutes) == 5


async def test_a_restart_keeps_mutes_and_the_pause(tmp_path: Path) -> None:
    """New Controls over the same file (a restart) hold back what the old ones did."""
    backend = open_backend(tmp_path / "w.db")
    async with await Controls.open(backend, scope=Scope()) as first:
        await first.mute(HOUR_S, CPI, by="telegram:987", now_ms=NOW)
        await first.pause(by="web", now_ms=NOW)
    async with await Controls.open(backend) as second:
        state = await second.active(NOW)
        assert state == ControlState(
            (Mute(CPI, NOW + HOUR_MS, "telegram:987", NOW),), Pause("web", NOW)
        )
        assert second.verdict(alert()) == f"muted {CPI} until 13:00 UTC by telegram:987"
        assert second.verdict(alert(ticker=FED)) == "paused by web since 12:00 UTC"


async def test_refresh_sees_another_process_within_max_age(tmp_path: Path) -> None:
    """Another Controls on the file (``watcher web``, a second instance) mutes: refresh()
    re-reads once the copy is older than max_age_s; within it, the copy is used."""
    backend = open_backend(tmp_path / "w.db")
    async with (
        await Controls.open(backend, max_age_s=0) as eager,
        await Controls.open(backend, max_age_s=3600) as lazy,
        await Controls.open(backend) as other,
    ):
        await other.mute(HOUR_S, by="web", now_ms=NOW)
        await eager.refresh()
        await lazy.refresh()
        assert eager.verdict(alert()) is not None
        assert lazy.verdict(alert()) is None
        await lazy.reload()
        assert lazy.verdict(alert()) is not None


async def test_a_failed_re_read_keeps_the_last_known_state(tmp_path: Path, caplog) -> None:
    controls = await Controls.open(open_backend(tmp_path / "w.db"), max_age_s=0)
    await controls.mute(HOUR_S, by="a", now_ms=NOW)
    await controls.close()
    with caplog.at_level(logging.WARNING, "watcher.controls"):
        await controls.refresh()
    assert "cannot re-read mutes and pauses" in caplog.text
    assert controls.verdict(alert()) is not None


# Recording: a held-back alert is recorded as suppressed, with why


class Wakes:
    """The sender as Recording uses it: woken once alerts are recorded."""

    def __init__(self) -> None:
        self.count = 0

    def wake(self) -> None:
        self.count += 1


async def test_recording_marks_held_alerts_suppressed_with_their_reason(tmp_path: Path) -> None:
    """Muted and paused alerts are recorded as suppressed with the reason (and counted);
    a critical one under the pause goes out; quiet hours say so."""
    backend = open_backend(tmp_path / "w.db")
    recording = Recording()
    recording.alert_store = await backend.alert_store()
    recording.sender = Wakes()  # type: ignore[assignment]
    try:
        async with await Controls.open(backend, scope=Scope(), max_age_s=0) as controls:
            recording.controls = controls
            await controls.mute(HOUR_S, "Big Trade", by="telegram:987", now_ms=NOW)
            await controls.pause(by="web", now_ms=NOW)
            quiet = replace(alert(ticker=FED, at=NOW + 2), suppressed=True)
            alerts = [
                alert("Big Trade", CPI, "critical", NOW),
                alert(at=NOW + 1),
                quiet,
                alert(severity="critical", at=NOW + 3),
            ]
            assert await recording.record(alerts, {}, NOW) == 4
        found = {r.key: r for r in await recording.alert_store.recent(limit=10)}
    finally:
        await recording.alert_store.close()
    statuses = [(found[a.key].status, found[a.key].suppressed_reason) for a in alerts]
    assert statuses == [
        ("suppressed", "muted Big Trade until 13:00 UTC by telegram:987"),
        ("suppressed", "paused by web since 12:00 UTC"),
        ("suppressed", QUIET_HOURS),
        ("pending", None),
    ]
    assert recording.alerts_suppressed == 3 and recording.alerts_fired == 4
    line = alert_line(found[alerts[0].key], UTC)
    assert line.endswith("(muted Big Trade until 13:00 UTC by telegram:987)")
    assert "suppressed" in line
    assert alert_json(found[alerts[1].key])["suppressed_reason"] == "paused by web since 12:00 UTC"
    assert alert_json(found[alerts[3].key])["suppressed_reason"] is None


# watcher status


def test_status_lists_the_mutes_in_force_and_the_pause() -> None:
    state = ControlState(
        (mute(CPI, NOW + 3_840_000), mute(None, DAY0 + 36 * HOUR_MS), mute("gone", NOW)),
        Pause("telegram:987", NOW - HOUR_MS),
    )
    assert control_lines(state, now_ms=NOW, tz=ZoneInfo("America/New_York")) == [
        f"muted: {CPI} until 08:04 EST (telegram:987)",
        "muted: everything until 2026-01-02 07:00 EST (telegram:987)",
        "paused since 06:00 EST by telegram:987 (non-critical alerts held back)",
    ]
    lines = render_status(StatusTable(controls=state), FeedHealth(), now_ms=NOW, tz=UTC)
    assert lines[2:5] == [
        f"muted: {CPI} until 13:04 UTC (telegram:987)",
        "muted: everything until 2026-01-02 12:00 UTC (telegram:987)",
        "paused since 11:00 UTC by telegram:987 (non-critical alerts held back)",
    ]
    assert len(render_status(StatusTable(), FeedHealth(), now_ms=NOW, tz=UTC)) == 3


def test_when_text_names_the_day_only_when_it_is_another() -> None:
    assert when_text(NOW, UTC, NOW + HOUR_MS) == "12:00 UTC"
    assert when_text(NOW, UTC, NOW + 12 * HOUR_MS) == "2026-01-01 12:00 UTC"
    assert when_text(NOW, UTC) == "2026-01-01 12:00 UTC"
