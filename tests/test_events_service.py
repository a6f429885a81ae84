"""Event rules in a running service (issue 14): the shipped rules.yaml under the simulator
alerts on its demo events, stays quiet on Kalshi, and keyless mode polls the watched events'
markets. A real loopback simulator, a real SQLite file, the real service."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.app import Endpoint, Mode, Service
from watcher.domain.trades_file import load_positions
from watcher.kalshi.auth import KalshiSigner
from watcher.kalshi.sim.events import DEFAULT_EVENTS
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.rules import load_rules
from watcher.settings import settings_from_env

from .support import atomic_write, rows
from .support import poll as until

ROOT = Path(__file__).resolve().parents[1]
ELECT, LADDER = DEFAULT_EVENTS
EVENT_RULES = ("event basket", "broken ladder")
WAIT = 10.0


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """A user's folder holding the shipped trades.json.example and rules/rules.yaml."""
    shutil.copy(ROOT / "trades.json.example", tmp_path / "trades.json")
    shutil.copy(ROOT / "rules" / "rules.yaml", tmp_path / "rules.yaml")
    return tmp_path


def service(workdir: Path, sim: SimulatedExchange, key, mode: Mode, **options: str) -> Service:
    """The in-process service on ``workdir``'s files, fed by ``sim`` as ``mode`` says (signed
    with ``key`` unless keyless). No environment: the shipped `phone` target has no URL."""
    settings = settings_from_env(
        trades=str(workdir / "trades.json"),
        rules=str(workdir / "rules.yaml"),
        db=str(workdir / "w.db"),
        environ={},
        **options,
    )
    signer = None if mode == "keyless" else KalshiSigner("k", key)
    return Service(
        settings,
        portfolio=load_positions(settings.trades_path),
        rules=load_rules(settings.rules_path, env=settings.env),
        endpoint=Endpoint(sim.ws_url, sim.api_url, signer, mode=mode),
        client_options=None if mode == "keyless" else {"min_reconnect_delay": 0.02},
    )


@asynccontextmanager
async def running(svc: Service) -> AsyncIterator[Service]:
    svc.config.debounce_ms = 50
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    try:
        yield svc
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


def event_alerts(db: Path) -> list[tuple[str, str, str]]:
    marks = ", ".join("?" * len(EVENT_RULES))
    sql = f"SELECT rule, market_ticker, body FROM alerts WHERE rule IN ({marks}) ORDER BY id"
    return [(str(r), str(t), str(b)) for r, t, b in rows(db, sql, *EVENT_RULES)]


async def test_the_shipped_rules_under_the_simulator_alert_on_a_demo_event(shipped, caplog):
    """`watcher start --simulate` with the shipped files: no `watch:` section, so the demo
    events are watched (said once), their random walks cross the fee boundary and an
    event_arbitrage or ladder alert is recorded, with legs, fees and the displayed depth.
    Writing a `watch:` section replaces the demo events live."""
    caplog.set_level(logging.INFO, logger="watcher")
    key = ed25519.Ed25519PrivateKey.generate()
    sim = SimulatedExchange(public_keys={"k": key.public_key()}, tick_interval=0.01, seed=11)
    async with sim, running(service(shipped, sim, key, "simulate")) as svc:
        await until(lambda: event_alerts(shipped / "w.db"), WAIT)
        assert set(svc.pipeline.session.events) == {ELECT, LADDER}
        rule, event, body = event_alerts(shipped / "w.db")[0]
        assert (rule, event) in (("event basket", ELECT), ("broken ladder", LADDER))
        assert "after fees for 1 contract per leg (depth allows " in body
        assert " fee, " in body and body.count(f"{event}-") >= 2  # every leg named

        text = (shipped / "rules.yaml").read_text()
        atomic_write(shipped / "rules.yaml", f"watch:\n  events: [{LADDER}]\n{text}")
        await until(lambda: set(svc.pipeline.session.events) == {LADDER}, WAIT)
        assert not any(t.startswith(ELECT) for t in svc.pipeline.watched)
    said = [r.getMessage() for r in caplog.records if "demo events" in r.getMessage()]
    assert said == [
        f"rules.yaml has no watch: section: watching the simulator's demo events {ELECT},"
        f" {LADDER} (list events or series under watch: to choose others)"
    ]


async def test_the_shipped_rules_on_kalshi_watch_no_event_and_say_nothing_alarming(shipped, caplog):
    """A real (signed, not simulated) run with the shipped rules.yaml: no event is asked for,
    nothing beyond the positions is watched, no warning about the event rules, one INFO line
    saying they wait for a `watch:` section."""
    caplog.set_level(logging.INFO, logger="watcher")
    key = ed25519.Ed25519PrivateKey.generate()
    sim = SimulatedExchange(public_keys={"k": key.public_key()}, tick_interval=0.01, seed=12)
    async with sim, running(service(shipped, sim, key, "websocket")) as svc:
        await sim.wait_subscribed("ticker", "KXCPI-26JAN-T0.3", timeout=WAIT)
        await svc.jobs.refresh_metadata()  # a metadata refresh asks for no event either
        assert svc.watchlist.events == {} and svc.pipeline.session.events == {}
        assert svc.pipeline.watched == frozenset(svc.pipeline.portfolio.tickers())
    assert not any(t.startswith(("KXELECT", "KXHIGHTEMP")) for t in sim.stats.markets)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "event" in w or "applies to no market" in w]
    waiting = [r for r in caplog.records if "wait for watched events" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in waiting] == [
        (
            "INFO",
            "event rules 'event basket', 'broken ladder' wait for watched events: list event or"
            " series tickers under watch: in rules.yaml",
        )
    ]


async def test_keyless_mode_polls_the_watched_events_markets(tmp_path):
    """Without a key the REST poller is the feed: it polls the watched event's markets (no
    position in them) as well as the positions', so their quotes are stored and the event
    rules fire on them; the REST sizes give the depth."""
    (tmp_path / "trades.json").write_text(json.dumps({"trades": []}))
    (tmp_path / "rules.yaml").write_text(
        "version: 1\ntimezone: UTC\n"
        f"watch:\n  events: [{ELECT}]\n"
        "rules:\n  - {name: arb, type: event_arbitrage, min_edge_cents: 1}\n"
    )
    async with SimulatedExchange(seed=13) as sim:
        # YES bids add up to $1.35: NO asks 55 + 60 + 70 + 80 = $2.65 + 8¢ fees for $3.
        for name, bid in (("ALICE", 45), ("BOB", 40), ("CAROL", 30), ("DAN", 20)):
            sim.set_quote(f"{ELECT}-{name}", yes_bid=f"0.{bid}", yes_ask=f"0.{bid + 2}")
        svc = service(tmp_path, sim, None, "keyless", poll_interval="0.05")
        async with running(svc):
            db = tmp_path / "w.db"
            await until(lambda: rows(db, "SELECT body FROM alerts WHERE rule = 'arb'"), WAIT)
            stored = "SELECT DISTINCT market_ticker FROM tickers ORDER BY 1"
            await until(lambda: len(rows(db, stored)) == 4, WAIT)  # the writer's batch
        [(body,)] = rows(db, "SELECT body FROM alerts WHERE rule = 'arb'")
        assert [t for (t,) in rows(db, stored)] == [
            f"{ELECT}-{n}" for n in ("ALICE", "BOB", "CAROL", "DAN")
        ]
        assert "edge 27¢ after fees for 1 contract per leg (depth allows " in body
        assert svc.client is None and sim.stats.connections_accepted == 0


async def test_the_paper_desk_shares_the_watchlists_fee_lookup(shipped):
    """One fee lookup: a live event_fee_update that the watchlist applies reaches paper orders
    (the desk) at once, not after the desk's own cache expires."""
    key = ed25519.Ed25519PrivateKey.generate()
    sim = SimulatedExchange(public_keys={"k": key.public_key()}, tick_interval=0.01, seed=11)
    async with sim, running(service(shipped, sim, key, "simulate")) as svc:
        await until(lambda: svc.desk is not None, WAIT)
        assert svc.desk is not None and svc.desk.series_fees is svc.watchlist.fees
        svc.watchlist.fees.apply_update(ELECT, Decimal("0.5"))
        assert svc.desk.series_fees.resolve(ELECT, None) == Decimal("0.5")
