"""Frames to rows: the table and exact integer row that store each Kalshi frame, and the inserts.

Every money or count column is an INTEGER in micro-units (suffix ``_e6``). :func:`row_for` maps a
frame to ``(table, row)`` in :data:`INSERTS` column order; :func:`insert_rows` writes many rows
of one table with multi-row ``INSERT ... VALUES (...), (...)`` statements.

Why multi-row statements: Python's ``executemany`` releases the GIL around every single
``sqlite3_step``, so the writer thread has to win the GIL back once per row, and while the event
loop is busy each of those waits can last up to the interpreter's switch interval (5 ms). One
statement of :data:`ROWS_PER_STATEMENT` rows binds its parameters in one C loop and steps once
with the GIL released, so the writer competes for the GIL a few times per batch instead of once
per row.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple
from decimal import Decimal
from typing import Any

from watcher.domain.event import EventInfo
from watcher.kalshi.messages import (
    Fill,
    MarketLifecycle,
    OrderbookDelta,
    OrderbookSnapshot,
    Ticker,
    Trade,
    encode,
    timestamp_ms,
)
from watcher.store.event_json import event_to_json
from watcher.store.records import MarketRow

__all__ = [
    "COLUMNS",
    "INSERTS",
    "ROWS_PER_STATEMENT",
    "ROW_BUILDERS",
    "event_items",
    "insert_rows",
    "market_item",
    "row_for",
]

#: Rows per multi-row INSERT: 13,000 parameters for tickers (SQLite allows 32,766 since 3.32).
#: Larger means fewer GIL hand-overs per batch (make bench: 500 → 1,000 rows, +15% rows/s with
#: a busy event loop); each cached statement costs about 1.6 KB of memory per row.
ROWS_PER_STATEMENT = 1000

COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(columns.split())
    for table, columns in {
        "tickers": "market_ticker ts_ms received_ms price_e6 yes_bid_e6 yes_ask_e6"
        " yes_bid_size_e6 yes_ask_size_e6 last_trade_size_e6 volume_e6 open_interest_e6"
        " dollar_volume dollar_open_interest",
        "trades": "trade_id market_ticker ts_ms received_ms yes_price_e6 no_price_e6 count_e6"
        " taker_side is_block_trade late",
        "orderbook_snapshots": "market_ticker ts_ms received_ms seq yes_levels no_levels",
        "orderbook_deltas": "market_ticker ts_ms received_ms seq side price_e6 delta_e6",
        "fills": "trade_id order_id market_ticker ts_ms received_ms side yes_price_e6 count_e6"
        " fee_e6 is_taker action",
        "lifecycle_events": "market_ticker ts_ms received_ms event_type result"
        " settlement_value_e6 raw",
        "markets": "market_ticker title status close_time_ms result updated_ms",
        "service_state": "key value updated_ms",
        "events": "event_ticker info updated_ms",
    }.items()
}

_CONFLICT = {
    "trades": " ON CONFLICT(trade_id) DO NOTHING",  # one row per trade_id
    "fills": " ON CONFLICT(trade_id) DO NOTHING",
    # None keeps what is stored: a lifecycle event or a partial REST answer erases nothing.
    "markets": " ON CONFLICT(market_ticker) DO UPDATE SET"
    " title = coalesce(excluded.title, title), status = coalesce(excluded.status, status),"
    " close_time_ms = coalesce(excluded.close_time_ms, close_time_ms),"
    " result = coalesce(excluded.result, result), updated_ms = excluded.updated_ms",
    "service_state": " ON CONFLICT(key) DO UPDATE SET"
    " value = excluded.value, updated_ms = excluded.updated_ms",
    "events": " ON CONFLICT(event_ticker) DO UPDATE SET"
    " info = excluded.info, updated_ms = excluded.updated_ms",
}

#: The statement that writes one row of each table the writer fills, in write order.
INSERTS: dict[str, str] = {
    table: f"INSERT INTO {table} ({', '.join(columns)})"
    f" VALUES ({', '.join('?' * len(columns))}){_CONFLICT.get(table, '')}"
    for table, columns in COLUMNS.items()
}

_INT64 = 2**63
_MICROS = 1_000_000
#: A decimal with more integer digits than this cannot fit an int64 in micro-units.
_MAX_ADJUSTED = 12


def _e6(value: Decimal) -> int:
    """Exact micro-units of a Decimal (the hot path: about 2× faster than ``fixed.to_micros``).

    ``as_integer_ratio`` is exact and reduced, so the value has at most 6 decimals exactly when
    its denominator divides 10⁶.
    """
    if value.adjusted() > _MAX_ADJUSTED:  # first: no giant integers from 1E+999999
        raise ValueError(f"value does not fit an SQLite integer in micro-units: {value}")
    try:
        numerator, denominator = value.as_integer_ratio()
    except (ValueError, OverflowError):
        raise ValueError(f"not a finite number: {value}") from None
    factor, rest = divmod(_MICROS, denominator)
    if rest:
        raise ValueError(f"more than 6 decimals: {value}")
    micros = numerator * factor
    if not -_INT64 <= micros < _INT64:
        raise ValueError(f"value does not fit an SQLite integer in micro-units: {value}")
    return micros


#: Micro-units of prices and sizes already seen, by their text. Prices live between $0 and $1
#: in steps of at most a hundredth of a cent and sizes are mostly round numbers, so both repeat
#: all the time; volumes and open interest keep growing and are not memoized. The key is the
#: text because hashing a fresh Decimal (~550 ns) costs more than :func:`_e6` itself (~470 ns);
#: ``str()`` and a lookup take ~110 ns.
_MEMO: dict[str, int] = {}
#: Bound of the memo: it starts over when full.
_MEMO_MAX = 20_000


def _memo_e6(value: Decimal) -> int:
    """:func:`_e6` of a price or size, memoized; the same errors for the same values."""
    key = str(value)
    micros = _MEMO.get(key)
    if micros is None:
        micros = _e6(value)  # raises ValueError for anything that cannot be stored
        if len(_MEMO) >= _MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = micros
    return micros


def _e6_opt(value: Decimal | None) -> int | None:
    return None if value is None else _e6(value)


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _ts(ts_ms: int | None, ts: int | None, sending_ts_ms: int | None, received_ms: int) -> int:
    best = timestamp_ms(ts_ms, ts, sending_ts_ms)
    return received_ms if best is None else best


def _levels(levels: list[tuple[Decimal, Decimal]]) -> str:
    return json.dumps([[_e6(price), _e6(count)] for price, count in levels], separators=(",", ":"))


def _ticker(frame: Ticker, received_ms: int, late: bool) -> tuple[Any, ...]:
    # The hottest row: optional fields are inlined rather than going through _e6_opt.
    m = frame.msg
    bid_size, ask_size, last_size = m.yes_bid_size_fp, m.yes_ask_size_fp, m.last_trade_size_fp
    volume, interest = m.volume_fp, m.open_interest_fp
    return (
        m.market_ticker,
        m.ts_ms if m.ts_ms is not None else _ts(None, m.ts, frame.sending_ts_ms, received_ms),
        received_ms,
        _memo_e6(m.price_dollars),
        _memo_e6(m.yes_bid_dollars),
        _memo_e6(m.yes_ask_dollars),
        None if bid_size is None else _memo_e6(bid_size),
        None if ask_size is None else _memo_e6(ask_size),
        None if last_size is None else _memo_e6(last_size),
        None if volume is None else _e6(volume),
        None if interest is None else _e6(interest),
        m.dollar_volume,
        m.dollar_open_interest,
    )


def _trade(frame: Trade, received_ms: int, late: bool) -> tuple[Any, ...]:
    m = frame.msg
    return (
        m.trade_id,
        m.market_ticker,
        _ts(m.ts_ms, m.ts, frame.sending_ts_ms, received_ms),
        received_ms,
        _memo_e6(m.yes_price_dollars),
        _memo_e6(m.no_price_dollars),
        _memo_e6(m.count_fp),
        m.taker_side or m.taker_outcome_side,
        _flag(m.is_block_trade),
        int(late),
    )


def _snapshot(frame: OrderbookSnapshot, received_ms: int, late: bool) -> tuple[Any, ...]:
    m = frame.msg
    return (
        m.market_ticker,
        _ts(None, None, frame.sending_ts_ms, received_ms),
        received_ms,
        frame.seq,
        _levels(m.yes_dollars_fp),
        _levels(m.no_dollars_fp),
    )


def _delta(frame: OrderbookDelta, received_ms: int, late: bool) -> tuple[Any, ...]:
    m = frame.msg
    return (
        m.market_ticker,
        _ts(m.ts_ms, None, frame.sending_ts_ms, received_ms),
        received_ms,
        frame.seq,
        m.side,
        _e6(m.price_dollars),
        _e6(m.delta_fp),
    )


def _fill(frame: Fill, received_ms: int, late: bool) -> tuple[Any, ...]:
    m = frame.msg
    return (
        m.trade_id,
        m.order_id,
        m.market_ticker,
        _ts(m.ts_ms, m.ts, frame.sending_ts_ms, received_ms),
        received_ms,
        m.side or m.outcome_side,
        _e6(m.yes_price_dollars),
        _e6(m.count_fp),
        _e6_opt(m.fee_cost),
        _flag(m.is_taker),
        m.action,
    )


def _lifecycle(frame: MarketLifecycle, received_ms: int, late: bool) -> tuple[Any, ...]:
    m = frame.msg
    return (
        m.market_ticker,
        _ts(None, None, frame.sending_ts_ms, received_ms),
        received_ms,
        m.event_type,
        m.result or None,
        _e6_opt(m.settlement_value),
        encode(frame).decode(),
    )


#: Frame class → (table, function making its row from ``(frame, received_ms, late)``).
ROW_BUILDERS: dict[type[Any], tuple[str, Callable[[Any, int, bool], tuple[Any, ...]]]] = {
    Ticker: ("tickers", _ticker),
    Trade: ("trades", _trade),
    OrderbookSnapshot: ("orderbook_snapshots", _snapshot),
    OrderbookDelta: ("orderbook_deltas", _delta),
    Fill: ("fills", _fill),
    MarketLifecycle: ("lifecycle_events", _lifecycle),
}


def row_for(message: object, received_ms: int, late: bool = False) -> tuple[str, tuple[Any, ...]]:
    """The table and row (in :data:`INSERTS` column order) that store one frame.

    ``ts_ms`` is the payload's ``ts_ms``, else its ``ts`` seconds × 1000, else the envelope's
    ``sending_ts_ms``, else ``received_ms``. Prices and counts become exact ``_e6`` integers.

    Raises:
        TypeError: frames of this type are not stored.
        ValueError: a number has more than 6 decimals or does not fit in 64 bits.
    """
    try:
        table, build = ROW_BUILDERS[type(message)]
    except KeyError:
        raise TypeError(f"{type(message).__name__} frames are not stored") from None
    return table, build(message, received_ms, late)


def market_item(market: MarketRow, now_ms: int) -> tuple[str, tuple[Any, ...]]:
    """A ready ``markets`` row; ``updated_ms`` 0 means ``now_ms``."""
    values = astuple(market)
    return ("markets", values if market.updated_ms else (*values[:-1], now_ms))


def event_items(infos: Iterable[EventInfo], now_ms: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Ready ``events`` rows (upserts keyed by event ticker) for ``infos``, stamped ``now_ms``."""
    return [("events", (info.event_ticker, event_to_json(info), now_ms)) for info in infos]


def insert_rows(conn: sqlite3.Connection, table: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert ``rows`` into ``table`` in the current transaction; return the rows changed.

    Full chunks use one :data:`ROWS_PER_STATEMENT`-row statement each (fewer if this SQLite
    allows fewer parameters); the remainder is split into power-of-two chunks, so at most a dozen
    distinct statements per table are ever prepared (and cached by the connection). Conflicts
    resolve as in :data:`INSERTS` (ignored trades and fills are not counted).
    """
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS[table])
    most = max(1, min(ROWS_PER_STATEMENT, limit))
    changed = 0
    start = 0
    while start < len(rows):
        size = _chunk_size(len(rows) - start, most)
        chunk = rows[start : start + size]
        params = list(itertools.chain.from_iterable(chunk))
        changed += conn.execute(_insert_sql(table, size), params).rowcount
        start += size
    return changed


def _chunk_size(remaining: int, most: int) -> int:
    if remaining >= most:
        return most
    return 1 << (remaining.bit_length() - 1)  # the largest power of two <= remaining


_SQL_CACHE: dict[tuple[str, int], str] = {}


def _insert_sql(table: str, rows: int) -> str:
    key = (table, rows)
    sql = _SQL_CACHE.get(key)
    if sql is None:
        columns = COLUMNS[table]
        one = "(" + ", ".join("?" * len(columns)) + ")"
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * rows)}"
            f"{_CONFLICT.get(table, '')}"
        )
        _SQL_CACHE[key] = sql
    return sql
