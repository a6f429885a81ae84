"""Read-side helpers over a read-only connection (the CLI's ``status``, ``history``, ``replay``).

Every function is synchronous and takes a connection from
``open_database(path, readonly=True)``; in WAL mode none of them blocks the writer. Rows come
back as the frozen dataclasses of :mod:`watcher.store.records` (re-exported here), holding the
exact ``_e6`` integers. :class:`~watcher.store.sqlite_read.SQLiteReadModel` runs them in a thread.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Collection, Iterator
from typing import Any

from watcher.domain.event import EventInfo
from watcher.kalshi import messages as m
from watcher.store.event_json import EVENTS_SQL, event_from_json
from watcher.store.records import (
    AlertRecord,
    DeliveryRecord,
    MarketRow,
    ReplayEvent,
    TickerRow,
    TradeRow,
    decimal_text,
)
from watcher.store.schema import TABLES

__all__ = [
    "MarketRow",
    "TickerRow",
    "TradeRow",
    "count_events",
    "count_rows",
    "decimal_text",
    "delivery_counts",
    "get_market",
    "iter_events",
    "iter_lifecycle",
    "iter_ticks",
    "iter_trades",
    "last_alert",
    "latest_ticker",
    "open_deliveries",
    "recent_alerts",
    "service_state",
    "tick_history",
    "tick_series",
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


def tick_series(
    conn: sqlite3.Connection, ticker: str, *, since_ms: int | None = None, points: int = 300
) -> list[TickerRow]:
    """A market's ticker updates at or after ``since_ms`` thinned to at most ``points`` rows,
    oldest first: the newest update of each of ``points`` equal time buckets."""
    if points < 1:
        raise ValueError(f"points must be positive, but got {points}")
    first, last = conn.execute(
        "SELECT min(ts_ms), max(ts_ms) FROM tickers WHERE market_ticker = ? AND ts_ms >= ?",
        (ticker, _since(since_ms)),
    ).fetchone()
    if first is None:
        return []
    width = max(1, -(-(last - first + 1) // points))
    # A bare column beside max() comes from the row holding the maximum (SQLite's rule).
    columns = _TICKER_COLUMNS.replace(" ts_ms,", " max(ts_ms),", 1)
    rows = conn.execute(
        f"SELECT {columns} FROM tickers WHERE market_ticker = ? AND ts_ms >= ?"
        " GROUP BY (ts_ms - ?) / ? ORDER BY 2",
        (ticker, first, first, width),
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


def events(conn: sqlite3.Connection) -> list[EventInfo]:
    """Every stored event expansion, by event ticker."""
    return [event_from_json(row[0]) for row in conn.execute(EVENTS_SQL)]


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


def last_alert(conn: sqlite3.Connection, ticker: str) -> tuple[int, str] | None:
    """``(created_ms, rule)`` of the newest alert about a market, or ``None``."""
    found = conn.execute(
        "SELECT created_ms, rule FROM alerts WHERE market_ticker = ?"
        " ORDER BY created_ms DESC, id DESC LIMIT 1",
        (ticker,),
    ).fetchone()
    return (int(found[0]), str(found[1])) if found else None


def open_deliveries(conn: sqlite3.Connection) -> int:
    """How many deliveries are still to send (``pending`` or ``retrying``)."""
    # The statuses of watcher.store.records.OPEN_STATUSES.
    sql = "SELECT COUNT(*) FROM alert_deliveries WHERE status IN ('pending', 'retrying')"
    return int(conn.execute(sql).fetchone()[0])


def delivery_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many deliveries are in each status."""
    sql = "SELECT status, count(*) FROM alert_deliveries GROUP BY status"
    return {str(status): int(n) for status, n in conn.execute(sql)}


def recent_alerts(
    conn: sqlite3.Connection, *, since_ms: int | None, status: str | None, limit: int
) -> list[AlertRecord]:
    """The newest alerts first (created at or after ``since_ms``), with their deliveries."""
    sql = (
        "SELECT id, idempotency_key, rule, market_ticker, severity, title, body, targets,"
        " status, created_ms, updated_ms, suppressed_reason FROM alerts WHERE created_ms >= ?"
        " AND (? IS NULL OR status = ?) ORDER BY created_ms DESC, id DESC LIMIT ?"
    )
    rows = conn.execute(sql, (since_ms or 0, status, status, limit)).fetchall()
    deliveries: dict[int, list[DeliveryRecord]] = {row[0]: [] for row in rows}
    if deliveries:
        marks = ",".join("?" * len(deliveries))
        found = conn.execute(
            "SELECT alert_id, target, status, attempts, next_attempt_ms, last_error,"
            f" updated_ms FROM alert_deliveries WHERE alert_id IN ({marks})"
            " ORDER BY alert_id, rowid",
            list(deliveries),
        )
        for alert_id, *fields in found:
            deliveries[alert_id].append(DeliveryRecord(*fields))
    return [_alert_record(row, tuple(deliveries[row[0]])) for row in rows]


def count_events(
    conn: sqlite3.Connection,
    *,
    since_ms: int | None,
    until_ms: int | None,
    markets: Collection[str],
) -> int:
    """How many ticks, trades and lifecycle events :func:`iter_events` will yield."""
    total = 0
    for table in ("tickers", "trades", "lifecycle_events"):
        where, params = _where(since_ms, until_ms, markets)
        total += int(
            conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]
        )
    return total


def iter_lifecycle(
    conn: sqlite3.Connection,
    *,
    since_ms: int | None,
    until_ms: int | None,
    markets: Collection[str],
) -> Iterator[tuple[int, m.MarketLifecycle]]:
    """Stored lifecycle frames of ``markets`` in time order, decoded, with their ``ts_ms``."""
    where, params = _where(since_ms, until_ms, markets)
    sql = f"SELECT ts_ms, raw FROM lifecycle_events WHERE {where} ORDER BY ts_ms, id"
    for stored_ts, raw in conn.execute(sql, params):
        frame = m.decode_message(raw)
        if isinstance(frame, m.MarketLifecycle):
            yield stored_ts, frame


def iter_events(
    conn: sqlite3.Connection,
    *,
    since_ms: int | None,
    until_ms: int | None,
    markets: Collection[str],
) -> Iterator[ReplayEvent]:
    """Ticks, trades and lifecycle frames merged in time order (ticks first on a tie), lazily."""
    names = list(markets)
    span: dict[str, Any] = {"since_ms": since_ms, "until_ms": until_ms, "markets": names}
    ticks = ((r.ts_ms, "ticks", r) for r in iter_ticks(conn, **span))
    trades = ((r.ts_ms, "trades", r) for r in iter_trades(conn, **span))
    lifecycle = ((ts, "lifecycle", frame) for ts, frame in iter_lifecycle(conn, **span))
    events: Iterator[ReplayEvent] = heapq.merge(
        ticks, trades, lifecycle, key=lambda event: (event[0], _KIND_ORDER[event[1]])
    )
    return events


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


_KIND_ORDER = {"ticks": 0, "trades": 1, "lifecycle": 2}


def _where(
    since_ms: int | None, until_ms: int | None, markets: Collection[str]
) -> tuple[str, list[Any]]:
    names = sorted(set(markets))
    where = [f"market_ticker IN ({', '.join('?' * len(names))})", "ts_ms >= ?"]
    params: list[Any] = [*names, _since(since_ms)]
    if until_ms is not None:
        where.append("ts_ms < ?")
        params.append(until_ms)
    return " AND ".join(where), params


def _alert_record(row: tuple[Any, ...], deliveries: tuple[DeliveryRecord, ...]) -> AlertRecord:
    alert_id, key, rule, market, severity, title, body, targets, status, created, updated, why = row
    return AlertRecord(
        id=alert_id, key=key, rule=rule, market_ticker=market, severity=severity, title=title,
        body=body, targets=tuple(json.loads(targets)), status=status, created_ms=created,
        updated_ms=updated, deliveries=deliveries, suppressed_reason=why,
    )  # fmt: skip
