"""Operator read-outs from the database: ``status``, ``history`` and ``replay``.

Everything here reads through a read-only connection (``open_database(path, readonly=True)``),
so it works while the service runs and never blocks its writer. ``cli.py`` only prints.

``replay`` runs the rule engine — the same :func:`watcher.rules.engine.evaluate` and
:class:`watcher.domain.market.Markets` the live pipeline uses — over recorded ticks, trades and
lifecycle events in time order, with rule state starting fresh, and yields the alerts it
would have sent. Nothing is sent or written. Time-driven rules see a clock event whenever
recorded time moved on by the live clock's interval (5 s), at the time of the next event.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from watcher.domain.alert import Alert
from watcher.domain.market import Markets
from watcher.domain.positions import Portfolio
from watcher.kalshi import messages as m
from watcher.kalshi.fixed import format_cents
from watcher.rules import RulesConfig
from watcher.rules.engine import (
    ClockEvent,
    RuleState,
    TickEvent,
    TradeEvent,
    evaluate,
)
from watcher.rules.fields import parse_duration
from watcher.rules.quiet import local_time
from watcher.rules.wording import contracts_text, signed_dollars, span_text
from watcher.service.digest import PositionView, view_position
from watcher.service.pipeline import CLOCK_INTERVAL, apply_lifecycle
from watcher.store.queries import (
    TickerRow,
    TradeRow,
    decimal_text,
    get_market,
    iter_ticks,
    iter_trades,
    latest_ticker,
    service_state,
    tick_history,
    trade_history,
)

__all__ = [
    "SERVICE_GONE_AFTER_MS",
    "FeedHealth",
    "ReplayStats",
    "StatusRow",
    "alert_line",
    "count_events",
    "history_json",
    "history_line",
    "parse_when",
    "read_history",
    "read_status",
    "render_status",
    "replay",
]

#: A heartbeat older than this means the service is not running.
SERVICE_GONE_AFTER_MS = 20_000
_CLOCK_MS = int(CLOCK_INTERVAL * 1000)
_EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
_KIND_ORDER = {"tick": 0, "trade": 1, "lifecycle": 2}


def parse_when(text: str, *, now_ms: int, tz: ZoneInfo) -> int:
    """``2h``/``1d`` ago, or an ISO date or date-time (local to ``tz`` when naive) → Unix ms.

    Raises:
        ValueError: neither a duration nor an ISO date/time.
    """
    try:
        return now_ms - parse_duration(text.strip()) // timedelta(milliseconds=1)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"expected a duration like 2h or 1d, or a date/time like 2026-01-15 or"
            f" 2026-01-15T09:30, but got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return (when - _EPOCH) // timedelta(milliseconds=1)


# Status


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One watched position as ``watcher status`` shows it."""

    view: PositionView
    last_tick_ms: int | None
    last_alert: tuple[int, str] | None  # (created_ms, rule)


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """What the service last recorded in ``service_state`` (all None if it never ran)."""

    status: str | None = None
    mode: str | None = None
    last_message_ms: int | None = None
    heartbeat_ms: int | None = None
    started_ms: int | None = None
    pid: str | None = None

    def is_running(self, now_ms: int) -> bool:
        """True when the service wrote a heartbeat recently and did not record a stop."""
        if self.heartbeat_ms is None or self.status == "stopped":
            return False
        return now_ms - self.heartbeat_ms <= SERVICE_GONE_AFTER_MS


def read_status(
    conn: sqlite3.Connection, portfolio: Portfolio
) -> tuple[list[StatusRow], FeedHealth]:
    """Every watched position with its latest stored quote and last alert, and feed health."""
    rows = []
    for position in portfolio.watched():
        tick = latest_ticker(conn, position.ticker)
        view = view_position(
            position,
            yes_bid=tick.yes_bid_e6 if tick else None,
            yes_ask=tick.yes_ask_e6 if tick else None,
            yes_last=tick.price_e6 if tick else None,
        )
        found = conn.execute(
            "SELECT created_ms, rule FROM alerts WHERE market_ticker = ?"
            " ORDER BY created_ms DESC, id DESC LIMIT 1",
            (position.ticker,),
        ).fetchone()
        alert = (int(found[0]), str(found[1])) if found else None
        rows.append(StatusRow(view, tick.received_ms if tick else None, alert))
    state = service_state(conn)
    health = FeedHealth(
        status=state.get("feed.status"),
        mode=state.get("feed.mode"),
        last_message_ms=_int_or_none(state.get("feed.last_message_ms")),
        heartbeat_ms=_int_or_none(state.get("service.heartbeat_ms")),
        started_ms=_int_or_none(state.get("service.started_ms")),
        pid=state.get("service.pid"),
    )
    return rows, health


def render_status(
    rows: list[StatusRow], health: FeedHealth, *, now_ms: int, tz: ZoneInfo
) -> list[str]:
    """The ``watcher status`` table and its feed line."""
    header = ("TICKER", "SIDE", "QTY", "ENTRY", "LAST", "MARK", "P&L", "LAST TICK", "LAST ALERT")
    table = [header]
    for row in rows:
        v = row.view
        table.append(
            (
                v.position.ticker,
                v.position.side,
                contracts_text(v.position.contracts),
                format_cents(v.position.entry_micros),
                _cents(v.last),
                _cents(v.mark),
                signed_dollars(v.pnl) if v.pnl is not None else "-",
                _ago(row.last_tick_ms, now_ms),
                _alert_text(row.last_alert, tz),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    if not rows:
        lines.append("(no watched positions)")
    lines.append(_feed_line(health, now_ms, tz))
    return lines


def _feed_line(health: FeedHealth, now_ms: int, tz: ZoneInfo) -> str:
    if health.heartbeat_ms is None:
        return "service: never ran on this database"
    if not health.is_running(now_ms):
        seen = local_time(health.heartbeat_ms, tz).strftime("%Y-%m-%d %H:%M")
        return f"service: not running (last seen {seen}, {_ago(health.heartbeat_ms, now_ms)})"
    since = local_time(health.started_ms or now_ms, tz).strftime("%Y-%m-%d %H:%M")
    data = (
        "no data yet"
        if health.last_message_ms is None
        else f"last data {_ago(health.last_message_ms, now_ms)}"
    )
    return (
        f"service: running (pid {health.pid}, {health.mode}) since {since};"
        f" feed {health.status}, {data}"
    )


# History


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


# Replay


@dataclass(slots=True)
class ReplayStats:
    """What a replay went through."""

    ticks: int = 0
    trades: int = 0
    lifecycle: int = 0
    alerts: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    markets: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return self.ticks + self.trades + self.lifecycle


def count_events(
    conn: sqlite3.Connection,
    *,
    since_ms: int | None,
    until_ms: int | None,
    markets: Collection[str],
) -> int:
    """How many ticks, trades and lifecycle events a replay will go through (progress bar)."""
    total = 0
    for table in ("tickers", "trades", "lifecycle_events"):
        where, params = _where(since_ms, until_ms, markets)
        total += int(
            conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]
        )
    return total


def replay(
    conn: sqlite3.Connection,
    rules: RulesConfig,
    portfolio: Portfolio,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    markets: Collection[str] | None = None,
    stats: ReplayStats | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Alert]:
    """Yield the alerts ``rules`` would have raised over the recorded data, in time order.

    Args:
        conn: a read-only connection.
        rules: the rules to test.
        portfolio: the positions (rules without ``markets`` apply to watched ones).
        since_ms, until_ms: the time range (``until`` excluded); None is open.
        markets: only these tickers (None: every watched position's market).
        stats: filled with counts as the replay runs.
        progress: called with the number of events handled since the last call.
    """
    stats = stats if stats is not None else ReplayStats()
    tickers = [t for t in portfolio.tickers() if markets is None or t in markets]
    stats.markets = tickers
    run = _Replay(rules, portfolio, tickers, conn)
    done = 0
    for ts, kind, row in _events(conn, since_ms, until_ms, tickers):
        if stats.first_ms is None:
            stats.first_ms = ts
        stats.last_ms = ts
        setattr(stats, kind, getattr(stats, kind) + 1)
        for alert in run.step(ts, kind, row):
            stats.alerts += 1
            yield alert
        done += 1
        if progress is not None and done % 1000 == 0:
            progress(1000)
    if progress is not None and done % 1000:
        progress(done % 1000)


def alert_line(alert: Alert, tz: ZoneInfo) -> str:
    """One line of ``watcher replay``: when, the market, severity, title and body."""
    when = local_time(alert.at_ms, tz).strftime("%Y-%m-%d %H:%M:%S")
    held = " (held by quiet hours)" if alert.suppressed else ""
    body = " ".join(alert.body.split())
    return f"{when}  {alert.market_ticker or '-'}  [{alert.severity}] {alert.rule}: {body}{held}"


class _Replay:
    """Market state and rule state of one replay; ``step`` applies one recorded event."""

    def __init__(
        self, rules: RulesConfig, portfolio: Portfolio, tickers: list[str], conn: sqlite3.Connection
    ) -> None:
        self.rules = rules
        self.portfolio = portfolio
        self.tickers = tickers
        self.conn = conn
        self.markets = Markets(history_ms=rules.history_ms)
        self.states: dict[tuple[str, str], RuleState] = {}
        self.last_clock: int | None = None

    def step(self, ts: int, kind: str, row: Any) -> list[Alert]:
        alerts: list[Alert] = []
        if self.last_clock is None:
            self._begin(ts)
        if self.last_clock is None or ts - self.last_clock >= _CLOCK_MS:
            self.last_clock = ts
            alerts += self._evaluate(ClockEvent(ts), ts)
        if kind == "ticks":
            self.markets.apply_ticker(
                row.market_ticker, ts, row.yes_bid_e6, row.yes_ask_e6, row.price_e6
            )
            alerts += self._evaluate(TickEvent(row.market_ticker, ts), ts)
        elif kind == "trades":
            event = TradeEvent(
                row.market_ticker,
                ts,
                row.trade_id,
                row.yes_price_e6,
                row.count_e6,
                row.taker_side,
                row.late,
            )
            self.markets.apply_trade(event.ticker, ts, event.yes_price, late=event.late)
            alerts += self._evaluate(event, ts)
        else:
            lifecycle, _ = apply_lifecycle(self.markets, row, ts)
            alerts += self._evaluate(lifecycle, ts)
        return alerts

    def _begin(self, ts: int) -> None:
        """Watch every market from the first event on, with its stored close time."""
        for ticker in self.tickers:
            self.markets.watch(ticker, ts)
            stored = get_market(self.conn, ticker)
            if stored is not None:
                self.markets.apply_metadata(
                    ticker, title=stored.title, close_time_ms=stored.close_time_ms
                )

    def _evaluate(self, event: Any, now: int) -> list[Alert]:
        decision = evaluate(self.rules, self.portfolio, self.markets, event, self.states, now)
        self.states.update(decision.changed)
        return decision.alerts


def _events(
    conn: sqlite3.Connection, since_ms: int | None, until_ms: int | None, tickers: list[str]
) -> Iterator[tuple[int, str, Any]]:
    """Ticks, trades and lifecycle events merged in time order (ticks first on a tie)."""
    ticks = (
        (r.ts_ms, "ticks", r)
        for r in iter_ticks(conn, since_ms=since_ms, until_ms=until_ms, markets=tickers)
    )
    trades = (
        (r.ts_ms, "trades", r)
        for r in iter_trades(conn, since_ms=since_ms, until_ms=until_ms, markets=tickers)
    )
    order = {"ticks": 0, "trades": 1, "lifecycle": 2}
    return heapq.merge(
        ticks,
        trades,
        _lifecycle_events(conn, since_ms, until_ms, tickers),
        key=lambda event: (event[0], order[event[1]]),
    )


def _lifecycle_events(
    conn: sqlite3.Connection, since_ms: int | None, until_ms: int | None, tickers: list[str]
) -> Iterator[tuple[int, str, Any]]:
    where, params = _where(since_ms, until_ms, tickers)
    sql = f"SELECT ts_ms, raw FROM lifecycle_events WHERE {where} ORDER BY ts_ms, id"
    for stored_ts, raw in conn.execute(sql, params):
        frame = m.decode_message(raw)
        if isinstance(frame, m.MarketLifecycle):
            yield stored_ts, "lifecycle", frame


# Helpers


def _where(
    since_ms: int | None, until_ms: int | None, markets: Collection[str]
) -> tuple[str, list[Any]]:
    names = sorted(set(markets))
    where = [f"market_ticker IN ({', '.join('?' * len(names))})", "ts_ms >= ?"]
    params: list[Any] = [*names, -(2**63) if since_ms is None else since_ms]
    if until_ms is not None:
        where.append("ts_ms < ?")
        params.append(until_ms)
    return " AND ".join(where), params


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.lstrip("-").isdigit() else None


def _cents(micros: int | None) -> str:
    return "-" if micros is None else format_cents(micros)


def _ago(ms: int | None, now_ms: int) -> str:
    return "-" if ms is None else f"{span_text(now_ms - ms)} ago"


def _alert_text(alert: tuple[int, str] | None, tz: ZoneInfo) -> str:
    if alert is None:
        return "-"
    created, rule = alert
    return f"{local_time(created, tz).strftime('%m-%d %H:%M')} {rule}"
