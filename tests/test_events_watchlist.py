"""The watchlist (issue 14) against the simulator's REST and a real SQLite store: each event
carries its series' fee_multiplier, markets a later expansion adds are seeded for
volume_spike from the stored ticks, and the demo events stand in for a missing `watch:` only
when simulating."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

from watcher.domain.positions import Portfolio
from watcher.kalshi.messages import Ticker, TickerMsg
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.events import DEFAULT_EVENTS, SimEventMarket
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.rules import parse_rules
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
