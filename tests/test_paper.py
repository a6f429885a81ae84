"""Paper orders (watcher.service.paper) against the simulator's quotes, with real files and SQLite.

Every test runs the desk over loopback against a pinned simulated market and writes a real
trades.json and a real database; the fills are read back from `paper_fills`. Fee arithmetic is
worked by hand in the comments (round_up_to_the_cent(0.07 × C × P × (1 − P))).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.domain.paper import Level, Quote, best_level, book_levels, fill_order
from watcher.errors import PaperError
from watcher.kalshi.fixed import parse_micros
from watcher.kalshi.frames import Ticker
from watcher.kalshi.payloads import TickerMsg
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.kalshi.sim.market import SimMarketSpec
from watcher.service.paper import PaperDesk, buy_text, close_text
from watcher.store import open_backend
from watcher.store.ports import PaperFills
from watcher.store.writer import StoreWriter

from .support import KEY_ID, env_without_kalshi, write_key

D = Decimal
T = "KXCPI-26JAN-T0.3"
T2 = "KXFED-26DEC-H0"


def set_book(
    sim: SimulatedExchange, ticker: str, *, yes: dict[str, str], no: dict[str, str]
) -> None:
    """Script the simulator's bids: YES bids and NO bids (NO-leg prices), dollars → contracts."""
    market = sim.market(ticker)
    market.book_yes = {parse_micros(p): parse_micros(s) for p, s in yes.items()}
    market.book_no = {parse_micros(p): parse_micros(s) for p, s in no.items()}


def quote(sim: SimulatedExchange, ticker: str, bid: str, ask: str, size: str = "100") -> None:
    """Pin YES bid/ask with `size` contracts at each best price (NO bids at 1 − ask)."""
    sim.set_quote(ticker, yes_bid=bid, yes_ask=ask)
    no_bid = f"{1 - D(ask):.4f}"
    set_book(sim, ticker, yes={bid: size}, no={no_bid: size})


@dataclass
class Desk:
    desk: PaperDesk
    sim: SimulatedExchange
    fills: PaperFills
    trades: Path
    db: Path

    def entries(self) -> list[dict[str, Any]]:
        return list(json.loads(self.trades.read_text())["trades"])


@contextlib.asynccontextmanager
async def open_desk(
    sim: SimulatedExchange, tmp_path: Path, *, with_stream: bool = False, **options: Any
) -> AsyncIterator[Desk]:
    db = tmp_path / "w.db"
    backend = open_backend(db)
    fills = await backend.paper_fills()
    model = await backend.read_model() if with_stream else None
    try:
        async with KalshiRestClient(sim.api_url) as rest:
            desk = PaperDesk(
                trades_path=tmp_path / "trades.json",
                rest=rest,
                fills=fills,
                read_model=model,
                **options,
            )
            yield Desk(desk, sim, fills, tmp_path / "trades.json", db)
    finally:
        await fills.close()
        if model is not None:
            await model.close()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedExchange]:
    spec = {T: SimMarketSpec(yes_bid="0.4500", yes_ask="0.4700", pinned=True)}
    async with SimulatedExchange(markets=spec, seed=1) as exchange:
        quote(exchange, T, "0.4500", "0.4700")
        quote(exchange, T2, "0.2000", "0.2200")
        yield exchange


@pytest.fixture
async def paper(sim: SimulatedExchange, tmp_path: Path) -> AsyncIterator[Desk]:
    async with open_desk(sim, tmp_path) as desk:
        yield desk


# Buying and selling each side


async def test_buying_yes_pays_the_yes_ask_and_appends_a_pending_entry(paper: Desk) -> None:
    """A YES buy fills at the YES ask, pays the taker fee, and appends the issue's entry."""
    result = await paper.desk.buy(T, "yes", 10)
    assert result.fill.price == D("0.47")
    assert result.fee == D("0.18")  # 0.07 × 10 × 0.47 × 0.53 = 0.17437 → 0.18
    assert buy_text(result) == f"bought 10 YES {T} at 47¢ (fee $0.18)"
    [entry] = paper.entries()
    assert entry | {"opened_at": "?"} == {
        "id": result.position_id,
        "ticker": T,
        "side": "YES",
        "contracts": 10,
        "entry_price_dollars": "0.4700",
        "fees_dollars": "0.18",
        "status": "PENDING",
        "opened_at": "?",
        "source": "paper",
    }
    assert entry["opened_at"].endswith("Z") and entry["opened_at"][10] == "T"
    [fill] = await paper.fills.recent()
    assert (fill.position_id, fill.side, fill.action, fill.source) == (
        result.position_id,
        "YES",
        "buy",
        "cli",
    )
    assert (fill.contracts, fill.price_dollars, fill.fee_dollars) == (D(10), D("0.47"), D("0.18"))


async def test_buying_no_pays_one_dollar_minus_the_yes_bid(paper: Desk) -> None:
    """NO ask = $1 − YES bid: with YES 45¢/47¢ a NO costs 55¢."""
    result = await paper.desk.buy(T, "NO", 10)
    assert (result.fill.side, result.fill.price, result.fee) == ("NO", D("0.55"), D("0.18"))
    assert paper.entries()[0]["entry_price_dollars"] == "0.5500"


async def test_closing_yes_sells_at_the_yes_bid_after_both_fees(paper: Desk) -> None:
    """A full close sets CLOSED, the exit price and fee, and realized P&L after fees."""
    bought = await paper.desk.buy(T, "yes", 10)
    quote(paper.sim, T, "0.5000", "0.5200")
    result = await paper.desk.close(bought.position_id)
    # exit fee 0.07 × 10 × 0.5 × 0.5 = 0.175 → 0.18; (0.50 − 0.47) × 10 − 0.18 − 0.18 = −0.06
    assert (result.fill.price, result.exit_fee, result.realized) == (
        D("0.50"),
        D("0.18"),
        D("-0.06"),
    )
    assert close_text(result) == f"closed 10 YES {T} at 50¢: realized -$0.06 after $0.36 fees"
    [entry] = paper.entries()
    assert entry["status"] == "CLOSED"
    assert (entry["exit_price_dollars"], entry["exit_fees_dollars"]) == ("0.5000", "0.18")
    assert entry["realized_pnl_dollars"] == "-0.06"
    assert entry["closed_at"].endswith("Z")
    assert paper.trades.with_name("trades.json.bak").exists()
    sell, _buy = await paper.fills.recent()
    assert (sell.action, sell.price_dollars, sell.fee_dollars) == ("sell", D("0.5"), D("0.18"))


async def test_closing_no_sells_at_one_dollar_minus_the_yes_ask(paper: Desk) -> None:
    """NO bid = $1 − YES ask: with YES 40¢/42¢ a NO sells for 58¢."""
    bought = await paper.desk.buy(T, "no", 20)  # at 55¢: 0.07 × 20 × 0.2475 = 0.3465 → 0.35
    assert bought.fee == D("0.35")
    quote(paper.sim, T, "0.4000", "0.4200")
    result = await paper.desk.close(T)  # one open position in T: the ticker names it
    # exit fee 0.07 × 20 × 0.58 × 0.42 = 0.34104 → 0.35; 0.03 × 20 − 0.35 − 0.35 = −0.10
    assert (result.fill.price, result.exit_fee, result.realized) == (
        D("0.58"),
        D("0.35"),
        D("-0.10"),
    )


# Limits, depth, refusals


async def test_a_buy_limit_below_the_ask_is_refused_and_nothing_is_written(paper: Desk) -> None:
    """--limit 46 with the ask at 47¢: refused with a clear message, no file, no fill."""
    with pytest.raises(PaperError, match=r"limit 46¢ cannot fill: the best YES price is 47¢"):
        await paper.desk.buy(T, "yes", 10, limit_cents=46)
    assert not paper.trades.exists()
    assert await paper.fills.recent() == []
    at_limit = await paper.desk.buy(T, "yes", 10, limit_cents="47")
    assert at_limit.fill.price == D("0.47")


async def test_a_sell_limit_above_the_bid_is_refused(paper: Desk) -> None:
    """A close never fills below its limit; the position stays open and untouched."""
    bought = await paper.desk.buy(T, "yes", 10)
    before = paper.trades.read_bytes()
    with pytest.raises(PaperError, match="limit 46¢ cannot fill: the best YES price is 45¢"):
        await paper.desk.close(bought.position_id, limit_cents=46)
    assert paper.trades.read_bytes() == before


async def test_a_large_buy_walks_the_order_book_to_an_exact_average(paper: Desk) -> None:
    """30 contracts over asks 47¢ ×10, 48¢ ×15, 50¢ ×5 average 48¢; one fee on the sum."""
    set_book(
        paper.sim, T, yes={"0.4500": "100"}, no={"0.5300": "10", "0.5200": "15", "0.5000": "100"}
    )
    result = await paper.desk.buy(T, "yes", 30)
    assert result.fill.parts == ((D("0.47"), D(10)), (D("0.48"), D(15)), (D("0.50"), D(5)))
    assert result.fill.price == D("0.48")  # (4.70 + 7.20 + 2.50) / 30 = 14.40 / 30
    assert result.fill.depth_checked
    # 0.07 × (2.491 + 3.744 + 1.25) = 0.52395 → 0.53
    assert result.fee == D("0.53")
    assert buy_text(result) == f"bought 30 YES {T} at 48¢ (fee $0.53; average of 3 levels)"


async def test_a_walk_that_cannot_fill_within_the_limit_fills_nothing(paper: Desk) -> None:
    """Only 25 contracts are offered at 48¢ or less: a 30-lot with --limit 48 is refused whole."""
    set_book(
        paper.sim, T, yes={"0.4500": "100"}, no={"0.5300": "10", "0.5200": "15", "0.5000": "100"}
    )
    with pytest.raises(
        PaperError, match="only 25 of 30 YES contracts are offered within the limit 48¢"
    ):
        await paper.desk.buy(T, "yes", 30, limit_cents=48)
    assert not paper.trades.exists()


async def test_an_average_that_does_not_terminate_is_rounded_against_the_buyer(paper: Desk) -> None:
    """1 at 47¢ and 2 at 48¢ average 47.6666…¢: written as 0.476667 (up, for a buy)."""
    set_book(paper.sim, T, yes={"0.4500": "100"}, no={"0.5300": "1", "0.5200": "5"})
    result = await paper.desk.buy(T, "yes", 3)
    assert (result.fill.cost, result.fill.price, result.fill.is_rounded) == (
        D("1.43"),
        D("0.476667"),
        True,
    )
    assert paper.entries()[0]["entry_price_dollars"] == "0.476667"


async def test_without_a_size_at_the_best_price_depth_is_not_checked(paper: Desk) -> None:
    """A quote whose best level has no size fills whole at the best price, and says so."""
    set_book(paper.sim, T, yes={"0.4500": "100"}, no={})
    result = await paper.desk.buy(T, "yes", 500)
    assert (result.fill.price, result.fill.depth_checked) == (D("0.47"), False)
    assert buy_text(result).endswith("(fee $8.72; depth not checked)")  # 0.07 × 500 × 0.2491


async def test_closed_settled_and_unknown_markets_are_refused(
    sim: SimulatedExchange, tmp_path: Path
) -> None:
    """No quote or a market that does not trade: a clear error, nothing written."""
    await sim.create_market(
        "KXOLD-1", SimMarketSpec(status="closed", yes_bid="0.1000", yes_ask="0.1200")
    )
    async with open_desk(sim, tmp_path) as paper:
        with pytest.raises(PaperError, match="KXOLD-1 is closed: it does not trade"):
            await paper.desk.buy("KXOLD-1", "yes", 1)
        await sim.settle(T2, "yes")
        with pytest.raises(PaperError, match=f"{T2} is finalized"):
            await paper.desk.buy(T2, "no", 1)
        with pytest.raises(PaperError, match="market not found: KXUNKNOWN-1"):
            await paper.desk.buy("KXUNKNOWN-1", "yes", 1)
        assert not paper.trades.exists()
        assert await paper.fills.recent() == []


async def test_a_hand_edit_while_the_order_is_priced_refuses_the_order(
    sim: SimulatedExchange, tmp_path: Path
) -> None:
    """trades.json changed between reading and writing: refused, the hand edit kept, no fill."""
    trades = tmp_path / "trades.json"
    trades.write_text(
        '{"trades": [{"ticker": "KXA-1", "side": "yes", "entry_price": 40, "contracts": 1}]}\n'
    )
    edited = '{"trades": [{"ticker": "KXA-1", "side": "yes", "entry_price": 41, "contracts": 1}]}\n'

    def edit_by_hand() -> None:
        trades.write_text(edited)

    async with open_desk(sim, tmp_path, before_write=edit_by_hand) as paper:
        with pytest.raises(PaperError, match=r"trades\.json changed on disk since it was read"):
            await paper.desk.buy(T, "yes", 10)
        assert trades.read_text() == edited
        assert not trades.with_name("trades.json.bak").exists()
        assert await paper.fills.recent() == []


# Partial closes, ambiguity, exactly once


async def test_a_partial_close_splits_the_entry_and_its_fee(paper: Desk) -> None:
    """Selling 4 of 10 leaves 6 open with the rest of the fee; a CLOSED entry names its parent."""
    bought = await paper.desk.buy(T, "yes", 10)  # fee 0.18
    quote(paper.sim, T, "0.5000", "0.5200")
    result = await paper.desk.close(bought.position_id, contracts="4")
    # share of the entry fee 0.18 × 4/10 = 0.072 → 0.07; exit fee 0.07 × 4 × 0.25 = 0.07
    # realized (0.50 − 0.47) × 4 − 0.07 − 0.07 = −0.02
    assert (result.entry_fee, result.exit_fee, result.realized, result.remaining) == (
        D("0.07"),
        D("0.07"),
        D("-0.02"),
        D(6),
    )
    parent, closed = paper.entries()
    assert (parent["contracts"], parent["fees_dollars"], parent["status"]) == (6, "0.11", "PENDING")
    assert closed["parent_id"] == bought.position_id != closed["id"] == result.closed_id
    assert (closed["contracts"], closed["fees_dollars"], closed["status"]) == (4, "0.07", "CLOSED")
    assert (closed["entry_price_dollars"], closed["exit_price_dollars"]) == ("0.4700", "0.5000")
    assert closed["realized_pnl_dollars"] == "-0.02"
    rest = await paper.desk.close(bought.position_id)  # the other 6 carry the 0.11 left
    assert (rest.entry_fee, rest.remaining) == (D("0.11"), D(0))


async def test_a_ticker_with_two_open_positions_asks_for_an_id(paper: Desk) -> None:
    """Closing by ticker is ambiguous when two entries are open in it."""
    first = await paper.desk.buy(T, "yes", 1)
    second = await paper.desk.buy(T, "no", 1)
    with pytest.raises(
        PaperError,
        match=rf"{T} has 2 open positions \({first.position_id}, {second.position_id}\): give",
    ):
        await paper.desk.close(T)
    with pytest.raises(PaperError, match="cannot sell 5 contracts"):
        await paper.desk.close(first.position_id, contracts=5)


async def test_a_rule_close_happens_exactly_once_per_key(paper: Desk) -> None:
    """close_position records the fill first; the same key again does nothing."""
    bought = await paper.desk.buy(T, "yes", 50)  # 0.07 × 50 × 0.2491 = 0.87185 → 0.88
    scope = f"{T}#{bought.position_id}"
    closed = await paper.desk.close_position(scope, price_micros=200_000, fill_key="stop|k1")
    assert closed is not None
    # exit fee 0.07 × 50 × 0.2 × 0.8 = 0.56; (0.20 − 0.47) × 50 − 0.88 − 0.56 = −14.94
    assert (closed.exit_fee, closed.realized) == (D("0.56"), D("-14.94"))
    assert close_text(closed, ticker=False).startswith(
        "closed 50 YES at 20¢: realized -$14.94 after $1.44 fees"
    )
    after = paper.trades.read_bytes()
    again = await paper.desk.close_position(
        bought.position_id, price_micros=200_000, fill_key="stop|k1"
    )
    assert again is None
    assert paper.trades.read_bytes() == after
    sources = [(f.action, f.source) for f in await paper.fills.recent()]
    assert sources == [("sell", "rule"), ("buy", "cli")]


async def test_a_rule_close_reapplies_itself_over_a_hand_edit(
    sim: SimulatedExchange, tmp_path: Path
) -> None:
    """A rule's close is recorded, so when the file changes meanwhile it is applied again on
    top of the new text: the hand edit is kept, never overwritten."""
    trades = tmp_path / "trades.json"
    trades.write_text(
        json.dumps({"trades": [{"ticker": T, "side": "no", "entry_cents": 60, "quantity": 5}]})
    )
    edits: list[int] = []

    def edit_once() -> None:
        if not edits:
            data = json.loads(trades.read_text())
            data["trades"][0]["note"] = "mine"
            trades.write_text(json.dumps(data, indent=2))
            edits.append(1)

    async with open_desk(sim, tmp_path, before_write=edit_once) as paper:
        # The entry has no id: the rule names it by its scope TICKER#N; it gets an id.
        result = await paper.desk.close_position(f"{T}#1", price_micros=550_000, fill_key="k")
        assert result is not None
        [entry] = paper.entries()
        assert entry["note"] == "mine" and entry["status"] == "CLOSED"
        assert entry["id"] == result.position_id and entry["quantity"] == 5
        # exit fee 0.07 × 5 × 0.55 × 0.45 = 0.086625 → 0.09; (0.55 − 0.60) × 5 − 0 − 0.09 = −0.34
        assert entry["realized_pnl_dollars"] == "-0.34"
        [fill] = await paper.fills.recent()
        assert (fill.position_id, fill.side, fill.source) == (result.position_id, "NO", "rule")


# Quotes: stream or REST


async def store_quote(db: Path, *, bid: str, ask: str, received_ms: int) -> None:
    msg = TickerMsg(
        market_ticker=T,
        price_dollars=D(bid),
        yes_bid_dollars=D(bid),
        yes_ask_dollars=D(ask),
        yes_bid_size_fp=D(100),
        yes_ask_size_fp=D(100),
        ts_ms=received_ms,
    )
    async with StoreWriter(db) as writer:
        await writer.put(Ticker(msg=msg), received_ms)


async def test_a_fresh_streamed_quote_is_used_and_a_stale_one_falls_back_to_rest(
    sim: SimulatedExchange, tmp_path: Path
) -> None:
    """The service's latest row under 10 s old is the quote; older, REST's is."""
    now = time.time()
    async with open_desk(sim, tmp_path, with_stream=True, clock=lambda: now) as paper:
        await store_quote(
            paper.db, bid="0.3000", ask="0.3200", received_ms=int(now * 1000) - 11_000
        )
        stale = await paper.desk.board.quote(T)
        assert (stale.source, stale.yes_ask) == ("rest", D("0.47"))
        await store_quote(paper.db, bid="0.3000", ask="0.3200", received_ms=int(now * 1000) - 2_000)
        result = await paper.desk.buy(T, "yes", 10)
        assert result.fill.price == D("0.32")  # the stream's ask, not the simulator's 47¢


# paper list


async def test_paper_list_scores_open_and_closed_positions(paper: Desk) -> None:
    """Totals: realized after fees, unrealized at the bid after both fees, fees paid, win rate."""
    quote(paper.sim, T, "0.4500", "0.4700")
    won = await paper.desk.buy(T, "yes", 10)  # 47¢, fee 0.18
    quote(paper.sim, T, "0.6000", "0.6200")
    # exit fee 0.07 × 10 × 0.6 × 0.4 = 0.168 → 0.17; realized 1.30 − 0.18 − 0.17 = 0.95
    await paper.desk.close(won.position_id)
    await paper.desk.buy(T, "no", 10)  # NO ask 40¢: 0.07 × 10 × 0.24 = 0.168 → 0.17
    book = await paper.desk.positions()
    # open NO at its bid 1 − 0.62 = 0.38: (0.38 − 0.40) × 10 − 0.17 − 0.17 (exit fee) = −0.54
    assert (book.realized, book.unrealized, book.fees) == (D("0.95"), D("-0.54"), D("0.52"))
    assert (book.wins, book.done, book.win_rate, book.unpriced) == (1, 1, D(1), 0)
    assert [line.status for line in book.lines] == ["CLOSED", "PENDING"]
    assert book.to_json()["win_rate"] == "1.0000"


# Pure fill math


def test_book_levels_turn_bids_into_the_prices_each_order_takes() -> None:
    """Buying YES takes NO bids as 1 − price; selling NO hits NO bids highest first."""
    yes_bids = [(D("0.40"), D(5)), (D("0.45"), D(10))]
    no_bids = [(D("0.50"), D(7)), (D("0.53"), D(3))]
    assert book_levels("YES", "buy", yes_bids=yes_bids, no_bids=no_bids) == [
        Level(D("0.47"), D(3)),
        Level(D("0.50"), D(7)),
    ]
    assert book_levels("NO", "buy", yes_bids=yes_bids, no_bids=no_bids)[0] == Level(
        D("0.55"), D(10)
    )
    assert book_levels("YES", "sell", yes_bids=yes_bids, no_bids=no_bids)[0] == Level(
        D("0.45"), D(10)
    )
    assert book_levels("NO", "sell", yes_bids=yes_bids, no_bids=no_bids)[0] == Level(
        D("0.53"), D(3)
    )


def test_a_sell_walks_down_and_rounds_its_average_down() -> None:
    """A sell's non-terminating average is rounded down: never in the trader's favour."""
    levels = [Level(D("0.45"), D(1)), Level(D("0.44"), D(5))]
    fill = fill_order(levels, D(3), side="YES", action="sell")
    assert (fill.cost, fill.price) == (D("1.33"), D("0.443333"))
    with pytest.raises(PaperError, match="only 1 of 3"):
        fill_order(levels, D(3), side="YES", action="sell", limit=D("0.45"))


def test_a_quote_without_the_side_refuses_the_order() -> None:
    """No YES ask (an empty side) means nothing to buy at."""
    empty = Quote(ticker=T, yes_bid=D("0.45"), yes_ask=None)
    with pytest.raises(PaperError, match=f"{T} has no YES ask to buy at"):
        best_level(empty, "YES", "buy")
    assert best_level(empty, "NO", "buy").price == D("0.55")


# The command line


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "watcher.cli", "paper", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_paper_commands_buy_refuse_close_and_list(tmp_path: Path) -> None:
    """`watcher paper` signs its REST calls with the user's key, reads the fee rate from rules.yaml,
    exits 1 with the reason on a refused order (nothing written), and lists the score."""
    key = ed25519.Ed25519PrivateKey.generate()
    spec = {T: SimMarketSpec(yes_bid="0.4500", yes_ask="0.4700", pinned=True)}
    async with SimulatedExchange(markets=spec, public_keys={KEY_ID: key.public_key()}) as sim:
        quote(sim, T, "0.4500", "0.4700")
        (tmp_path / "rules.yaml").write_text('version: 1\nfees: {taker_rate: "0.035"}\n')
        env = env_without_kalshi(
            KALSHI_API_URL=sim.api_url,
            KALSHI_API_KEY_ID=KEY_ID,
            KALSHI_PRIVATE_KEY_PATH=str(write_key(tmp_path / "key.pem", key)),
        )
        files = ["--trades", str(tmp_path / "trades.json"), "--db", str(tmp_path / "w.db"),
                 "--rules", str(tmp_path / "rules.yaml")]  # fmt: skip
        code, out, err = await run_cli(
            env, "buy", T, "--side", "yes", "--qty", "10", "--limit", "46", *files
        )
        assert (code, out) == (1, "")
        assert "limit 46¢ cannot fill" in err and not (tmp_path / "trades.json").exists()
        code, out, err = await run_cli(env, "buy", T, "--side", "yes", "--qty", "10", *files)
        # 0.035 × 10 × 0.47 × 0.53 = 0.087185 → 0.09
        assert (code, out) == (0, f"bought 10 YES {T} at 47¢ (fee $0.09)\n"), err
        code, out, err = await run_cli(env, "close", T, "--qty", "4", *files)
        # exit 45¢: fee 0.035 × 4 × 0.2475 = 0.03465 → 0.04; entry share 0.09 × 0.4 = 0.036 → 0.04
        # realized (0.45 − 0.47) × 4 − 0.04 − 0.04 = −0.16
        assert (code, out) == (
            0,
            f"closed 4 YES {T} at 45¢: realized -$0.16 after $0.08 fees; 6 still open\n",
        ), err
        code, out, err = await run_cli(env, "list", "--json", *files)
        assert code == 0, err
        listed = json.loads(out)
        assert (listed["realized"], listed["closed"], listed["wins"]) == ("-0.16", 1, 0)
        code, out, err = await run_cli(env, "list", *files)
        assert code == 0 and "realized -$0.16" in out.splitlines()[-1], err
