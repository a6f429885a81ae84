"""End to end: `watcher start --simulate` as a user runs it, and the service in-process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.app import Service
from watcher.cli import main
from watcher.kalshi import messages as m
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.notify.outbox import Outbox

from .conftest import MS
from .support import (
    RULES,
    HttpRecorder,
    count,
    env_without_kalshi,
    finish,
    poll,
    service_on,
    spawn,
)

WAIT = 10_000 * MS
ROOT = Path(__file__).resolve().parents[1]

TRADES = {
    "trades": [
        {"ticker": "KXCPI-26JAN-T0.3", "side": "YES", "entry_price": 40, "contracts": 10},
        {
            "ticker": "KXFED-26DEC-H0",
            "side": "no",
            "entry_cents": 30,
            "quantity": 5,
            "status": "OPEN",
            "note": "kept",
        },
        {
            "ticker": "KXOLD-25JAN-T1",
            "side": "YES",
            "entry_price": 50,
            "contracts": 1,
            "status": "SETTLED",
        },
    ]
}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "trades.json").write_text(json.dumps(TRADES, indent=2))
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path


async def test_start_simulate_streams_persists_alerts_and_stops_cleanly(workdir: Path) -> None:
    """`watcher start --simulate`: rows appear in SQLite while it runs, a spread alert reaches
    the local HTTP target, SIGTERM exits 0 and every ticker frame sent is stored."""
    db = workdir / "data" / "w.db"
    async with HttpRecorder() as hook:
        proc = await spawn(workdir, env_without_kalshi(HOOK_URL=hook.url), "--simulate", db=db)
        try:
            await poll(lambda: count(db, "select count(*) from tickers") >= 5)
            await poll(lambda: len(hook.delivered) >= 1)
        finally:
            out, log = await finish(proc, signal.SIGTERM)
    assert proc.returncode == 0, log
    assert "connected to ws://127.0.0.1" in log
    assert "watching 2 markets: KXCPI-26JAN-T0.3, KXFED-26DEC-H0" in log
    summary = out.strip().splitlines()[-1]
    received = int(re.search(r"\((\d+) ticker, (\d+) trade\)", summary).group(1))
    sent = int(re.search(r"simulator sent (\d+) ticker", log).group(1))
    stored = count(db, "select count(*) from tickers")
    assert stored == received == sent, summary
    assert count(db, "select count(distinct market_ticker) from tickers") == 2
    trades_rows = count(db, "select count(*) from trades")
    assert f"{stored} ticks and {trades_rows} trades stored" in summary
    payload = hook.delivered[0].payload
    assert "spread" in payload["message"] and "KXCPI-26JAN-T0.3" in payload["message"]
    assert count(db, "select count(*) from alerts where status = 'delivered'") >= 1


def test_check_reports_every_problem_located_and_exits_1(
    workdir: Path, capsys, monkeypatch
) -> None:
    """`watcher check` prints file:line problems for trades.json and rules.yaml, exit 1."""
    (workdir / "trades.json").write_text(
        '[\n  {"ticker": "A", "side": "MAYBE", "contracts": 1, "entry_price": 40}\n]\n'
    )
    (workdir / "rules.yaml").write_text("version: 1\nrules:\n  - {name: x, type: spred}\n")
    monkeypatch.delenv("KALSHI_API_KEY_ID", raising=False)
    code = main(
        ["check", "--trades", str(workdir / "trades.json"), "--rules", str(workdir / "rules.yaml")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"{workdir / 'trades.json'}:2: trade #1 (A):" in err
    assert f"{workdir / 'rules.yaml'}:3:" in err


def test_check_passes_on_the_shipped_files(capsys, monkeypatch) -> None:
    """The example positions and the default rules pass `watcher check`."""
    monkeypatch.delenv("KALSHI_API_KEY_ID", raising=False)
    monkeypatch.delenv("WATCHER_TELEGRAM_URL", raising=False)
    code = main(
        [
            "check",
            "--trades",
            str(ROOT / "trades.json.example"),
            "--rules",
            str(ROOT / "rules" / "rules.yaml"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "rules" in out.out


# In-process service against a simulator the test controls


def make_service(
    workdir: Path, sim: SimulatedExchange, key, hook_url: str, metrics_port=None, **client
) -> Service:
    return service_on(
        workdir,
        sim,
        key,
        environ={"HOOK_URL": hook_url},
        client_options=client or None,
        metrics_port=metrics_port,
    )


@pytest.fixture
async def service(workdir: Path) -> AsyncIterator[tuple[Service, SimulatedExchange, asyncio.Event]]:
    key = ed25519.Ed25519PrivateKey.generate()
    async with (
        HttpRecorder() as hook,
        SimulatedExchange(public_keys={"k": key.public_key()}, tick_interval=0.02, seed=3) as sim,
    ):
        svc = make_service(workdir, sim, key, hook.url, "0", min_reconnect_delay=0.02)
        svc.config.debounce_ms = 50
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        await sim.wait_subscribed("ticker", "KXFED-26DEC-H0", timeout=WAIT)
        yield svc, sim, stop
        stop.set()
        await asyncio.wait_for(task, WAIT)


def atomic_write(path: Path, text: str) -> None:
    """Write like an editor: a temp file in the same folder, then rename over the original."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def test_new_position_is_subscribed_on_the_live_connection(service, workdir) -> None:
    """Adding a market to trades.json (atomic rename) subscribes it without reconnecting;
    a closed position is removed from the subscription."""
    svc, sim, _ = service
    trades = json.loads((workdir / "trades.json").read_text())
    trades["trades"].append(
        {"ticker": "KXNEW-26DEC-T5", "side": "YES", "entry_price": 20, "contracts": 3}
    )
    trades["trades"][0]["status"] = "CLOSED"
    atomic_write(workdir / "trades.json", json.dumps(trades))
    await sim.wait_subscribed("ticker", "KXNEW-26DEC-T5", timeout=WAIT)
    await poll(
        lambda: (
            "KXCPI-26JAN-T0.3"
            not in (
                svc.client.protocol.subscriptions[svc.client.protocol.sid_of("ticker")].markets
                or ()
            )
        )
    )
    commands = sim.stats.commands[0]
    assert any(
        isinstance(c, m.UpdateSubscription)
        and c.params.action == "add_markets"
        and c.params.market_tickers == ["KXNEW-26DEC-T5"]
        for c in commands
    )
    assert any(
        isinstance(c, m.UpdateSubscription)
        and c.params.action == "delete_markets"
        and c.params.market_tickers == ["KXCPI-26JAN-T0.3"]
        for c in commands
    )
    assert sim.stats.connections_accepted == 1
    assert svc.client.stats.command_errors == 0


async def test_invalid_rules_edit_keeps_the_old_rules_and_alerts_once(service, workdir) -> None:
    """A broken rules.yaml save is reported with its location, the old rules stay in force,
    and one config alert is recorded however often the same broken text is saved."""
    svc, _, _ = service
    before = svc.pipeline.rules
    atomic_write(workdir / "rules.yaml", RULES + "  - {name: bad, type: spread, max_cent: 2}\n")
    await poll(lambda: count(workdir / "w.db", "select count(*) from alerts where rule='config'"))
    assert svc.pipeline.rules is before
    atomic_write(workdir / "rules.yaml", RULES.replace("max_cents: 10", "max_cents: 3"))
    await poll(lambda: svc.pipeline.rules is not before)
    assert svc.pipeline.rules.rules[0].max_cents == 3
    with Outbox(workdir / "w.db") as outbox:
        config = [a for a in outbox.recent(limit=100) if a.rule == "config"]
    assert len(config) == 1
    assert "rules.yaml:10:31: unknown key 'max_cent'" in config[0].body


async def test_restart_does_not_repeat_an_alert(workdir) -> None:
    """The rule state is persisted: a second run over the same DB fires nothing new for a
    condition that is still true."""
    key = ed25519.Ed25519PrivateKey.generate()
    fired = []
    async with (
        HttpRecorder() as hook,
        SimulatedExchange(public_keys={"k": key.public_key()}, tick_interval=0.02, seed=3) as sim,
    ):
        for _ in range(2):
            svc = make_service(workdir, sim, key, hook.url)
            stop = asyncio.Event()
            task = asyncio.create_task(svc.run(stop))
            # The simulator's spreads are 1-5¢, so "max_cents: 10" holds on every tick.
            await poll(lambda svc=svc: svc.client.stats.by_type.get("ticker", 0) >= 10)
            await poll(lambda: len(hook.delivered) >= 1)
            stop.set()
            await asyncio.wait_for(task, WAIT)
            fired.append(svc.pipeline.alerts_fired)
    assert fired == [2, 0]
    assert len(hook.delivered) == 1  # both alerts coalesced into one message


async def test_metrics_and_health_are_served_while_the_feed_is_live(service) -> None:
    """--metrics-port serves Prometheus text with the service's counters and /healthz 200."""
    svc, _, _ = service
    await poll(lambda: svc.client.stats.by_type.get("ticker", 0) >= 3)
    assert svc.metrics_server is not None
    async with httpx.AsyncClient(base_url=svc.metrics_server.url) as http:
        health = await http.get("/healthz")
        text = (await http.get("/metrics")).text
    assert health.status_code == 200
    assert 'watcher_feed_messages_total{type="ticker"}' in text
    assert "watcher_feed_connected 1.0" in text
