"""``watcher replay``: run a rules file over the recorded ticks, trades and lifecycle events.

The rule engine — the same :func:`watcher.rules.engine.evaluate` and
:class:`watcher.domain.market.Markets` the live pipeline uses — goes over recorded events in time
order, with rule state starting fresh, and yields the alerts it would have sent. Nothing is sent
or written. Time-driven rules see a clock event whenever recorded time moved on by the live
clock's interval (5 s), at the time of the next event.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from watcher.domain.alert import Alert
from watcher.domain.market import Markets
from watcher.domain.positions import Portfolio
from watcher.kalshi import messages as m
from watcher.rules import RulesConfig
from watcher.rules.engine import ClockEvent, RuleState, TickEvent, TradeEvent, evaluate
from watcher.rules.quiet import local_time
from watcher.service.pipeline import CLOCK_INTERVAL, apply_lifecycle
from watcher.store.queries import get_market, iter_ticks, iter_trades

__all__ = ["ReplayStats", "alert_line", "count_events", "replay"]

_CLOCK_MS = int(CLOCK_INTERVAL * 1000)


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
