"""REST routing of the simulated exchange (paths relative to ``/trade-api/v2``).

Sans-I/O: :func:`route_rest` turns a GET path and query into ``(status, JSON body)`` using the
market model of :mod:`watcher.kalshi.sim.market`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from watcher.kalshi.sim.events import EventBook
from watcher.kalshi.sim.fee_changes import EventFeeChanges
from watcher.kalshi.sim.market import SimMarket
from watcher.kalshi.sim.series import SeriesBook, rest_event

__all__ = ["route_rest"]


def route_rest(
    path: str,
    query: Mapping[str, list[str]],
    *,
    market: Callable[[str], SimMarket],
    every: Callable[[], Iterable[SimMarket]],
    now_ms: int,
    series: SeriesBook | None = None,
    events: EventBook | None = None,
    fee_changes: EventFeeChanges | None = None,
) -> tuple[int, Any]:
    """Answer one REST GET as Kalshi does; returns ``(HTTP status, JSON body)``.

    Args:
        path, query: the path after ``/trade-api/v2`` and the parsed query string.
        market, every: the market of a ticker (created on demand); every market known.
        now_ms: the simulator's clock.
        series, events, fee_changes: the series' fees (default: multiplier 1), the configured
            events and their fee overrides (``GET /events/fee_changes``; default: none).
    """
    parts = [unquote(part) for part in path.strip("/").split("/")]
    try:
        if parts == ["markets", "trades"]:
            return 200, _trades(query, market, every)
        if len(parts) in (2, 3) and parts[0] == "markets" and parts[1]:
            found = market(parts[1])
            if found.unknown:
                return 404, _error("not_found", f"market not found: {parts[1]}")
            if len(parts) == 2:
                strikes = events.strike_fields(found.ticker) if events else {}
                return 200, {"market": found.rest_market(now_ms) | strikes}
            if parts[2] == "orderbook":
                return 200, found.rest_orderbook(_int(query, "depth", 0))
        if parts[0] == "events" and len(parts) <= 2:
            return _events(parts[1:], query, market, every, now_ms, events, fee_changes)
        if len(parts) == 2 and parts[0] == "series" and parts[1]:
            return (series or SeriesBook()).rest_series(parts[1], every())
    except ValueError as exc:
        return 400, _error("bad_request", str(exc))
    return 404, _error("not_found", f"no such endpoint: {path}")


def _events(
    rest: list[str],
    query: Mapping[str, list[str]],
    market: Callable[[str], SimMarket],
    every: Callable[[], Iterable[SimMarket]],
    now_ms: int,
    events: EventBook | None,
    fee_changes: EventFeeChanges | None,
) -> tuple[int, Any]:
    """``GET /events`` (``rest`` empty), ``GET /events/fee_changes`` or ``GET /events/{t}``."""
    if rest == ["fee_changes"]:
        return (fee_changes or EventFeeChanges()).rest_fee_changes(query)
    if not rest:
        return (events or EventBook([])).rest_events(query, market, now_ms)
    if events is None:
        return rest_event(rest[0], every(), now_ms)
    return events.rest_event(rest[0], query, market, every(), now_ms)


def _trades(
    query: Mapping[str, list[str]],
    market: Callable[[str], SimMarket],
    every: Callable[[], Iterable[SimMarket]],
) -> dict[str, Any]:
    ticker = query.get("ticker", [""])[0]
    limit = _int(query, "limit", 100)
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit must be between 1 and 1000, but got {limit}")
    min_ms, max_ms = _int(query, "min_ts", 0) * 1000, _int(query, "max_ts", 0) * 1000
    sources = [market(ticker)] if ticker else list(every())
    chosen = [
        t
        for m in sources
        if not m.unknown
        for t in reversed(m.trades)
        if t.ts_ms >= min_ms and (not max_ms or t.ts_ms <= max_ms)
    ]
    chosen.sort(key=lambda t: t.ts_ms, reverse=True)  # newest first, stable
    start = _int(query, "cursor", 0)
    end = start + limit
    return {
        "trades": [t.to_rest() for t in chosen[start:end]],
        "cursor": str(end) if end < len(chosen) else "",
    }


def _int(query: Mapping[str, list[str]], name: str, default: int) -> int:
    text = query.get(name, [""])[0]
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, but got {text!r}") from None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
