"""The dashboard's JSON API (documented in the README): what the pages show, for scripts.

Money is exact: dollar amounts are decimal strings (``"0.45"``, ``"-1.50"``), never floats.

- ``GET /api/positions``: one object per watched position.
- ``GET /api/alerts?status=&market=&rule=&limit=``: the inbox, newest first.
- ``GET /api/markets/{ticker}/series?window=1h|1d|7d|all``: the YES quote over time.
- ``GET /api/health``: the health strip (with ``controls``: what is silenced).
- ``GET /api/controls`` and ``POST /api/controls/mute|unmute|pause|resume``: what is
  silenced, and silencing (:mod:`watcher.faces.web.silence`).
- ``GET /api/rules`` and ``GET /api/replay?window=1d|7d``: the rules page.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from watcher.faces.web.pages import (
    REPLAY_WINDOWS,
    alert_filters,
    rule_row,
    source_of,
    ticker_of,
    window_of,
)
from watcher.faces.web.views import WINDOWS, health_json, position_json
from watcher.ops.alerts import alert_json
from watcher.ops.replay import alert_json as replay_json
from watcher.ops.replay import summary_line
from watcher.store.records import decimal_text

__all__ = [
    "alerts_api",
    "health_api",
    "positions_api",
    "replay_api",
    "rules_api",
    "series_api",
]

#: The most alerts one ``GET /api/alerts`` returns.
MAX_LIMIT = 1_000
#: Points in a series (one per equal slice of the window).
SERIES_POINTS = 500


async def positions_api(request: Request) -> JSONResponse:
    """Every watched position: side, contracts, entry, the side's bid/ask/last, mark, P&L."""
    overview = await source_of(request).overview()
    return JSONResponse([position_json(r.view, r.last_alert) for r in overview.table.rows])


async def alerts_api(request: Request) -> JSONResponse:
    """The newest alerts first with their deliveries (as ``watcher alerts --json``)."""
    try:
        limit = min(int(request.query_params.get("limit", "100")), MAX_LIMIT)
    except ValueError:
        raise HTTPException(400, "limit must be a whole number") from None
    records = await source_of(request).alerts(**alert_filters(request), limit=max(limit, 1))
    return JSONResponse([alert_json(r) for r in records])


async def series_api(request: Request) -> JSONResponse:
    """A market's YES bid, ask and last price over the window, oldest first."""
    source = source_of(request)
    ticker, window = ticker_of(request), window_of(request)
    span = WINDOWS[window]
    since = None if span is None else source.now_ms() - span
    points = await source.series(ticker, since_ms=since, points=SERIES_POINTS)
    return JSONResponse(
        {
            "ticker": ticker,
            "window": window,
            "since_ms": since,
            "points": [
                {
                    "ts_ms": p.ts_ms,
                    "yes_bid": decimal_text(p.bid),
                    "yes_ask": decimal_text(p.ask),
                    "price": decimal_text(p.last),
                }
                for p in points
            ],
        }
    )


async def health_api(request: Request) -> JSONResponse:
    """The health strip's values (and their texts, under ``items``)."""
    source = source_of(request)
    return JSONResponse(health_json(await source.health(), source.now_ms(), tz=source.rules.tz))


async def rules_api(request: Request) -> JSONResponse:
    """Each rule with its settings (target names, never URLs) and its last fire."""
    source = source_of(request)
    fires = await source.last_fires()
    tz = source.rules.tz
    rows: list[dict[str, Any]] = []
    for rule in source.rules.rules:
        row = rule_row(rule, fires.get(rule.name), tz, source.rules)
        fired = fires.get(rule.name)
        row["last_fire_ms"] = None if fired is None else fired.created_ms
        rows.append(row)
    return JSONResponse(rows)


async def replay_api(request: Request) -> JSONResponse:
    """What the rules in force would have fired over the last day or week (nothing sent)."""
    window = request.query_params.get("window", "1d")
    if window not in REPLAY_WINDOWS:
        raise HTTPException(400, f"window must be 1d or 7d, but got {window!r}")
    source = source_of(request)
    run = await source.replay(window, REPLAY_WINDOWS[window])
    return JSONResponse(
        {
            "window": window,
            "summary": summary_line(run.stats, source.rules.tz),
            "alerts": run.stats.alerts,
            "per_rule": run.per_rule,
            "shown": [replay_json(a) for a in run.alerts],
        }
    )
