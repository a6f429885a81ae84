"""Frames to rows and multi-row inserts (watcher.store.rows), and the writer's batch order."""

from __future__ import annotations

import contextlib
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.kalshi import messages as m
from watcher.store import rows
from watcher.store.rows import COLUMNS, ROWS_PER_STATEMENT, insert_rows, row_for
from watcher.store.schema import open_database
from watcher.store.writer import StoreWriter


def ticker_row(market: str, n: int) -> tuple[object, ...]:
    values: list[object] = [market, n, n, 450_000, 440_000, 460_000]
    return tuple(values + [None] * (len(COLUMNS["tickers"]) - len(values)))


def trade_row(trade_id: str, n: int) -> tuple[object, ...]:
    return (trade_id, "KXA", n, n, 450_000, 550_000, 1_000_000, "yes", 0, 0)


def make_ticker(market: str, n: int, price: str = "0.4500") -> m.Ticker:
    msg = m.TickerMsg(
        market_ticker=market,
        price_dollars=Decimal(price),
        yes_bid_dollars=Decimal("0.44"),
        yes_ask_dollars=Decimal("0.46"),
        volume_fp=Decimal("136.00"),
        ts_ms=n,
    )
    return m.Ticker(sid=1, msg=msg)


@pytest.fixture
def conn(tmp_path: Path):
    connection = open_database(tmp_path / "w.db")
    yield connection
    connection.close()


@pytest.mark.parametrize("count", [1, 7, ROWS_PER_STATEMENT, 2 * ROWS_PER_STATEMENT + 345])
def test_insert_rows_stores_every_row_once_in_the_given_order(conn, count):
    """Full chunks and power-of-two remainders together write each row once, in order."""
    batch = [ticker_row("KXA", n) for n in range(count)]
    conn.execute("BEGIN")
    assert insert_rows(conn, "tickers", batch) == count
    conn.execute("COMMIT")
    stored = [r[0] for r in conn.execute("SELECT ts_ms FROM tickers ORDER BY id")]
    assert stored == list(range(count))


def test_insert_rows_ignores_and_does_not_count_duplicate_trade_ids(conn):
    """A trade id already stored (or twice in one statement) is kept once and not counted."""
    conn.execute("BEGIN")
    assert insert_rows(conn, "trades", [trade_row("t1", 1), trade_row("t2", 2)]) == 2
    assert insert_rows(conn, "trades", [trade_row("t2", 3), trade_row("t3", 4)]) == 1
    assert insert_rows(conn, "trades", [trade_row("t4", 5), trade_row("t4", 6)]) == 1
    conn.execute("COMMIT")
    assert conn.execute("SELECT count(*) FROM trades").fetchone()[0] == 4


def test_insert_rows_respects_a_lower_parameter_limit(conn):
    """An SQLite that allows fewer parameters per statement gets smaller statements."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 7 ticker rows per statement
    conn.execute("BEGIN")
    assert insert_rows(conn, "tickers", [ticker_row("KXA", n) for n in range(50)]) == 50
    conn.execute("COMMIT")


@pytest.mark.parametrize(
    ("text", "micros"),
    [("0.4550", 455_000), ("-0.05", -50_000), ("136.00", 136_000_000), ("0.000001", 1), ("0", 0)],
)
def test_prices_become_exact_micro_units(text, micros):
    """Decimal prices and counts become exact integers in micro-units."""
    assert row_for(make_ticker("KXA", 1, price=text), 1)[1][3] == micros


@pytest.mark.parametrize(
    "text", ["0.0000001", "NaN", "sNaN", "Infinity", "1E+13", "9999999999999.5"]
)
def test_prices_that_cannot_be_stored_exactly_are_refused(text):
    """More than 6 decimals, non-finite values and values beyond int64 micros are refused,
    by the memoized price path too, every time (a refusal is never remembered as a value)."""
    with pytest.raises(ValueError):
        rows._e6(Decimal(text))
    for _ in range(2):
        with pytest.raises(ValueError):
            row_for(make_ticker("KXA", 1, price=text), 1)


def test_the_price_memo_is_exact_across_spellings_and_bounded():
    """0.45, 0.4500 and 0.450000 are one price; the memo never outgrows its bound."""
    spellings = ["0.45", "0.4500", "0.450000"]
    assert {row_for(make_ticker("KXA", 1, price=p), 1)[1][3] for p in spellings} == {450_000}
    for n in range(rows._MEMO_MAX + 10):
        price = f"0.{n:06d}"
        assert row_for(make_ticker("KXA", 1, price=price), 1)[1][3] == n
    assert len(rows._MEMO) <= rows._MEMO_MAX


async def test_writer_keeps_arrival_order_within_each_market(tmp_path):
    """A batch is written grouped by market, and each market's ticks keep their arrival order."""
    db = tmp_path / "w.db"
    async with StoreWriter(db) as writer:
        for n, market in enumerate(["KXB", "KXA", "KXB", "KXA", "KXC", "KXB"]):
            await writer.put(make_ticker(market, 100 - n), n)
    with contextlib.closing(sqlite3.connect(db)) as reader:
        found = reader.execute(
            "SELECT market_ticker, received_ms FROM tickers ORDER BY id"
        ).fetchall()
    by_market: dict[str, list[int]] = {}
    for market, received in found:
        by_market.setdefault(market, []).append(received)
    assert by_market == {"KXA": [1, 3], "KXB": [0, 2, 5], "KXC": [4]}
