"""SQLite storage: schema and migrations, the batched writer, read-side queries, the seed API.

Money and counts are stored as exact integers in micro-units (columns ending in ``_e6``):
``price_e6 = 450000`` is $0.45 and ``count_e6 = 136000000`` is 136 contracts.
"""

from watcher.store.queries import (
    MarketRow,
    TickerRow,
    TradeRow,
    count_rows,
    get_market,
    iter_ticks,
    iter_trades,
    latest_ticker,
    service_state,
    tick_history,
    trade_history,
)
from watcher.store.schema import MIGRATIONS, SCHEMA_VERSION, open_database
from watcher.store.storage import SQLiteStorage
from watcher.store.writer import StoreWriter, WriterState, WriterStats

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "MarketRow",
    "SQLiteStorage",
    "StoreWriter",
    "TickerRow",
    "TradeRow",
    "WriterState",
    "WriterStats",
    "count_rows",
    "get_market",
    "iter_ticks",
    "iter_trades",
    "latest_ticker",
    "open_database",
    "service_state",
    "tick_history",
    "trade_history",
]
