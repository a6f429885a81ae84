"""Watching whole events and series (issue 14): rules.yaml ``watch``, REST expansion against the
simulator (nested or beside markets, pagination), and live subscription changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.kalshi import messages as m
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.rest_bodies import RestEventResponse, decode_rest
from watcher.kalshi.sim.events import SimEvent, SimEventMarket
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.rules import load_rules
from watcher.rules.loader import RulesError

from .conftest import MS
from .support import RULES, TRADES, atomic_write, poll, service_on

WAIT = 10_000 * MS
ELECT = "KXELECT-26"
LADDER = "KXHIGHTEMP-26DEC05"
WATCHING = RULES.replace("rules:\n", f"watch:\n  events: [{ELECT.lower()}]\nrules:\n")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


# rules.yaml


def test_watch_section_upper_cases_and_defaults_empty(tmp_path: Path) -> None:
    text = "version: 1\nwatch:\n  events: [kxelect-26, KXELECT-26]\n  series: [kxhightemp]\n"
    rules = load_rules(write(tmp_path, text), env={})
    assert rules.watch.events == ("KXELECT-26",)
    assert rules.watch.series == ("KXHIGHTEMP",)
    assert not load_rules(write(tmp_path, "version: 1\n"), env={}).watch


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 1\nwatch:\n  event: [A]\n", ":3:3: unknown key 'event'"),
        ("version: 1\nwatch:\n  series: KXA\n", ":3:11: series: must be a list of tickers"),
        ("version: 1\nwatch:\n  events: [KX*]\n", ":3:11: events: must be a list of tickers"),
    ],
)
def test_watch_section_errors_are_located(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as caught:
        load_rules(path, env={})
    assert f"{path}{where}" in str(caught.value)


# REST bodies and the simulator's REST


def test_event_markets_decode_nested_or_beside() -> None:
    market = {"ticker": "E-A", "strike_type": "greater", "floor_strike": 40.5, "cap_strike": 50}
    nested = {"event": {"event_ticker": "E", "mutually_exclusive": True, "markets": [market]}}
    beside = {"event": {"event_ticker": "E"}, "markets": [market]}
    for body in (nested, beside):
        event = decode_rest(msgspec.json.encode(body), RestEventResponse).full_event()
        assert [mk.ticker for mk in event.markets] == ["E-A"]
        assert event.markets[0].floor_strike == Decimal("40.5")
        assert event.markets[0].cap_strike == Decimal(50)
        assert event.markets[0].strike_type == "greater"


async def test_simulator_serves_events_nested_and_beside() -> None:
    async with SimulatedExchange(seed=1) as sim, KalshiRestClient(sim.api_url) as rest:
        nested = await rest.get_event(ELECT)
        beside = await rest.get_event(ELECT, with_nested_markets=False)
        ladder = await rest.get_event(LADDER)
    assert nested.mutually_exclusive and len(nested.markets) == 4
    assert [mk.ticker for mk in beside.markets] == [mk.ticker for mk in nested.markets]
    assert [mk.floor_strike for mk in ladder.markets] == [40, 45, 50, 55]
    assert {mk.strike_type for mk in ladder.markets} == {"greater"}
    assert len({mk.close_time for mk in ladder.markets}) == 1
    assert not ladder.mutually_exclusive


def _series_events(count: int) -> list[SimEvent]:
    return [
        SimEvent(
            f"KXRAIN-26DEC{day:02d}", f"Rain {day}", False, [SimEventMarket("Y", "0.4", "0.5")]
        )
        for day in range(1, count + 1)
    ]


async def test_get_events_follows_the_cursor_through_every_page() -> None:
    async with (
        SimulatedExchange(seed=2, events=_series_events(5), events_page_size=2) as sim,
        KalshiRestClient(sim.api_url) as rest,
    ):
        events = await rest.get_events(series_ticker="KXRAIN")
        sim.market("KXRAIN-26DEC03-Y").status = "closed"
        still_open = await rest.get_events(series_ticker="KXRAIN")
        async with httpx.AsyncClient() as http:
            page = (await http.get(f"{sim.api_url}/events?series_ticker=KXRAIN")).json()
    assert [e.event_ticker for e in events] == [f"KXRAIN-26DEC{d:02d}" for d in range(1, 6)]
    assert all(len(e.markets) == 1 for e in events)
    assert len(still_open) == 4
    assert len(page["events"]) == 2 and page["cursor"] == "2"  # so the cursor was followed


# The service: expansion at start, live changes by update_subscription


@pytest.fixture
async def watching(tmp_path: Path) -> AsyncIterator[tuple[object, SimulatedExchange]]:
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    rules = WATCHING.replace(f"[{ELECT.lower()}]", f"[{ELECT.lower()}]\n  series: [kxrain]")
    (tmp_path / "rules.yaml").write_text(rules)
    key = ed25519.Ed25519PrivateKey.generate()
    events = [*SimulatedExchange(seed=0).events.events.values(), *_series_events(3)]
    async with SimulatedExchange(
        public_keys={"k": key.public_key()},
        tick_interval=0.02,
        seed=3,
        events=events,
        events_page_size=2,
    ) as sim:
        svc = service_on(
            tmp_path,
            sim,
            key,
            environ={"HOOK_URL": "json://127.0.0.1:9/"},
            client_options={"min_reconnect_delay": 0.02},
        )
        svc.config.debounce_ms = 50
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        await sim.wait_subscribed("ticker", f"{ELECT}-ALICE", timeout=WAIT)
        yield svc, sim
        stop.set()
        await asyncio.wait_for(task, WAIT)


def _updates(sim: SimulatedExchange, action: str) -> list[str]:
    return [
        ticker
        for c in sim.stats.commands[0]
        if isinstance(c, m.UpdateSubscription) and c.params.action == action
        for ticker in c.params.market_tickers or ()
    ]


async def test_service_expands_events_and_series_and_follows_them_live(watching, tmp_path) -> None:
    """At start the event's and the series' markets are watched (no position) with their
    events in the session; a new market is added and a closed one removed by
    update_subscription on the same connection; a rules.yaml edit of ``watch`` re-expands."""
    svc, sim = watching
    session = svc.pipeline.session
    assert set(session.events) == {ELECT, "KXRAIN-26DEC01", "KXRAIN-26DEC02", "KXRAIN-26DEC03"}
    assert session.events[ELECT].mutually_exclusive
    assert f"{ELECT}-DAN" in svc.pipeline.watched and "KXRAIN-26DEC03-Y" in svc.pipeline.watched
    assert f"{ELECT}-BOB" in svc.pipeline.markets
    await poll(lambda: svc.pipeline.markets[f"{ELECT}-BOB"].yes_bid is not None)
    await svc.store.flush()  # the expansion is stored for `watcher replay` and `watcher status`
    reader = await svc.backend.read_model()
    try:
        assert {e.event_ticker: e for e in await reader.events()} == session.events
    finally:
        await reader.close()

    sim.events.events[ELECT].markets.append(SimEventMarket("ERIN", "0.1000", "0.1200"))
    sim.market("KXRAIN-26DEC02-Y").status = "closed"
    await svc.jobs.refresh_metadata()
    await sim.wait_subscribed("ticker", f"{ELECT}-ERIN", timeout=WAIT)
    await poll(lambda: "KXRAIN-26DEC02-Y" in _updates(sim, "delete_markets"))
    assert f"{ELECT}-ERIN" in _updates(sim, "add_markets")
    assert "KXRAIN-26DEC02-Y" not in svc.pipeline.watched
    assert "KXCPI-26JAN-T0.3" in svc.pipeline.watched  # positions untouched

    atomic_write(tmp_path / "rules.yaml", WATCHING)  # the series is no longer watched
    await poll(lambda: "KXRAIN-26DEC01" not in svc.pipeline.session.events)
    await poll(lambda: "KXRAIN-26DEC01-Y" in _updates(sim, "delete_markets"))
    assert sim.stats.connections_accepted == 1
    assert svc.client.stats.command_errors == 0


async def test_a_watched_event_kalshi_cannot_read_keeps_its_last_markets_and_says_so(
    watching, caplog
) -> None:
    """An event that stops answering (here: HTTP 500) is logged by name, and the markets its last
    expansion found stay watched and subscribed: nothing is dropped on a REST failure."""
    svc, sim = watching
    before = {t for t in svc.pipeline.watched if t.startswith(ELECT)}
    assert before
    caplog.set_level("WARNING", logger="watcher")
    sim.events.failures[ELECT] = 500
    await svc.jobs.refresh_metadata()
    assert f"cannot read watched event {ELECT}" in caplog.text
    assert {t for t in svc.pipeline.watched if t.startswith(ELECT)} == before
    assert ELECT in svc.pipeline.session.events
    assert not any(t.startswith(ELECT) for t in _updates(sim, "delete_markets"))
