"""Mutes in the running service (issue 13): a muted rule's alert is recorded as suppressed with
its reason (``watcher alerts`` and ``watcher status`` show it) and nothing is sent; after
``unmute`` the next alert is delivered to the target over real HTTP."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.cli import main
from watcher.kalshi.sim.exchange import SimulatedExchange

from .conftest import MS
from .support import HttpRecorder, service_on
from .support import poll as until

WAIT = 10_000 * MS
TICKER = "KXCPI-26JAN-T0.3"
RULES = """\
version: 1
timezone: UTC
notify:
  hook: ${HOOK_URL}
defaults:
  notify: [hook]
rules:
  - {name: tight, type: spread, max_cents: 5}
"""
WIDE = {"yes_bid": "0.3000", "yes_ask": "0.5000", "last": "0.4000"}
TIGHT = {"yes_bid": "0.4000", "yes_ask": "0.4200", "last": "0.4100"}


def tight_alerts(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT status, suppressed_reason,"
            " (SELECT count(*) FROM alert_deliveries d WHERE d.alert_id = a.id)"
            " FROM alerts a WHERE rule = 'tight' ORDER BY id"
        ).fetchall()


def cli(folder: Path, *args: str) -> list[str]:
    paths = {"--trades": "trades.json", "--rules": "rules.yaml", "--db": "w.db"}
    return [*args, *(part for flag, name in paths.items() for part in (flag, str(folder / name)))]


async def test_a_muted_rule_is_recorded_suppressed_then_delivered_after_unmute(
    tmp_path: Path, capsys
) -> None:
    trades = {"trades": [{"ticker": TICKER, "side": "YES", "entry_price": 40, "contracts": 10}]}
    (tmp_path / "trades.json").write_text(json.dumps(trades))
    (tmp_path / "rules.yaml").write_text(RULES)
    db = tmp_path / "w.db"
    key = ed25519.Ed25519PrivateKey.generate()
    async with (
        HttpRecorder() as hook,
        SimulatedExchange(public_keys={"k": key.public_key()}, seed=5) as sim,
    ):
        sim.set_quote(TICKER, **WIDE)
        svc = service_on(tmp_path, sim, key, environ={"HOOK_URL": hook.url})
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        try:
            await sim.wait_subscribed("ticker", TICKER, timeout=WAIT)
            await until(lambda: svc.controls is not None, WAIT)
            mute = await svc.controls.mute(3600, "tight", by="telegram:987654321")
            sim.set_quote(TICKER, **TIGHT)
            await until(lambda: tight_alerts(db), WAIT)
            [(status, reason, deliveries)] = tight_alerts(db)
            assert (status, deliveries) == ("suppressed", 0)
            assert reason.startswith("muted tight until ") and reason.endswith(
                " UTC by telegram:987654321"
            )
            assert svc.pipeline.alerts_suppressed == 1

            assert await asyncio.to_thread(main, cli(tmp_path, "alerts")) == 0
            listed = capsys.readouterr().out
            assert f"suppressed [warning] {TICKER} · tight  ({reason})" in listed
            assert await asyncio.to_thread(main, cli(tmp_path, "status")) == 0
            status_lines = capsys.readouterr().out.splitlines()
            assert any(
                line.startswith("muted: tight until ") and line.endswith("(telegram:987654321)")
                for line in status_lines
            ), status_lines
            assert mute.until_ms - mute.created_ms == 3_600_000

            assert await svc.controls.unmute("TIGHT") == 1
            sim.set_quote(TICKER, **WIDE)  # the rule re-arms
            sim.set_quote(TICKER, **TIGHT)
            await until(lambda: len(hook.delivered) == 1, WAIT)
            await until(lambda: len(tight_alerts(db)) == 2 and tight_alerts(db)[1][0] != "pending")
            assert tight_alerts(db)[1] == ("delivered", None, 1)
            assert len(hook.requests) == 1  # the muted alert was never sent
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT)
