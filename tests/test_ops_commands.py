"""Operator commands over a database recorded by a live in-process run: `watcher status`
(while the service runs, and after), `watcher history`, and `watcher replay` (the same alerts
as the live run, nothing sent)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.cli import main
from watcher.domain.alert import Alert
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.notify.outbox import Outbox
from watcher.ops.history import history_line
from watcher.ops.readout import parse_when
from watcher.store.records import TickerRow, TradeRow

from .conftest import MS
from .support import poll as until
from .support import service_on

WAIT = 10_000 * MS
CPI, FED = "KXCPI-26JAN-T0.3", "KXFED-26DEC-H0"

TRADES = {
    "trades": [
        {"ticker": CPI, "side": "YES", "entry_price": 40, "contracts": 10},
        {"ticker": FED, "side": "NO", "entry_cents": 30, "quantity": 5, "status": "OPEN"},
    ]
}
RULE_NAMES = ("spread", "big trade", "moved")
RULES = """\
version: 1
timezone: UTC
defaults: {cooldown: 1h}
rules:
  - {name: spread, type: spread, max_cents: 10}
  - {name: big trade, type: trade_size, min_contracts: 100}
  - {name: moved, type: move_from_entry, cents: 3}
"""


def cli(folder: Path, *args: str) -> list[str]:
    return [
        *args,
        "--trades",
        str(folder / "trades.json"),
        "--rules",
        str(folder / "rules.yaml"),
        "--db",
        str(folder / "w.db"),
    ]


def live_alert_keys(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("select idempotency_key, rule from alerts").fetchall()
    return {key for key, rule in rows if rule in RULE_NAMES}


async def record_live_run(folder: Path, capsys) -> list[str]:
    """Run the service against the simulator until both markets traded; return the output of
    `watcher status` taken while it ran."""
    (folder / "trades.json").write_text(json.dumps(TRADES, indent=2))
    (folder / "rules.yaml").write_text(RULES)
    key = ed25519.Ed25519PrivateKey.generate()
    async with SimulatedExchange(
        public_keys={"k": key.public_key()}, tick_interval=0.01, trade_probability=0.5, seed=11
    ) as sim:
        svc = service_on(folder, sim, key)
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        try:
            assert svc.client is not None
            stats = svc.client.stats
            await until(lambda: stats.by_type.get("trade", 0) >= 20)
            await svc.jobs.check_feed()  # the feed-health job, now rather than in 5 s
            await svc.store.flush()
            capsys.readouterr()
            assert await asyncio.to_thread(main, cli(folder, "status")) == 0
            status = capsys.readouterr().out.splitlines()
        finally:
            stop.set()
            await asyncio.wait_for(task, WAIT)
    return status


async def test_status_history_and_replay_over_a_live_recording(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """While the service runs, `status` shows each position with its prices, P&L and last
    alert and says the service runs; afterwards it says it stopped. `history --json` gives
    one object per line, oldest first. `replay` over the recording finds exactly the alerts
    the live run raised, names the market on each line, and sends nothing; a long replay
    shows a progress bar on stderr."""
    status = await record_live_run(tmp_path, capsys)
    header, cpi, fed, feed = status
    assert header.split() == [
        "TICKER",
        "SIDE",
        "QTY",
        "ENTRY",
        "LAST",
        "MARK",
        "P&L",
        "LAST",
        "TICK",
        "LAST",
        "ALERT",
    ]
    assert cpi.startswith(f"{CPI}  YES   10   40¢") and "$" in cpi and "ago" in cpi
    assert fed.startswith(f"{FED}    NO    5    30¢") and " ago " in fed
    assert any(line.endswith(f" {rule}") for line in (cpi, fed) for rule in RULE_NAMES)
    assert feed.startswith("service: running (pid ") and "websocket" in feed
    assert "feed live, last data" in feed

    assert await asyncio.to_thread(main, cli(tmp_path, "status")) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("service: not running")

    assert (
        await asyncio.to_thread(
            main, cli(tmp_path, "history", CPI.lower(), "--json", "--limit", "7")
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 7 and {r["kind"] for r in rows} <= {"tick", "trade"}
    assert [r["ts_ms"] for r in rows] == sorted(r["ts_ms"] for r in rows)
    assert all(r["market_ticker"] == CPI for r in rows)
    assert (
        await asyncio.to_thread(
            main, cli(tmp_path, "history", CPI, "--since", "1h", "--limit", "3")
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(" tick " in x or " trade " in x for x in lines)

    live = live_alert_keys(tmp_path / "w.db")
    assert {key.split("|")[0] for key in live} >= {"spread", "big trade"}
    assert await asyncio.to_thread(main, cli(tmp_path, "replay", "--json")) == 0
    out = capsys.readouterr()
    replayed = [json.loads(line) for line in out.out.splitlines()]
    assert {a["key"] for a in replayed} == live
    assert live_alert_keys(tmp_path / "w.db") == live  # nothing recorded, nothing sent
    assert "(nothing was sent)" in out.err

    assert await asyncio.to_thread(main, cli(tmp_path, "replay", "--market", FED)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(f"  {FED}  [" in line for line in lines)
    assert len(lines) == len([k for k in live if f"|{FED}" in k])
    monkeypatch.setattr("watcher.cli.REPLAY_PROGRESS_MIN", 1)
    assert await asyncio.to_thread(main, cli(tmp_path, "replay")) == 0
    out = capsys.readouterr()
    assert "replaying" in out.err and len(out.out.splitlines()) == len(live)
    assert await asyncio.to_thread(main, cli(tmp_path, "replay", "--until", "2000-01-01")) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no recorded ticks" in out.err


@pytest.mark.parametrize("command", [["status"], ["alerts"], ["history", CPI], ["replay"]])
def test_a_read_out_without_a_database_says_so(tmp_path: Path, capsys, command) -> None:
    """A read-out on a database that does not exist exits 4 with a clear message, and does
    not create the file."""
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(RULES)
    assert main(cli(tmp_path, *command)) == 4
    assert "cannot open database" in capsys.readouterr().err
    assert not (tmp_path / "w.db").exists()


def test_history_rejects_an_unreadable_since(tmp_path: Path, capsys) -> None:
    """A --since that is neither a duration nor a date is a usage error naming the option."""
    (tmp_path / "rules.yaml").write_text(RULES)
    assert main(cli(tmp_path, "history", CPI, "--since", "yesterday")) == 2
    assert "--since: expected a duration like 2h or 1d" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", 1_000_000_000_000 - 7_200_000),
        ("1d", 1_000_000_000_000 - 86_400_000),
        ("2026-01-15", 1_768_453_200_000),  # midnight in New York
        ("2026-01-15T09:30", 1_768_487_400_000),
        ("2026-01-15T09:30:00+00:00", 1_768_469_400_000),
    ],
)
def test_since_and_until_take_durations_ago_or_local_dates(text, expected) -> None:
    """Durations count back from now; naive dates and times are in the rules' timezone."""
    tz = ZoneInfo("America/New_York")
    assert parse_when(text, now_ms=1_000_000_000_000, tz=tz) == expected


def test_history_lines_speak_cents_with_a_labelled_local_time() -> None:
    """`watcher history` prints YES prices in cents like every other output, and its times in
    the rules' timezone with the zone named."""
    tz = ZoneInfo("America/New_York")
    tick = TickerRow(
        CPI,
        1_768_487_400_250,
        1,
        165_500,
        160_000,
        175_000,
        None,
        None,
        None,
        1_234_000_000,
        None,
        None,
        None,
    )
    trade = TradeRow(
        "t1", CPI, 1_768_487_401_000, 2, 450_000, 550_000, 136_000_000, "yes", None, False
    )
    assert history_line("tick", tick, tz) == (
        "2026-01-15 09:30:00.250 EST  tick   bid 16¢  ask 17.5¢  last 16.55¢  volume 1234"
    )
    assert history_line("trade", trade, tz) == (
        "2026-01-15 09:30:01.000 EST  trade  136 @ 45¢ taker yes"
    )


def test_alerts_print_times_in_the_rules_timezone_labelled(tmp_path: Path, capsys) -> None:
    """`watcher alerts` prints times in the rules.yaml timezone with the zone named, the same
    as `status`, `history` and `replay`."""
    (tmp_path / "rules.yaml").write_text(RULES.replace("timezone: UTC", "timezone: Asia/Tokyo"))
    with Outbox(tmp_path / "w.db") as outbox:
        alert = Alert(
            key="a",
            rule="tight spread",
            market_ticker=CPI,
            severity="info",
            title=f"{CPI} · tight spread",
            body="spread 1¢",
            targets=(),
            at_ms=1_768_487_400_000,
        )
        outbox.record([alert], now_ms=1_768_487_400_000)
    assert main(cli(tmp_path, "alerts")) == 0
    assert capsys.readouterr().out.startswith("2026-01-15 23:30:00 JST  ")
