"""The dashboard's pages: overview, market, alerts inbox, rules (with replay).

Each handler reads through the :class:`~watcher.faces.web.source.Source` and hands texts made
by :mod:`watcher.faces.web.views` to a Jinja2 template; the charts are the SVG of
:mod:`watcher.faces.web.charts`. Element ids and classes are stable for the browser tests and
the page's script: ``tr[data-ticker][data-index]`` rows, ``#pos-N-bid``/``-ask``/``-mark``/
``-pnl`` cells, ``#quote-bid``/``-ask``/``-last``, ``svg.chart path.chart-last``, the
Silenced section ``#silenced`` (``tr.mute[data-target]``, ``#unmute-all``, ``#resume``) in
``#silenced-slot``, a row's ``button.mute-1h``, and a flash message ``#notice``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from watcher.faces.web.charts import carry_forward, price_chart, sparkline
from watcher.faces.web.security import clear_flash, form_fields, read_flash, require_csrf
from watcher.faces.web.source import Source
from watcher.faces.web.views import (
    WINDOWS,
    alert_marker,
    alert_row,
    controls_json,
    health_json,
    position_row,
    trade_row,
    yes_entry,
)
from watcher.ops.readout import time_text
from watcher.ops.replay import alert_line, summary_line, would_do
from watcher.rules import RulesConfig
from watcher.rules.kinds import EventRule, RuleBase
from watcher.rules.wording import signed_dollars, span_text
from watcher.service.digest import view_position
from watcher.store.records import AlertStatus

__all__ = [
    "REPLAY_WINDOWS",
    "alerts_page",
    "market_page",
    "overview_page",
    "retry_delivery",
    "rules_page",
    "source_of",
    "ticker_of",
    "window_of",
]

#: The replay windows the rules page offers.
REPLAY_WINDOWS = {"1d": 86_400_000, "7d": 7 * 86_400_000}
#: Points in a sparkline (the last hour) and in a market chart.
SPARK_POINTS = 60
CHART_POINTS = 300
_TICKER = re.compile(r"[A-Z0-9][A-Z0-9._-]{0,99}")
_HOUR_MS = 3_600_000
#: The fields every rule has (shown in their own columns, or not at all).
_BASE_FIELDS = frozenset(
    {"name", "type", "markets", "notify", "cooldown", "severity", "price", "message"}
    | {"enabled", "expires", "action"}
)


def source_of(request: Request) -> Source:
    source: Source = request.app.state.source
    return source


def ticker_of(request: Request) -> str:
    """The ``{ticker}`` of the path, upper-cased; 404 when it cannot be a ticker."""
    ticker = str(request.path_params["ticker"]).strip().upper()
    if not _TICKER.fullmatch(ticker):
        raise HTTPException(404, f"no market {ticker!r}")
    return ticker


def window_of(request: Request, default: str = "1h") -> str:
    """The ``window`` query parameter (1h, 1d, 7d, all); 400 for anything else."""
    window = request.query_params.get("window", default)
    if window not in WINDOWS:
        raise HTTPException(400, f"window must be one of {', '.join(WINDOWS)}, but got {window!r}")
    return window


async def overview_page(request: Request) -> Response:
    """``/``: the health strip, what is silenced, one row per watched position (each with a
    "Mute 1h" button), and the form to mute or pause."""
    source = source_of(request)
    overview = await source.overview()
    tz = source.rules.tz
    rows = [position_row(r.view, r.last_alert, tz=tz) for r in overview.table.rows]
    sparks = await _sparklines(source, overview.table.rows)
    for row, spark in zip(rows, sparks, strict=True):
        row["spark"] = spark
    unrealized = overview.table.unrealized
    context = {
        "rows": rows,
        "problem": overview.problem,
        "events": overview.table.events,
        "closed": overview.table.closed,
        "realized": signed_dollars(overview.table.realized),
        "unrealized": "-" if unrealized is None else signed_dollars(unrealized),
        "silenced": controls_json(overview.health.controls, tz=tz, now_ms=source.now_ms()),
        "targets": [*source.portfolio().tickers(), *(rule.name for rule in source.rules.rules)],
    }
    return await _render(request, "overview.html", context, health=overview.health)


async def market_page(request: Request) -> Response:
    """``/market/{ticker}``: the price chart over a window, the positions, recent trades."""
    source = source_of(request)
    ticker, window = ticker_of(request), window_of(request)
    reader = await source.reader()
    tz = source.rules.tz
    positions = source.portfolio().by_ticker(ticker, watched_only=True)
    quote = await source.quote(ticker)
    trades = await reader.trade_history(ticker, limit=50)
    context = {
        "ticker": ticker,
        "market": await reader.get_market(ticker),
        "window": window,
        "windows": list(WINDOWS),
        "chart": await chart_svg(source, ticker, window),
        "quote": quote,
        "positions": positions,
        "trades": [trade_row(t, tz) for t in trades],
    }
    return await _render(request, "market.html", context, ticker=ticker)


async def chart_svg(source: Source, ticker: str, window: str) -> str:
    """The market chart over ``window``: YES prices, entries of its positions, its alerts."""
    now = source.now_ms()
    span = WINDOWS[window]
    since = None if span is None else now - span
    points = await source.series(ticker, since_ms=since, points=CHART_POINTS)
    # From the first tick in the window: a young recording fills the chart.
    start = points[0].ts_ms if points else (now - _HOUR_MS if since is None else since)
    alerts = await source.alerts(market=ticker, since_ms=start, limit=500)
    tz = source.rules.tz
    positions = source.portfolio().by_ticker(ticker, watched_only=True)
    spec = "%H:%M:%S" if now - start < _HOUR_MS else "%m-%d %H:%M"  # a young recording: seconds
    return price_chart(
        points,
        start_ms=start,
        end_ms=now,
        time_label=lambda ms: time_text(ms, tz, spec),
        entries=[yes_entry(p) for p in positions],
        markers=[alert_marker(a, tz) for a in alerts],
    )


async def alerts_page(request: Request) -> Response:
    """``/alerts``: the inbox, newest first, filtered by status, market and rule."""
    source = source_of(request)
    filters = alert_filters(request)
    records = await source.alerts(**filters)
    tz, now = source.rules.tz, source.now_ms()
    context = {
        "alerts": [alert_row(r, tz=tz, now_ms=now) for r in records],
        "filters": {k: v or "" for k, v in filters.items()},
        "statuses": [str(s) for s in AlertStatus],
        "rule_names": [rule.name for rule in source.rules.rules],
        "can_retry": source.service is not None,
    }
    return await _render(request, "alerts.html", context)


def alert_filters(request: Request) -> dict[str, Any]:
    """``status``, ``market`` and ``rule`` from the query (empty means any)."""
    query = request.query_params
    market = query.get("market", "").strip().upper() or None
    return {
        "status": query.get("status") or None,
        "market": market,
        "rule": query.get("rule") or None,
    }


async def retry_delivery(request: Request) -> Response:
    """``POST /alerts/{id}/retry`` (CSRF-checked): put a failed delivery back in the queue."""
    await require_csrf(request)
    source = source_of(request)
    if source.service is None:
        raise HTTPException(409, "nothing to retry with: no service runs in this process")
    form = await form_fields(request)
    target = form.get("target")
    if not target:
        raise HTTPException(400, "which target? send the form's target field")
    count = await source.retry(int(request.path_params["alert_id"]), target)
    if not count:
        raise HTTPException(409, "that delivery is not failed (nothing put back)")
    back = form.get("next", "")
    return RedirectResponse(back if back.startswith("/alerts") else "/alerts", 303)


async def rules_page(request: Request) -> Response:
    """``/rules``: each rule with its last fire; ``?replay=1d|7d`` adds what it would fire."""
    source = source_of(request)
    replay_window = request.query_params.get("replay")
    if replay_window is not None and replay_window not in REPLAY_WINDOWS:
        raise HTTPException(400, f"replay must be 1d or 7d, but got {replay_window!r}")
    run = None
    if replay_window is not None:
        run = await source.replay(replay_window, REPLAY_WINDOWS[replay_window])
    fires = await source.last_fires()
    tz = source.rules.tz
    context = {
        "rules": [rule_row(r, fires.get(r.name), tz, source.rules) for r in source.rules.rules],
        "replay": None if run is None else _replay_context(run, tz),
        "replay_windows": list(REPLAY_WINDOWS),
    }
    return await _render(request, "rules.html", context)


def rule_row(rule: Any, fired: Any, tz: Any, config: RulesConfig) -> dict[str, Any]:
    """One rule as the rules page shows it: its settings (target names only, never URLs)."""
    settings = {
        name: getattr(rule, name)
        for name in type(rule).model_fields
        if name not in _BASE_FIELDS and getattr(rule, name) is not None
    }
    return {
        "name": rule.name,
        "type": rule.type,
        "settings": ", ".join(f"{k}: {_setting_text(v)}" for k, v in settings.items()),
        "markets": _scope_text(rule),
        "notify": ", ".join(rule.notify if rule.notify is not None else config.defaults.notify)
        or "console",
        "severity": rule.severity or config.defaults.severity,
        "enabled": rule.enabled,
        "action": rule.action or "",
        "last_fire": None
        if fired is None
        else f"{time_text(fired.created_ms, tz, '%Y-%m-%d %H:%M')} {fired.market_ticker}",
    }


# Private functions


def _setting_text(value: Any) -> str:
    if isinstance(value, timedelta):
        return span_text(value // timedelta(milliseconds=1))
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, tuple | list):
        return ", ".join(_setting_text(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _replay_context(run: Any, tz: Any) -> dict[str, Any]:
    return {
        "window": run.window,
        "summary": summary_line(run.stats, tz),
        "per_rule": run.per_rule,
        "lines": [{"text": alert_line(a, tz), "would": would_do(a) or ""} for a in run.alerts],
        "shown": len(run.alerts),
        "total": run.stats.alerts,
    }


async def _sparklines(source: Source, rows: list[Any]) -> list[str]:
    """Each position's mark (its side's last price, else mid) over the last hour, with its
    entry line."""
    since = source.now_ms() - _HOUR_MS
    series: dict[str, list[Any]] = {}
    out = []
    for row in rows:
        p = row.view.position
        if p.ticker not in series:
            points = await source.series(p.ticker, since_ms=since, points=SPARK_POINTS)
            series[p.ticker] = carry_forward(points)
        pairs = [
            (pt.ts_ms, view_position(p, yes_bid=pt.bid, yes_ask=pt.ask, yes_last=pt.last).mark)
            for pt in series[p.ticker]
        ]
        out.append(sparkline(pairs, entry=p.entry_micros, label=f"{p.ticker} {p.side} last hour"))
    return out


async def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    health: Any = None,
    ticker: str = "",
) -> Response:
    """A page with the shared frame: navigation, health strip, CSRF token, live-stream state."""
    source = source_of(request)
    if health is None:
        health = await source.health()
    newest = await source.alerts(limit=1)
    templates = request.app.state.templates
    flash = read_flash(request)
    response: Response = templates.TemplateResponse(
        request,
        name,
        {
            **context,
            "page": name.removesuffix(".html"),
            "health": health_json(health, source.now_ms(), tz=source.rules.tz),
            "csrf": request.state.csrf,
            "last_alert_id": newest[0].id if newest else 0,
            "page_ticker": ticker,
            "read_only": source.read_only,
            "flash": flash,
        },
    )
    if flash is not None:
        clear_flash(response)
    return response


def _scope_text(rule: RuleBase) -> str:
    """What a rule looks at: its globs, else the watched positions (or events)."""
    if isinstance(rule, EventRule):
        return ", ".join(rule.events or ()) or "watched events"
    return ", ".join(rule.markets or ()) or "watched positions"
