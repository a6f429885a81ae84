"""Keyless mode: no API key → the public REST market endpoint is polled and feeds the same
pipeline as WebSocket ticks (stored in `tickers`, rules and alerts work); no WebSocket."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.app import Endpoint, Service
from watcher.cli import main
from watcher.domain.trades_file import load_positions
from watcher.kalshi import messages as m
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.notify.outbox import Outbox
from watcher.rules import load_rules
from watcher.service.keyless import ticker_from_rest, trade_from_rest
from watcher.settings import settings_from_env

from .conftest import MS
from .support import count, env_without_kalshi, finish, spawn
from .support import poll as until

WAIT = 10_000 * MS
CPI, FED = "KXCPI-26JAN-T0.3", "KXFED-26DEC-H0"

TRADES = {
    "trades": [
        {"ticker": CPI, "side": "YES", "entry_price": 40, "contracts": 10},
        {"ticker": FED, "side": "NO", "entry_cents": 30, "quantity": 5},
    ]
}
RULES = """\
version: 1
timezone: UTC
defaults: {cooldown: 1h}
rules:
  - {name: tight spread, type: spread, max_cents: 3}
  - {name: whale, type: trade_size, min_contracts: 500}
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "trades.json").write_text(json.dumps(TRADES, indent=2))
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path


def test_rest_market_becomes_a_ticker_frame_with_the_same_prices() -> None:
    """A REST market's quote becomes a `ticker` frame stamped with the poll time."""
    market = m.RestMarket(
        ticker=CPI,
        yes_bid_dollars=Decimal("0.4100"),
        yes_ask_dollars=Decimal("0.4300"),
        last_price_dollars=Decimal("0.4200"),
        volume_fp=Decimal("10.00"),
    )
    frame = ticker_from_rest(market, 1_700_000_000_123)
    assert frame is not None
    assert frame.msg.yes_bid_dollars == Decimal("0.41") and frame.msg.price_dollars == Decimal(
        "0.42"
    )
    assert frame.msg.ts_ms == 1_700_000_000_123 and frame.msg.ts == 1_700_000_000
    assert ticker_from_rest(m.RestMarket(ticker=CPI), 0) is None


def test_rest_trade_without_ts_ms_takes_its_time_from_created_time() -> None:
    """Kalshi's REST trades carry `created_time`; the frame gets it in ms."""
    trade = m.RestTrade(
        trade_id="t1",
        ticker=CPI,
        yes_price_dollars=Decimal("0.42"),
        no_price_dollars=Decimal("0.58"),
        count_fp=Decimal("3.00"),
        taker_side="no",
        created_time="2026-01-02T03:04:05Z",
    )
    frame = trade_from_rest(trade)
    assert frame.msg.ts_ms == 1_767_323_045_000 and frame.msg.taker_side == "no"


@pytest.fixture
async def keyless(workdir: Path) -> AsyncIterator[tuple[Service, SimulatedExchange]]:
    async with SimulatedExchange(seed=4) as sim:
        sim.set_quote(CPI, yes_bid="0.41", yes_ask="0.43", last="0.42")
        sim.set_quote(FED, yes_bid="0.60", yes_ask="0.70", last="0.65")
        settings = settings_from_env(
            trades=str(workdir / "trades.json"),
            rules=str(workdir / "rules.yaml"),
            db=str(workdir / "w.db"),
            environ={},
            poll_interval="0.05",
        )
        svc = Service(
            settings,
            portfolio=load_positions(settings.trades_path),
            rules=load_rules(settings.rules_path, env={}),
            endpoint=Endpoint(sim.ws_url, sim.api_url, None, mode="keyless"),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        yield svc, sim
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def test_keyless_mode_feeds_rest_quotes_and_trades_through_the_pipeline(
    keyless, workdir
) -> None:
    """Polled quotes are stored as ticks and evaluated by the rules; a new public trade is
    stored and fires trade_size; no WebSocket connection is attempted."""
    svc, sim = keyless
    db = workdir / "w.db"
    await until(lambda: count(db, "select count(*) from tickers") >= 2)
    await until(lambda: count(db, "select count(*) from alerts where rule='tight spread'") >= 1)
    sim.push_trade(CPI, yes_price="0.44", count="600")
    sim.set_quote(CPI, yes_bid="0.45", yes_ask="0.47")
    await until(lambda: count(db, "select count(*) from trades") == 1)
    await until(lambda: count(db, f"select count(*) from tickers where market_ticker='{CPI}'") >= 2)
    await until(lambda: count(db, "select count(*) from alerts where rule='whale'") == 1)
    polls = svc.poller.stats.polls
    await until(lambda: svc.poller.stats.polls >= polls + 3)
    # unchanged quotes make no new ticks, as on the ticker channel
    assert count(db, f"select count(*) from tickers where market_ticker='{FED}'") == 1
    assert svc.client is None and sim.stats.connections_accepted == 0
    with Outbox(db) as outbox:
        spread = [a for a in outbox.recent(limit=50) if a.rule == "tight spread"]
    assert [a.market_ticker for a in spread] == [CPI]  # FED's spread is 10¢
    assert svc.pipeline.markets[CPI].title == f"Simulated market {CPI}"


async def test_keyless_summary_counts_polls_instead_of_messages(keyless, workdir) -> None:
    """The shutdown summary of a keyless run names REST polls and stored rows."""
    svc, _ = keyless
    await until(lambda: svc.poller.stats.polls >= 2)
    assert svc.summary().startswith("stopped: ")
    assert " REST polls (" in svc.summary()


async def test_watcher_start_without_a_key_polls_rest_and_logs_json(workdir) -> None:
    """`watcher start --log-format json` with no key: every log line is a JSON object, the
    first says plainly that it is polling (slower) and how to enable streaming; ticks are
    stored; SIGTERM exits 0 with the summary."""
    db = workdir / "w.db"
    async with SimulatedExchange(seed=2) as sim:
        env = env_without_kalshi(KALSHI_API_URL=sim.api_url, WATCHER_POLL_INTERVAL="0.1")
        proc = await spawn(workdir, env, "--log-format", "json", db=db)
        try:
            await until(lambda: count(db, "select count(*) from tickers") >= 2)
        finally:
            out, err = await finish(proc, signal.SIGTERM)
        assert sim.stats.connections_accepted == 0
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    notice = next(r for r in records if "no Kalshi API key" in r["msg"])
    assert notice["level"] == "warning" and notice["logger"] == "watcher.app"
    assert "every 0.1 s" in notice["msg"] and "slower" in notice["msg"]
    assert "KALSHI_API_KEY_ID" in notice["msg"] and "KALSHI_PRIVATE_KEY_PATH" in notice["msg"]
    assert " REST polls (" in out.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--poll-interval", "0"], {}, "--poll-interval must be a positive number of seconds"),
        ([], {"WATCHER_POLL_INTERVAL": "soon"}, "WATCHER_POLL_INTERVAL must be a positive"),
        (["--retention-days", "-1"], {}, "--retention-days must be a whole number of days"),
        (["--digest-at", "25:00"], {}, "--digest-at must be a time HH:MM"),
        ([], {"WATCHER_WRITE_BACK": "maybe"}, "WATCHER_WRITE_BACK must be 1 or 0"),
    ],
)
def test_a_bad_service_option_is_a_usage_error_naming_it(
    workdir, capsys, monkeypatch, args, env, message
) -> None:
    """A bad option or variable stops `watcher start` with exit 2 and names its source."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["start", "--trades", str(workdir / "trades.json"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_options_override_variables_which_override_defaults() -> None:
    """--option beats WATCHER_*, which beats the default; durations like 2m are accepted."""
    env = {"WATCHER_POLL_INTERVAL": "30", "WATCHER_STALE_AFTER": "2m", "WATCHER_WRITE_BACK": "1"}
    s = settings_from_env(trades=None, rules=None, db=None, environ=env, poll_interval="5")
    assert (s.poll_interval, s.stale_after, s.write_back) == (5.0, 120.0, True)
    assert (s.retention_days, s.digest_at, s.refresh_interval) == (30, None, 300.0)
    s = settings_from_env(
        trades=None, rules=None, db=None, environ={"WATCHER_DIGEST_AT": "7:05"}, write_back=False
    )
    assert s.digest_at == (7, 5) and s.write_back is False and s.is_keyless
