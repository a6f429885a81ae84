"""``watcher history MARKET``: the recent ticks and trades of one market, oldest first."""

from __future__ import annotations

import sqlite3
from typing import Any
from zoneinfo import ZoneInfo

from watcher.rules.quiet import local_time
from watcher.store.queries import TickerRow, TradeRow, decimal_text, tick_history, trade_history

__all__ = ["history_json", "history_line", "read_history"]

_KIND_ORDER = {"tick": 0, "trade": 1, "lifecycle": 2}


def read_history(
    conn: sqlite3.Connection, ticker: str, *, since_ms: int | None, limit: int
) -> list[tuple[str, TickerRow | TradeRow]]:
    """The newest ``limit`` ticks and trades of a market, oldest first, as (kind, row)."""
    ticks = [("tick", row) for row in tick_history(conn, ticker, since_ms=since_ms, limit=limit)]
    trades = [("trade", r) for r in trade_history(conn, ticker, since_ms=since_ms, limit=limit)]
    both: list[tuple[str, TickerRow | TradeRow]] = [*ticks, *trades]
    both.sort(key=lambda item: (item[1].ts_ms, _KIND_ORDER[item[0]]), reverse=True)
    return both[:limit][::-1]


def history_line(kind: str, row: TickerRow | TradeRow, tz: ZoneInfo) -> str:
    """One line of ``watcher history`` (YES prices in dollars)."""
    when = local_time(row.ts_ms, tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(row, TickerRow):
        return (
            f"{when}  tick   bid {decimal_text(row.yes_bid_e6)}  ask {decimal_text(row.yes_ask_e6)}"
            f"  last {decimal_text(row.price_e6)}  volume {decimal_text(row.volume_e6)}"
        )
    taker = f" taker {row.taker_side}" if row.taker_side else ""
    late = " (late)" if row.late else ""
    return (
        f"{when}  trade  {decimal_text(row.count_e6)} @ {decimal_text(row.yes_price_e6)}"
        f"{taker}{late}"
    )


def history_json(kind: str, row: TickerRow | TradeRow) -> dict[str, Any]:
    """One JSON object of ``watcher history --json``: ``kind`` plus the row."""
    return {"kind": kind, **row.to_json()}
