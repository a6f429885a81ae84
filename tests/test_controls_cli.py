"""``watcher mute|unmute|pause|resume``: the same Controls as the bot and the dashboard, over
``--db``; a running service obeys a mute made from another process's command line, and a bad
duration or target is refused with exit 2 and nothing stored."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.cli import main
from watcher.kalshi.sim.exchange import SimulatedExchange

from .conftest import MS
from .support import HttpRecorder, service_on
from .support import poll as until
from .test_controls_service import TICKER, TIGHT, WIDE, cli, tight_alerts

WAIT = 10_000 * MS
RULES = """\
version: 1
timezone: UTC
notify:
  hook: ${HOOK_URL:-}
defaults:
  notify: [hook]
rules:
  - {name: tight, type: spread, max_cents: 5}
"""
TRADES = {"trades": [{"ticker": TICKER, "side": "YES", "entry_price": 40, "contracts": 10}]}


def stored(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        mutes = conn.execute("SELECT target, set_by FROM mutes ORDER BY target").fetchall()
        paused = conn.execute("SELECT set_by FROM paused").fetchall()
    return mutes, paused


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path


def test_mute_pause_unmute_resume_are_stored_and_shown_by_status(folder: Path, capsys) -> None:
    assert main(cli(folder, "mute", "1h", TICKER)) == 0
    assert capsys.readouterr().out.startswith(f"muted {TICKER} until ")
    assert main(cli(folder, "mute", "30m")) == 0
    assert main(cli(folder, "pause")) == 0
    assert "held back until `watcher resume`" in capsys.readouterr().out
    assert stored(folder / "w.db") == ([(None, "cli"), (TICKER, "cli")], [("cli",)])
    assert main(cli(folder, "status")) == 0
    out = capsys.readouterr().out
    assert f"muted: {TICKER} until " in out and "paused since " in out
    assert main(cli(folder, "unmute", TICKER)) == 0
    assert capsys.readouterr().out == "unmuted 1 mute\n"
    assert main(cli(folder, "resume")) == 0
    assert main(cli(folder, "resume")) == 0
    assert capsys.readouterr().out == "resumed\nnot paused: nothing to resume\n"
    assert stored(folder / "w.db") == ([(None, "cli")], [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("mute", "soon", TICKER), "error: mute for how long? expected a duration"),
        (("mute", "0", TICKER), "error: a mute must last more than 0 seconds"),
        (("mute", "400d"), "error: a mute lasts at most 365 days"),
        (("mute", "1h", "KXNOPE-1"), "error: 'KXNOPE-1' is neither a watched market nor a rule"),
    ],
)
def test_a_bad_duration_or_target_is_refused_and_nothing_is_stored(
    folder: Path, capsys, args: tuple[str, ...], message: str
) -> None:
    assert main(cli(folder, "mute", "1h", "tight")) == 0  # something stored before
    capsys.readouterr()
    assert main(cli(folder, *args)) == 2
    assert capsys.readouterr().err.startswith(message)
    assert stored(folder / "w.db") == ([("tight", "cli")], [])


async def test_a_running_service_obeys_a_mute_from_the_command_line(folder: Path) -> None:
    """The service re-reads the stored mutes before recording alerts: the command line's mute
    (another "process": a thread with its own event loop) holds the next alert back."""
    db = folder / "w.db"
    key = ed25519.Ed25519PrivateKey.generate()
    async with (
        HttpRecorder() as hook,
        SimulatedExchange(public_keys={"k": key.public_key()}, seed=5) as sim,
    ):
        sim.set_quote(TICKER, **WIDE)
        svc = service_on(folder, sim, key, environ={"HOOK_URL": hook.url})
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        try:
            await sim.wait_subscribed("ticker", TICKER, timeout=WAIT)
            assert await asyncio.to_thread(main, cli(folder, "mute", "1h", "tight")) == 0
            await asyncio.sleep(1.2)  # the service re-reads stored controls at most once a second
            sim.set_quote(TICKER, **TIGHT)
            await until(lambda: svc.pipeline.alerts_fired, WAIT)
        finally:
            stop.set()
            await task
    [(status, reason, deliveries)] = tight_alerts(db)
    assert (status, deliveries) == ("suppressed", 0) and reason.endswith(" UTC by cli")
    assert hook.requests == []
