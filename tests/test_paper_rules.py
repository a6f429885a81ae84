"""Rules that act: a position rule with `action: close` closes the paper position once, at the
bid of the tick that fired it, and says so; `watcher replay` only says what it would have done;
`watcher status` shows the realized P&L beside the unrealized."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.cli import main
from watcher.domain.alert import Alert
from watcher.domain.paper import CloseResult, Fill
from watcher.domain.positions import Portfolio, Position
from watcher.domain.trades_file import parse_positions
from watcher.errors import PaperError, RestError
from watcher.kalshi.rest_bodies import RestEvent, RestMarket, RestOrderbook, RestSeries
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.ops.replay import CLOSE_GRACE_MS, alert_json, alert_line, as_it_was
from watcher.ops.status import (
    FeedHealth,
    StatusRow,
    StatusTable,
    realized_total,
    render_status,
)
from watcher.rules.engine import Decision
from watcher.service.digest import view_position
from watcher.service.paper import PaperDesk
from watcher.service.recording import Recording, act_on
from watcher.store import open_backend

from .conftest import MS
from .support import poll as until
from .support import service_on

WAIT = 10_000 * MS
TICKER = "KXPAPER-26JAN-T50"
UTC = ZoneInfo("UTC")
ENTRY = {
    "id": "paper-0001",
    "ticker": TICKER,
    "side": "YES",
    "contracts": 50,
    "entry_price_dollars": "0.40",
    "fees_dollars": "0.84",  # 0.07 × 50 × 0.40 × 0.60 = 0.84
    "status": "OPEN",
    "opened_at": "2026-01-15T14:00:00Z",
    "source": "paper",
}
RULES = """\
version: 1
timezone: UTC
rules:
  - {name: stop loss, type: pnl, below_dollars: -5, action: close, severity: critical}
"""
#: Sold at the 20¢ bid: (0.20 − 0.40) × 50 = −$10, minus the $0.84 entry fee and the exit fee
#: 0.07 × 50 × 0.20 × 0.80 = $0.56.
CLOSED = "closed 50 YES at 20¢: realized -$11.40 after $1.40 fees"


# Carrying out an alert's action


def alert(**fields: Any) -> Alert:
    values: dict[str, Any] = {
        "key": f"stop loss|{TICKER}#paper-0001|1000",
        "rule": "stop loss",
        "market_ticker": TICKER,
        "severity": "critical",
        "title": f"{TICKER} · stop loss",
        "body": "paper P&L -$9.50 (at or below -$5.00): 50 YES from 40¢, now YES 21¢",
        "targets": (),
        "at_ms": 1000,
        "action": "close",
        "position_id": "paper-0001",
        "action_side": "YES",
        "action_contracts": Decimal(50),
        "action_price_micros": 200_000,
    }
    return Alert(**(values | fields))


def close_result(remaining: Decimal = Decimal(0)) -> CloseResult:
    fill = Fill(
        side="YES",
        action="sell",
        contracts=Decimal(50),
        parts=((Decimal("0.2"), Decimal(50)),),
        price=Decimal("0.2"),
        cost=Decimal(10),
        depth_checked=True,
    )
    return CloseResult(
        position_id="paper-0001",
        closed_id="paper-0001",
        ticker=TICKER,
        fill=fill,
        entry_price=Decimal("0.4"),
        entry_fee=Decimal("0.84"),
        exit_fee=Decimal("0.56"),
        realized=Decimal("-11.40"),
        remaining=remaining,
    )


class FakeCloser:
    """Answers close_position with a given result (or raises it), and remembers the calls."""

    def __init__(self, answer: CloseResult | Exception | None, log: list[str] | None = None):
        self.answer = answer
        self.fee_rate = Decimal("0.07")
        self.calls: list[tuple[str, int, str, str]] = []
        self.log = log if log is not None else []

    async def close_position(
        self, position_id: str, *, price_micros: int, fill_key: str, source: str = "rule"
    ) -> CloseResult | None:
        self.calls.append((position_id, price_micros, fill_key, source))
        self.log.append("close")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (close_result(), f" · {CLOSED}"),
        (close_result(Decimal(10)), f" · {CLOSED} (10 still open)"),
        (None, ""),  # closed before under this key: nothing more to say
        (
            PaperError("position paper-0001 is CLOSED, not open"),
            " · not closed: position paper-0001 is CLOSED, not open",
        ),
        (OSError("disk full"), " · not closed: disk full"),
    ],
)
async def test_the_alert_says_what_its_close_did(answer, said):
    """The desk is asked to close at the alert's bid under the alert's key; the alert says
    what happened, and a failed close is said, never raised."""
    closer = FakeCloser(answer)
    before = alert()
    after = await act_on(before, closer)
    assert closer.calls == [("paper-0001", 200_000, before.key, "rule")]
    assert after.body == before.body + said
    assert replace(after, body=before.body) == before


@pytest.mark.parametrize(
    ("fields", "closer", "said"),
    [
        ({"action_price_micros": None}, True, "not closed: no YES bid at that tick"),
        ({"position_id": None}, True, "not closed: the alert names no position"),
        ({}, False, "not closed: paper trading is not wired in this run"),
        ({"action": "open"}, True, "not done: unknown action 'open'"),
    ],
)
async def test_a_close_that_cannot_be_tried_is_said_without_asking_the_desk(fields, closer, said):
    fake = FakeCloser(close_result())
    done = await act_on(alert(**fields), fake if closer else None)
    assert done.body.endswith(f" · {said}") and fake.calls == []


async def test_an_alert_without_an_action_is_left_alone():
    fake = FakeCloser(close_result())
    plain = alert(action=None)
    assert await act_on(plain, fake) is plain and fake.calls == []


class FakeAlertStore:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.recorded: list[Alert] = []

    async def record(self, alerts, states, *, now_ms):
        self.log.append("record")
        self.recorded += alerts
        return [a.key for a in alerts]


class FakeSender:
    def wake(self) -> None:
        pass


async def test_the_close_comes_before_the_alert_is_recorded():
    """Recording a decision closes first, then records the alert that says so (with the rule
    states of the decision); a decision without actions is recorded as it is."""
    log: list[str] = []
    recording = Recording(FakeCloser(close_result(), log))
    store = FakeAlertStore(log)
    recording.alert_store, recording.sender = store, FakeSender()  # type: ignore[assignment]
    assert await recording._record_decision(Decision([alert(), alert(action=None)]), 5) == 2
    assert log == ["close", "record"]
    assert [a.body.endswith(CLOSED) for a in store.recorded] == [True, False]


# The read-outs


def test_replay_says_what_it_would_have_done_and_takes_positions_as_they_were():
    """A replay line ends with `(would close …)`; an entry closed by a fill is watched again
    until a moment after its `closed_at` (a hand-closed entry or a partial close's part not)."""
    line = alert_line(alert(), UTC)
    assert line.endswith("now YES 21¢ (would close 50 YES at 20¢)")
    assert alert_json(alert())["would"] == "would close 50 YES at 20¢"
    assert "would" not in alert_json(alert(action=None))
    assert alert_line(alert(action_price_micros=None), UTC).endswith(
        "(would close 50 YES, but there was no bid)"
    )
    trades = {
        "trades": [
            ENTRY | {"status": "CLOSED", "closed_at": "2026-01-15T15:00:00Z"},
            ENTRY | {"id": "hand", "status": "CLOSED"},
            ENTRY | {"id": "part", "parent_id": "x", "status": "CLOSED", "closed_at": "2026-01-15"},
            ENTRY | {"id": "open"},
        ]
    }
    portfolio = parse_positions(json.dumps(trades))
    was, closings = as_it_was(portfolio)
    assert [p.status for p in was.positions] == ["OPEN", "CLOSED", "CLOSED", "OPEN"]
    closed_ms = 1_768_489_200_000  # 2026-01-15 15:00 UTC
    assert [(at, p.id) for at, p in closings] == [(closed_ms + CLOSE_GRACE_MS, "paper-0001")]
    assert as_it_was(portfolio, since_ms=closed_ms + CLOSE_GRACE_MS + 1)[0] is portfolio


def status_row(position: Position, yes_bid: int | None) -> StatusRow:
    view = view_position(position, yes_bid=yes_bid, yes_ask=None, yes_last=yes_bid)
    return StatusRow(view, None, None)


def test_status_shows_realized_pnl_beside_unrealized_once_a_position_was_closed():
    trades = {
        "trades": [
            ENTRY | {"status": "CLOSED", "realized_pnl_dollars": "-11.40"},
            ENTRY | {"id": "b", "status": "CLOSED", "realized_pnl_dollars": "2.05"},
            ENTRY | {"id": "c", "status": "SETTLED"},
            ENTRY | {"id": "d", "contracts": 10},
        ]
    }
    portfolio = parse_positions(json.dumps(trades))
    closed, realized = realized_total(portfolio.positions)
    assert (closed, realized) == (2, Decimal("-9.35"))
    (open_one,) = portfolio.watched()
    table = StatusTable([status_row(open_one, 420_000)], closed, realized)
    lines = render_status(table, FeedHealth(), now_ms=0, tz=UTC)
    assert lines[-2] == "realized P&L -$9.35 (2 closed), unrealized P&L +$0.20"
    no_quote = StatusTable([status_row(open_one, None)], closed, realized)
    assert render_status(no_quote, FeedHealth(), now_ms=0, tz=UTC)[-2].endswith(
        "unrealized P&L not known yet"
    )
    assert len(render_status(StatusTable([], 0), FeedHealth(), now_ms=0, tz=UTC)) == 3


# End to end: the simulator over loopback, real SQLite


def cli(folder: Path, *args: str) -> list[str]:
    paths = ("--trades", "trades.json", "--rules", "rules.yaml", "--db", "w.db")
    return [*args, *(str(folder / p) if p[0] != "-" else p for p in paths)]


def fill_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(
            "select fill_key, ticker, side, action, contracts_e6, price_e6, fee_e6, source,"
            " position_id from paper_fills"
        ).fetchall()


def stop_loss_bodies(db: Path) -> list[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("select body from alerts where rule = 'stop loss'").fetchall()
    return [body for (body,) in rows]


async def run_service(folder: Path, sim: SimulatedExchange, key: Any, until_done: Any) -> None:
    """Run the service against ``sim`` until ``until_done(sim)`` returns; then stop it."""
    svc = service_on(folder, sim, key)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    try:
        await until_done(sim)
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


async def test_a_stop_loss_closes_the_position_once_across_a_restart_and_replay_writes_nothing(
    tmp_path: Path, capsys
) -> None:
    """The rule fires on the losing tick: the position is closed at that tick's bid (CLOSED,
    exit price, realized P&L after fees in trades.json, one fill row, the alert says so). A
    restart closes nothing more. `watcher replay` says "(would close …)" and writes nothing;
    `watcher status` shows the realized P&L."""
    trades_path = tmp_path / "trades.json"
    trades_path.write_text(json.dumps({"trades": [ENTRY]}, indent=2))
    (tmp_path / "rules.yaml").write_text(RULES)
    db = tmp_path / "w.db"
    key = ed25519.Ed25519PrivateKey.generate()

    async def lose(sim: SimulatedExchange) -> None:
        await sim.wait_subscribed("ticker", TICKER, timeout=WAIT)
        sim.set_quote(TICKER, yes_bid="0.3800", yes_ask="0.4000", last="0.3900")  # -$0.50
        sim.set_quote(TICKER, yes_bid="0.2000", yes_ask="0.2200", last="0.2100")  # -$9.50
        await until(lambda: '"CLOSED"' in trades_path.read_text(), WAIT)
        await until(lambda: stop_loss_bodies(db), WAIT)

    async with SimulatedExchange(public_keys={"k": key.public_key()}, seed=3) as sim:
        sim.set_quote(TICKER, yes_bid="0.3800", yes_ask="0.4000", last="0.3900")
        await run_service(tmp_path, sim, key, lose)

        (entry,) = json.loads(trades_path.read_text())["trades"]
        assert entry["status"] == "CLOSED" and entry["id"] == "paper-0001"
        assert Decimal(entry["exit_price_dollars"]) == Decimal("0.20")
        assert Decimal(entry["exit_fees_dollars"]) == Decimal("0.56")
        assert Decimal(entry["realized_pnl_dollars"]) == Decimal("-11.40")
        assert entry["closed_at"] and entry["source"] == "paper"
        (fill,) = fill_rows(db)
        assert fill[0].startswith(f"stop loss|{TICKER}#paper-0001|")
        sold = (TICKER, "YES", "sell", 50_000_000, 200_000, 560_000, "rule", "paper-0001")
        assert fill[1:] == sold  # 50 contracts at 20¢, a 56¢ fee
        (body,) = stop_loss_bodies(db)
        assert body.endswith(f" · {CLOSED}")
        closed_text = trades_path.read_bytes()

        async def restarted(sim: SimulatedExchange) -> None:
            await sim.wait_connected(2, timeout=WAIT)
            sim.set_quote(TICKER, yes_bid="0.1000", yes_ask="0.1200", last="0.1100")
            await asyncio.sleep(0.5)

        await run_service(tmp_path, sim, key, restarted)
    assert trades_path.read_bytes() == closed_text
    assert len(fill_rows(db)) == 1 and len(stop_loss_bodies(db)) == 1

    capsys.readouterr()
    assert await asyncio.to_thread(main, cli(tmp_path, "replay")) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "stop loss: " in line and line.endswith("(would close 50 YES at 20¢)")
    assert trades_path.read_bytes() == closed_text
    assert len(fill_rows(db)) == 1 and len(stop_loss_bodies(db)) == 1

    assert await asyncio.to_thread(main, cli(tmp_path, "status")) == 0
    out = capsys.readouterr().out.splitlines()
    assert "realized P&L -$11.40 (1 closed), unrealized P&L not known yet" in out


class Offline:
    """Kalshi out of reach: a rule's close needs no quote, and its fee's series multiplier
    falls back to 1."""

    async def get_market(self, ticker: str) -> RestMarket:
        raise RestError(f"offline: {ticker}")

    async def get_orderbook(self, ticker: str, *, depth: int = 0) -> RestOrderbook:
        raise RestError(f"offline: {ticker}")

    async def get_event(self, event_ticker: str) -> RestEvent:
        raise RestError(f"offline: {event_ticker}")

    async def get_series(self, series_ticker: str) -> RestSeries:
        raise RestError(f"offline: {series_ticker}")


async def test_the_same_close_decided_again_records_no_second_fill(tmp_path: Path) -> None:
    """The desk records a rule's fill under the alert's key: the same alert acted on again (a
    second instance, a retry) adds no fill, says nothing more, and leaves trades.json as the
    first close wrote it."""
    trades_path = tmp_path / "trades.json"
    trades_path.write_text(json.dumps({"trades": [ENTRY]}, indent=2))
    backend = open_backend(tmp_path / "w.db")
    fills = await backend.paper_fills()
    try:
        desk = PaperDesk(trades_path=trades_path, rest=Offline(), fills=fills)
        first = await act_on(alert(), desk)
        assert first.body.endswith(f" · {CLOSED}")
        closed_text = trades_path.read_bytes()
        again = await act_on(alert(), desk)
        assert again == alert()  # done before under this key: nothing more to say
        assert trades_path.read_bytes() == closed_text
        assert len(await fills.recent()) == 1
    finally:
        await fills.close()


def test_the_portfolio_after_a_close_watches_nothing_more() -> None:
    """A closed entry is not watched: the live run stops evaluating it once it reloads."""
    trades = {"trades": [ENTRY | {"status": "CLOSED", "closed_at": "2026-01-15T15:00:00Z"}]}
    portfolio = parse_positions(json.dumps(trades))
    assert portfolio.watched() == () and isinstance(portfolio, Portfolio)


async def test_a_close_recorded_but_never_written_is_completed_not_made_again(
    tmp_path: Path,
) -> None:
    """The process died after the fill was recorded and before trades.json was written: when
    the rule fires again (a new tick, a new key), the recorded close is written at its
    recorded price and no second fill is made."""
    trades_path = tmp_path / "trades.json"
    trades_path.write_text(json.dumps({"trades": [ENTRY]}, indent=2))
    backend = open_backend(tmp_path / "w.db")
    fills = await backend.paper_fills()
    try:
        desk = PaperDesk(trades_path=trades_path, rest=Offline(), fills=fills)
        before = trades_path.read_bytes()
        first = await act_on(alert(), desk)
        recorded = await fills.recent()
        trades_path.write_bytes(before)  # as if the write never happened
        again = await act_on(replace(alert(), key="stop loss|later-tick"), desk)
        assert again.body.endswith(f" · {CLOSED}") and first.body.endswith(f" · {CLOSED}")
        assert await fills.recent() == recorded  # completed, not made again
        (entry,) = json.loads(trades_path.read_text())["trades"]
        assert entry["status"] == "CLOSED" and entry["id"] == recorded[0].position_id
    finally:
        await fills.close()
