"""The store: ports (tick sink, alert store, read model), their values, and SQLite behind them.

Money and counts are stored as exact integers in micro-units (columns ending in ``_e6``):
``price_e6 = 450000`` is $0.45 and ``count_e6 = 136000000`` is 136 contracts.

- :mod:`watcher.store.ports`: the Protocols the service and the read-outs use.
- :mod:`watcher.store.records`: the values they speak (no database driver imported).
- :func:`open_backend`: the implementations for ``--db`` (SQLite today).
- SQLite: :mod:`.schema` (migrations), :mod:`.writer` (the batched tick sink, writing through
  :mod:`.writer_thread`), :mod:`.sqlite_alerts` (the alert store, its SQL in :mod:`.alert_sql`),
  :mod:`.sqlite_read` and :mod:`.queries` (the read model), :mod:`.retention`, :mod:`.storage`
  (the seed API). All SQL text lives in this package.

The SQLite names below are loaded on first use, so importing the ports or the values does not
import ``sqlite3``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from watcher.store.backend import open_backend
from watcher.store.ports import AlertStore, Backend, ReadModel, TickSink
from watcher.store.records import MarketRow, TickerRow, TradeRow, WriterState, WriterStats

if TYPE_CHECKING:
    from watcher.store.queries import (
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
    from watcher.store.writer import StoreWriter

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AlertStore",
    "Backend",
    "MarketRow",
    "ReadModel",
    "SQLiteStorage",
    "StoreWriter",
    "TickSink",
    "TickerRow",
    "TradeRow",
    "WriterState",
    "WriterStats",
    "count_rows",
    "get_market",
    "iter_ticks",
    "iter_trades",
    "latest_ticker",
    "open_backend",
    "open_database",
    "service_state",
    "tick_history",
    "trade_history",
]

_LAZY = {
    "MIGRATIONS": "schema",
    "SCHEMA_VERSION": "schema",
    "open_database": "schema",
    "SQLiteStorage": "storage",
    "StoreWriter": "writer",
    **dict.fromkeys(
        (
            "count_rows",
            "get_market",
            "iter_ticks",
            "iter_trades",
            "latest_ticker",
            "service_state",
            "tick_history",
            "trade_history",
        ),
        "queries",
    ),
}


def __getattr__(name: str) -> Any:
    """Load a SQLite name on first use (see the module docstring)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
