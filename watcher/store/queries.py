"""Read-side helpers over a read-only connection (the CLI's ``status``, ``history``, ``replay``).

Every function is synchronous and takes a connection from
``open_database(path, readonly=True)``; in WAL mode none of them blocks the writer. Rows come
back as frozen dataclasses holding the exact ``_e6`` integers; ``to_json()`` renders them for
people and machines with dollars and contracts as exact decimal strings (``"0.45"``,
``"136.00"``), never floats.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from watcher.kalshi.fixed import MICROS_PER_UNIT
from watcher.kalshi.messages import RestMarket
from watcher.store.schema import TABLES

__all__ = [
    "MarketRow",
    "TickerRow",
    "TradeRow",
    "count_rows",
    "decimal_text",
    "get_market",
    "iter_ticks",
    "iter_trades",
    "latest_ticker",
    "service_state",
    "tick_history",
    "trade_history",
]

_TICKER_COLUMNS = (
    "market_ticker, ts_ms, received_ms, price_e6, yes_bid_e6, yes_ask_e6, yes_bid_size_e6,"
    " yes_ask_size_e6, last_trade_size_e6, volume_e6, open_interest_e6, dollar_volume,"
    " dollar_open_interest"
)
_TRADE_COLUMNS = (
    "trade_id, market_ticker, ts_ms, received_ms, yes_price_e6, no_price_e6, count_e6,"
    " taker_side, is_block_trade, late"
)
_MARKET_COLUMNS = "market_ticker, title, status, close_time_ms, result, updated_ms"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def decimal_text(micros: int | None, places: int = 2) -> str | None:
    """Render micro-units as an exact decimal string with at least ``places`` decimals.

    ``450000`` → ``"0.45"``, ``455000`` → ``"0.455"``, ``136000000`` → ``"136.00"``.
    """
    if micros is None:
        return None
    value = Decimal(micros) / MICROS_PER_UNIT
    minimum = Decimal(1).scaleb(-places)
    if value == value.quantize(minimum):
        return f"{value.quantize(minimum):f}"
    return f"{value.normalize():f}"


@dataclass(frozen=True, slots=True)
class TickerRow:
    """One stored ``ticker`` update; prices in micro-dollars, sizes in micro-contracts."""

    market_ticker: str
    ts_ms: int
    received_ms: int
    price_e6: int | None
    yes_bid_e6: int | None
    yes_ask_e6: int | None
    yes_bid_size_e6: int | None
    yes_ask_size_e6: int | None
    last_trade_size_e6: int | None
    volume_e6: int | None
    open_interest_e6: int | None
    dollar_volume: int | None
    dollar_open_interest: int | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: prices as dollar strings, sizes as contract strings."""
        return {
            "market_ticker": self.market_ticker,
            "ts_ms": self.ts_ms,
            "received_ms": self.received_ms,
            "price_dollars": decimal_text(self.price_e6),
            "yes_bid_dollars": decimal_text(self.yes_bid_e6),
            "yes_ask_dollars": decimal_text(self.yes_ask_e6),
            "yes_bid_size": decimal_text(self.yes_bid_size_e6),
            "yes_ask_size": decimal_text(self.yes_ask_size_e6),
            "last_trade_size": decimal_text(self.last_trade_size_e6),
            "volume": decimal_text(self.volume_e6),
            "open_interest": decimal_text(self.open_interest_e6),
            "dollar_volume": self.dollar_volume,
            "dollar_open_interest": self.dollar_open_interest,
        }


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One stored public trade; ``late`` marks a trade backfilled over REST after a gap."""

    trade_id: str
    market_ticker: str
    ts_ms: int
    received_ms: int
    yes_price_e6: int
    no_price_e6: int
    count_e6: int
    taker_side: str | None
    is_block_trade: bool | None
    late: bool

    @classmethod
    def from_sql(cls, row: tuple[Any, ...]) -> TradeRow:
        """Build from a ``SELECT`` of the trade columns (SQLite integers back to booleans)."""
        trade_id, market, ts_ms, received_ms, yes_e6, no_e6, count_e6, side, block, late = row
        return cls(
            trade_id=trade_id,
            market_ticker=market,
            ts_ms=ts_ms,
            received_ms=received_ms,
            yes_price_e6=yes_e6,
            no_price_e6=no_e6,
            count_e6=count_e6,
            taker_side=side,
            is_block_trade=None if block is None else bool(block),
            late=bool(late),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: prices as dollar strings, the count as a contract string."""
        return {
            "trade_id": self.trade_id,
            "market_ticker": self.market_ticker,
            "ts_ms": self.ts_ms,
            "received_ms": self.received_ms,
            "yes_price_dollars": decimal_text(self.yes_price_e6),
            "no_price_dollars": decimal_text(self.no_price_e6),
            "count": decimal_text(self.count_e6),
            "taker_side": self.taker_side,
            "is_block_trade": self.is_block_trade,
            "late": self.late,
        }


@dataclass(frozen=True, slots=True)
class MarketRow:
    """Market metadata the WebSocket does not report (from REST or lifecycle events).

    When written, ``None`` fields keep the value already stored for that market, and
    ``updated_ms`` 0 (the default) stands for the time of writing.
    """

    market_ticker: str
    title: str | None = None
    status: str | None = None
    close_time_ms: int | None = None
    result: str | None = None
    updated_ms: int = 0

    @classmethod
    def from_rest(cls, market: RestMarket, *, updated_ms: int) -> MarketRow:
        """Build from a REST ``GET /markets/{ticker}`` body; ``close_time`` is RFC 3339.

        Raises:
            ValueError: ``close_time`` is not an RFC 3339 timestamp.
        """
        close_ms = None
        if market.close_time:
            parsed = datetime.fromisoformat(market.close_time.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            close_ms = (parsed - _EPOCH) // timedelta(milliseconds=1)
        return cls(
            market_ticker=market.ticker,
            title=market.title,
            status=market.status,
            close_time_ms=close_ms,
            result=market.result or None,
            updated_ms=updated_ms,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the row."""
        return {
            "market_ticker": self.market_ticker,
            "title": self.title,
            "status": self.status,
            "close_time_ms": self.close_time_ms,
            "result": self.result,
            "updated_ms": self.updated_ms,
        }


# Public functions


def latest_ticker(conn: sqlite3.Connection, ticker: str) -> TickerRow | None:
    """The newest ticker update of a market (by ``ts_ms``, then arrival), or ``None``."""
    row = conn.execute(
        f"SELECT {_TICKER_COLUMNS} FROM tickers WHERE market_ticker = ?"
        " ORDER BY ts_ms DESC, id DESC LIMIT 1",
        (ticker,),
    ).fetchone()
    return None if row is None else TickerRow(*row)


def tick_history(
    conn: sqlite3.Connection, ticker: str, *, since_ms: int | None = None, limit: int = 100
) -> list[TickerRow]:
    """Ticker updates of a market at or after ``since_ms``, newest first, at most ``limit``."""
    rows = conn.execute(
        f"SELECT {_TICKER_COLUMNS} FROM tickers WHERE market_ticker = ? AND ts_ms >= ?"
        " ORDER BY ts_ms DESC, id DESC LIMIT ?",
        (ticker, _since(since_ms), limit),
    )
    return [TickerRow(*row) for row in rows]


def trade_history(
    conn: sqlite3.Connection, ticker: str, *, since_ms: int | None = None, limit: int = 100
) -> list[TradeRow]:
    """Trades of a market at or after ``since_ms``, newest first, at most ``limit``."""
    rows = conn.execute(
        f"SELECT {_TRADE_COLUMNS} FROM trades WHERE market_ticker = ? AND ts_ms >= ?"
        " ORDER BY ts_ms DESC, id DESC LIMIT ?",
        (ticker, _since(since_ms), limit),
    )
    return [TradeRow.from_sql(row) for row in rows]


def iter_ticks(
    conn: sqlite3.Connection,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    markets: Collection[str] | None = None,
) -> Iterator[TickerRow]:
    """Ticker updates in time order (for replay), lazily.

    Args:
        conn: a read-only connection.
        since_ms: first ``ts_ms`` included (``None``: from the beginning).
        until_ms: ``ts_ms`` excluded from here on (``None``: to the end).
        markets: market tickers to include (``None``: all markets).
    """
    sql, params = _range_query("tickers", _TICKER_COLUMNS, since_ms, until_ms, markets)
    for row in conn.execute(sql, params):
        yield TickerRow(*row)


def iter_trades(
    conn: sqlite3.Connection,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    markets: Collection[str] | None = None,
) -> Iterator[TradeRow]:
    """Trades in time order (for replay), lazily; arguments as in :func:`iter_ticks`."""
    sql, params = _range_query("trades", _TRADE_COLUMNS, since_ms, until_ms, markets)
    for row in conn.execute(sql, params):
        yield TradeRow.from_sql(row)


def get_market(conn: sqlite3.Connection, ticker: str) -> MarketRow | None:
    """The stored metadata of a market, or ``None``."""
    row = conn.execute(
        f"SELECT {_MARKET_COLUMNS} FROM markets WHERE market_ticker = ?", (ticker,)
    ).fetchone()
    return None if row is None else MarketRow(*row)


def count_rows(conn: sqlite3.Connection, table: str) -> int:
    """The number of rows in one of the schema's tables.

    Raises:
        ValueError: ``table`` is not a table of the schema.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table: {table!r}")
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def service_state(conn: sqlite3.Connection) -> dict[str, str]:
    """Every ``service_state`` key and its value."""
    return dict(conn.execute("SELECT key, value FROM service_state ORDER BY key"))


# Private functions


def _since(since_ms: int | None) -> int:
    return -(2**63) if since_ms is None else since_ms


def _range_query(
    table: str,
    columns: str,
    since_ms: int | None,
    until_ms: int | None,
    markets: Collection[str] | None,
) -> tuple[str, list[Any]]:
    where = ["ts_ms >= ?"]
    params: list[Any] = [_since(since_ms)]
    if until_ms is not None:
        where.append("ts_ms < ?")
        params.append(until_ms)
    if markets is not None:
        names = sorted(set(markets))
        where.append(f"market_ticker IN ({', '.join('?' * len(names))})")
        params.extend(names)
    sql = f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)} ORDER BY ts_ms, id"
    return sql, params
