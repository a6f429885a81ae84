"""The watchlist (issue 14) against the simulator's REST and a real SQLite store: each event
carries its series' fee_multiplier unless an event fee override is in force (GET
/events/fee_changes, or Kalshi's event_fee_update frame live), markets a later expansion adds
are seeded for volume_spike from the stored ticks, and the demo events stand in for a missing
`watch:` only when simulating."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tests.conftest import FIXTURES, MS
from watcher.domain.alert import Alert
from watcher.domain.event import EventInfo
from watcher.domain.positions import Portfolio
from watcher.kalshi.client import KalshiWebSocketClient
from watcher.kalshi.fixed import CENT
from watcher.kalshi.messages import Ticker, TickerMsg
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.events import DEFAULT_EVENTS, SimEvent, SimEventMarket
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.rules import TickEvent, parse_rules
from watcher.rules.event_checks import arbitrage_baskets
from watcher.service.pipeline import Pipeline
from watcher.service.watchlist import Watchlist
from watcher.store import open_backend

ELECT, LADDER = DEFAULT_EVENTS
MINUTE = 60_000
SPIKE = "{name: spike, type: volume_spike, factor: 3, within: 5m, baseline: 1h}"


def pipeline(db: Path, text: str) -> Pipeline:
    """The service's pipeline (not started: the watchlist only moves its markets)."""
    backend = open_backend(db)
    return Pipeline(
        open_alert_store=backend.alert_store,
        store=backend.tick_sink(),
        portfolio=Portfolio(()),
        rules=parse_rules(text, env={}),
    )


@asynccontextmanager
async def exchange(**options) -> AsyncIterator[tuple[SimulatedExchange, KalshiRestClient]]:
    async with SimulatedExchange(seed=21, **options) as sim, KalshiRestClient(sim.api_url) as rest:
        yield sim, rest


async def test_each_event_carries_its_series_fee_multiplier(tmp_path, caplog):
    """GET /series/{t} once per series: KXELECT's 0.5 is on its event; a series Kalshi cannot
    be asked about (HTTP 500) gives 1, said once, and is asked again at the next expansion."""
    caplog.set_level(logging.INFO, logger="watcher")
    host = pipeline(tmp_path / "w.db", f"version: 1\nwatch:\n  events: [{ELECT}, {LADDER}]\n")
    async with exchange(fee_multipliers={"KXELECT": "0.5"}) as (sim, rest):
        sim.series.failures["KXHIGHTEMP"] = 500
        watchlist = Watchlist(rest, host, None)
        await watchlist.start()
        events = host.session.events
        assert events[ELECT].fee_multiplier == Decimal("0.5")
        assert events[LADDER].fee_multiplier == 1
        del sim.series.failures["KXHIGHTEMP"]
        sim.series.configure("KXHIGHTEMP", fee_multiplier="1.5")
        await watchlist.refresh()
    assert host.session.events[LADDER].fee_multiplier == Decimal("1.5")
    said = [r.getMessage() for r in caplog.records if "fee multiplier 1" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(
        "event rule fees of series KXHIGHTEMP use fee multiplier 1: GET /series failed"
    )


def tick(ticker: str, ts_ms: int, volume: int) -> Ticker:
    msg = TickerMsg(
        market_ticker=ticker,
        price_dollars=Decimal("0.30"),
        yes_bid_dollars=Decimal("0.29"),
        yes_ask_dollars=Decimal("0.31"),
        volume_fp=Decimal(volume),
        ts_ms=ts_ms,
    )
    return Ticker(sid=1, msg=msg)


async def record(db: Path, tickers: list[str], now_ms: int) -> None:
    """40 minutes of stored ticks for each market, one every 15 s, 100 contracts each."""
    sink = open_backend(db).tick_sink()
    await sink.start()
    for i, ts in enumerate(range(now_ms - 40 * MINUTE, now_ms - MINUTE, 15_000)):
        for ticker in tickers:
            await sink.put(tick(ticker, ts, 1000 + 100 * i), ts)
    await sink.close()


async def test_a_market_added_later_is_seeded_from_the_stored_ticks(tmp_path):
    """ERIN joins the watched event after start: before it is watched its volume_spike series
    is fed the stored ticks (prices untouched), like the markets the service seeds at start;
    the markets of the first expansion are left to that start-up seeding (not fed twice)."""
    db = tmp_path / "w.db"
    erin = f"{ELECT}-ERIN"
    now = int(time.time() * 1000)
    await record(db, [f"{ELECT}-ALICE", erin], now)
    host = pipeline(db, f"version: 1\nwatch:\n  events: [{ELECT}]\nrules:\n  - {SPIKE}\n")
    async with exchange() as (sim, rest):
        watchlist = Watchlist(rest, host, None, backend=open_backend(db))
        await watchlist.start()
        assert host.markets[f"{ELECT}-ALICE"].volumes is not None
        assert all(s.window() is None for s in host.markets[f"{ELECT}-ALICE"].volumes.values())
        sim.events.events[ELECT].markets.append(SimEventMarket("ERIN", "0.1000", "0.1200"))
        await watchlist.refresh()
    assert erin in host.watched
    state = host.markets[erin]
    assert state.last_tick_ms is None and state.yes_bid is None  # only the volume series
    [series] = state.volumes.values()
    window = series.window()
    # 39 minutes of 75-second buckets: ~27 baseline buckets before the last window (not 0).
    assert window is not None and window.buckets >= 25 and window.baseline > 0


def test_the_demo_events_stand_in_only_when_simulating_with_an_event_rule(tmp_path):
    """No `watch:` section: the simulator's demo events if simulating and an event rule wants
    them; nothing on Kalshi, nothing for rules without event rules; a `watch:` always wins."""
    arb = "rules:\n  - {name: arb, type: event_arbitrage, min_edge_cents: 1}\n"
    spread = "rules:\n  - {name: tight, type: spread, max_cents: 2}\n"
    host = pipeline(tmp_path / "w.db", "version: 1\n")
    rest = KalshiRestClient("http://127.0.0.1:9/trade-api/v2")
    simulated, on_kalshi = Watchlist(rest, host, None, simulated=True), Watchlist(rest, host, None)
    with_arb, with_spread = parse_rules(arb, env={}), parse_rules(spread, env={})
    chosen = parse_rules(f"watch:\n  events: [KXOTHER-26]\n{arb}", env={})
    assert simulated.watch_for(with_arb).events == (ELECT, LADDER)
    assert not simulated.watch_for(with_spread)
    assert not on_kalshi.watch_for(with_arb)
    assert (
        simulated.watch_for(chosen).events == on_kalshi.watch_for(chosen).events == ("KXOTHER-26",)
    )


# event fee overrides: GET /events/fee_changes at each expansion, event_fee_update live

ARB = "{name: arb, type: event_arbitrage, min_edge_cents: 1}"
RATE = Decimal("0.07")


def quote_event(host: Pipeline, bids: list[int], now: int) -> list[Alert]:
    """Quote the election's four markets (YES bid in cents, ask 2¢ above); the alerts."""
    alerts: list[Alert] = []
    for name, bid in zip(("ALICE", "BOB", "CAROL", "DAN"), bids, strict=True):
        tick = TickEvent(f"{ELECT}-{name}", now, bid * 10_000, (bid + 2) * 10_000)
        alerts += host.session.step(tick, now).alerts
    return alerts


async def test_an_override_in_force_is_the_events_multiplier_and_moves_its_edge(tmp_path):
    """KXELECT-26 has an override of 0.5 in force (its series says 1): its all-NO basket at YES
    bids 40 + 30 + 20 + 16 = $1.06 is 6¢ under $3 before fees, 2¢ after four 1¢ fees (× 0.5):
    an alert; once Kalshi clears the override, the next expansion is back to the series' 1
    and the same quotes are 1¢ short after 2 + 2 + 2 + 1¢. The ladder's override was cleared
    (its series' 1.5) and another is only scheduled (not yet)."""
    now = datetime.now(UTC)
    rules = f"version: 1\nwatch:\n  events: [{ELECT}, {LADDER}]\nrules:\n  - {ARB}\n"
    host = pipeline(tmp_path / "w.db", rules)
    async with exchange(fee_multipliers={"KXHIGHTEMP": "1.5"}) as (sim, rest):
        sim.fee_changes.add(ELECT, "0.5", at=now - timedelta(hours=1))
        sim.fee_changes.add(LADDER, "2", at=now - timedelta(days=2))
        sim.fee_changes.clear(LADDER, at=now - timedelta(days=1))
        sim.fee_changes.add(LADDER, "3", at=now + timedelta(days=1))
        watchlist = Watchlist(rest, host, None)
        await watchlist.start()
        events = host.session.events
        assert (events[ELECT].fee_multiplier, events[LADDER].fee_multiplier) == (
            Decimal("0.5"),
            Decimal("1.5"),
        )
        [alert] = quote_event(host, [40, 30, 20, 16], host.now_ms())
        assert "edge 2¢" in alert.body and "fees × 0.5 (the event's fee_multiplier)" in alert.body
        sim.fee_changes.clear(ELECT)
        await watchlist.refresh()
    info = host.session.events[ELECT]
    assert info.fee_multiplier == 1
    [basket] = arbitrage_baskets(info, host.markets, RATE)
    assert basket.edge == -CENT


async def test_a_failing_fee_changes_lookup_warns_once_per_event_and_never_holds_the_watch(
    tmp_path, caplog
):
    """GET /events/fee_changes fails (HTTP 500): the ladder, never known, pays its series'
    multiplier; the election keeps the override last known; one WARNING per event over two
    expansions; every market stays watched."""
    caplog.set_level(logging.INFO, logger="watcher")
    host = pipeline(tmp_path / "w.db", f"version: 1\nwatch:\n  events: [{ELECT}, {LADDER}]\n")
    async with exchange(fee_multipliers={"KXHIGHTEMP": "1.5"}) as (sim, rest):
        sim.fee_changes.add(ELECT, "0.5", at=datetime.now(UTC) - timedelta(hours=1))
        sim.fee_changes.failures[LADDER] = 500
        watchlist = Watchlist(rest, host, None)
        await watchlist.start()
        sim.fee_changes.failures[ELECT] = 500
        await watchlist.refresh()
        await watchlist.refresh()
    events = host.session.events
    assert (events[ELECT].fee_multiplier, events[LADDER].fee_multiplier) == (
        Decimal("0.5"),
        Decimal("1.5"),
    )
    assert len(host.watched) == 8
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(": GET")[0] for w in warned] == [
        f"event rule fees of event {LADDER} use its series' fee multiplier",
        f"event rule fees of event {ELECT} use the fee changes last known",
    ]
    assert all("GET /events/fee_changes failed: kalshi REST error: HTTP 500" in w for w in warned)


async def wait_for(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(5000 * MS):
        while not predicate():  # noqa: ASYNC110 - the receive loop runs in the client's task
            await asyncio.sleep(0.01)


async def test_kalshis_event_fee_update_frame_changes_the_watched_events_multiplier(tmp_path):
    """Kalshi's published event_fee_update example (KXBTCD-26MAY2018 to 1), sent over the
    simulator's WebSocket on market_lifecycle_v2: the watched event's multiplier goes from its
    series' 0.5 to 1 at once and the event is stored again (for replay); a cleared override
    puts it back to 0.5."""
    btc = "KXBTCD-26MAY2018"
    markets = [SimEventMarket("A", "0.4000", "0.4200"), SimEventMarket("B", "0.5000", "0.5200")]
    event = SimEvent(btc, "Bitcoin", True, markets)
    host = pipeline(tmp_path / "w.db", f"version: 1\nwatch:\n  events: [{btc}]\n")
    stored: list[EventInfo] = []

    async def store(infos: list[EventInfo]) -> None:
        stored.extend(infos)

    async with exchange(fee_multipliers={"KXBTCD": "0.5"}, events=[event]) as (sim, rest):
        client = KalshiWebSocketClient(url=sim.ws_url)
        watchlist = Watchlist(rest, host, client, store)
        await watchlist.start()
        assert host.session.events[btc].fee_multiplier == Decimal("0.5")
        running = asyncio.create_task(client.run())
        try:
            await sim.wait_subscribed("market_lifecycle_v2", f"{btc}-A")
            frame = (FIXTURES / "kalshi" / "2026-08" / "event_fee_update.json").read_bytes()
            for session in sim._sessions:
                session.send_raw(frame)
            await wait_for(lambda: host.session.events[btc].fee_multiplier == 1)
            await wait_for(lambda: stored[-1].fee_multiplier == 1)
            assert type(host.session.events[btc].fee_multiplier) is Decimal
            cleared = json.loads(frame)
            cleared["msg"].update(fee_type_override=None, fee_multiplier_override=None)
            for session in sim._sessions:
                session.send_raw(json.dumps(cleared))
            await wait_for(lambda: host.session.events[btc].fee_multiplier == Decimal("0.5"))
        finally:
            await client.disconnect()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    assert watchlist.events[btc] == host.session.events[btc]
