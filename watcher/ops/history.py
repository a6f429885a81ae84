"""``watcher history MARKET``: the recent ticks and trades of one market, oldest first."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from watcher.ops.readout import cents_text, count_text, time_text
from watcher.store.ports import ReadModel
from watcher.store.records import TickerRow, TradeRow

__all__ = ["history_json", "history_line", "read_history"]

_KIND_ORDER = {"tick": 0, "trade": 1, "lifecycle": 2}


async def read_history(
    read_model: ReadModel, ticker: str, *, since_ms: int | None, limit: int
) -> list[tuple[str, TickerRow | TradeRow]]:
    """The newest ``limit`` ticks and trades of a market, oldest first, as (kind, row)."""
    found = await read_model.tick_history(ticker, since_ms=since_ms, limit=limit)
    ticks = [("tick", row) for row in found]
    traded = await read_model.trade_history(ticker, since_ms=since_ms, limit=limit)
    trades = [("trade", row) for row in traded]
    both: list[tuple[str, TickerRow | TradeRow]] = [*ticks, *trades]
    both.sort(key=lambda item: (item[1].ts_ms, _KIND_ORDER[item[0]]), reverse=True)
    return both[:limit][::-1]


def history_line(kind: str, row: TickerRow | TradeRow, tz: ZoneInfo) -> str:
    """One line of ``watcher history``: YES prices in cents, the time labelled with ``tz``."""
    when = time_text(row.ts_ms, tz, f"%Y-%m-%d %H:%M:%S.{row.ts_ms % 1000:03d}")
    if isinstance(row, TickerRow):
        return (
            f"{when}  tick   bid {cents_text(row.yes_bid_e6)}  ask {cents_text(row.yes_ask_e6)}"
            f"  last {cents_text(row.price_e6)}  volume {count_text(row.volume_e6)}"
        )
    taker = f" taker {row.taker_side}" if row.taker_side else ""
    late = " (late)" if row.late else ""
    return (
        f"{when}  trade  {count_text(row.count_e6)} @ {cents_text(row.yes_price_e6)}{taker}{late}"
    )


def history_json(kind: str, row: TickerRow | TradeRow) -> dict[str, Any]:
    """One JSON object of ``watcher history --json``: ``kind`` plus the row."""
    return {"kind": kind, **row.to_json()}
