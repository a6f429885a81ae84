"""``watcher replay``: run a rules file over the recorded ticks, trades and lifecycle events.

The decision step the live pipeline uses — :class:`watcher.rules.session.Session` — goes over
the recorded events in time order, with rule state starting fresh, and yields the alerts it
would have sent. Nothing is sent or written. Time-driven rules see a clock event whenever
recorded time moved on by the live clock's interval (:class:`watcher.rules.session.RecordedClock`),
at the time of the next event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from watcher.domain.alert import Alert
from watcher.domain.positions import Portfolio
from watcher.ops.readout import time_text
from watcher.rules import RulesConfig
from watcher.rules.events import Event, TickEvent, TradeEvent
from watcher.rules.feed import lifecycle_event
from watcher.rules.session import RecordedClock, Session
from watcher.store.ports import ReadModel
from watcher.store.records import MarketRow

__all__ = [
    "ReplayStats",
    "alert_json",
    "alert_line",
    "count_replay_events",
    "replay",
    "replay_tickers",
    "summary_line",
]


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

    def saw(self, ts_ms: int, kind: str) -> None:
        """Count one recorded event of ``kind`` (``ticks``, ``trades``, ``lifecycle``)."""
        if self.first_ms is None:
            self.first_ms = ts_ms
        self.last_ms = ts_ms
        setattr(self, kind, getattr(self, kind) + 1)


async def replay(
    read_model: ReadModel,
    rules: RulesConfig,
    portfolio: Portfolio,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    markets: Collection[str] | None = None,
    stats: ReplayStats | None = None,
    progress: Callable[[int], None] | None = None,
) -> AsyncIterator[Alert]:
    """Yield the alerts ``rules`` would have raised over the recorded data, in time order.

    The events come from :meth:`ReadModel.replay_events` (their count: ``count_events``).

    Args:
        read_model: where the recorded events are read.
        rules: the rules to test.
        portfolio: the positions (rules without ``markets`` apply to watched ones).
        since_ms, until_ms: the time range (``until`` excluded); None is open.
        markets: only these tickers (None: every watched position's market).
        stats: filled with counts as the replay runs.
        progress: called with the number of events handled since the last call.
    """
    tickers = replay_tickers(portfolio, markets)
    stats = stats if stats is not None else ReplayStats()
    stats.markets = tickers
    run = _Replay(rules, portfolio, tickers, {t: await read_model.get_market(t) for t in tickers})
    done = 0
    events = read_model.replay_events(since_ms=since_ms, until_ms=until_ms, markets=tickers)
    async for ts, kind, row in events:
        stats.saw(ts, kind)
        for alert in run.step(ts, kind, row):
            stats.alerts += 1
            yield alert
        done += 1
        if progress is not None and done % 1000 == 0:
            progress(1000)
    if progress is not None and done % 1000:
        progress(done % 1000)


def replay_tickers(portfolio: Portfolio, markets: Collection[str] | None) -> list[str]:
    """The markets a replay goes over: the watched positions' (only ``markets`` if given)."""
    return [t for t in portfolio.tickers() if markets is None or t in markets]


async def count_replay_events(
    read_model: ReadModel,
    portfolio: Portfolio,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    markets: Collection[str] | None = None,
) -> int:
    """How many recorded events :func:`replay` will go through (for a progress bar)."""
    tickers = replay_tickers(portfolio, markets)
    return await read_model.count_events(since_ms=since_ms, until_ms=until_ms, markets=tickers)


def alert_line(alert: Alert, tz: ZoneInfo) -> str:
    """One line of ``watcher replay``: when (labelled), the market, severity, rule and body."""
    when = time_text(alert.at_ms, tz)
    held = " (held by quiet hours)" if alert.suppressed else ""
    body = " ".join(alert.body.split())
    return f"{when}  {alert.market_ticker or '-'}  [{alert.severity}] {alert.rule}: {body}{held}"


def alert_json(alert: Alert) -> dict[str, Any]:
    """One JSON object of ``watcher replay --json``."""
    return {
        "at_ms": alert.at_ms,
        "market_ticker": alert.market_ticker,
        "rule": alert.rule,
        "severity": alert.severity,
        "title": alert.title,
        "body": alert.body,
        "key": alert.key,
        "suppressed": alert.suppressed,
    }


def summary_line(stats: ReplayStats, tz: ZoneInfo) -> str:
    """The closing line of ``watcher replay``: what it went through and how many alerts."""
    if not stats.events or stats.first_ms is None or stats.last_ms is None:
        return "replay: no recorded ticks, trades or lifecycle events in this range"
    first = time_text(stats.first_ms, tz, "%Y-%m-%d %H:%M")
    last = time_text(stats.last_ms, tz, "%Y-%m-%d %H:%M")
    return (
        f"replay: {stats.ticks} ticks, {stats.trades} trades, {stats.lifecycle} lifecycle events"
        f" of {len(stats.markets)} markets from {first} to {last}: {stats.alerts} alerts"
        " (nothing was sent)"
    )


class _Replay:
    """One replay's decision session and recorded clock; ``step`` applies one recorded event.

    Stored rows become the same domain events the live pipeline builds from frames, and go
    through the same :meth:`watcher.rules.session.Session.step`.
    """

    def __init__(
        self,
        rules: RulesConfig,
        portfolio: Portfolio,
        tickers: list[str],
        stored: dict[str, MarketRow | None],
    ) -> None:
        self.tickers = tickers
        self.stored = stored
        self.session = Session(rules=rules, portfolio=portfolio)
        self.clock = RecordedClock()

    def step(self, ts: int, kind: str, row: Any) -> list[Alert]:
        """The alerts of the clock event due at ``ts`` (if any), then of the event itself."""
        alerts: list[Alert] = []
        if self.clock.last_ms is None:
            self._begin(ts)
        clock = self.clock.advance(ts)
        if clock is not None:
            alerts += self.session.step(clock, ts).alerts
        alerts += self.session.step(_event(ts, kind, row), ts).alerts
        return alerts

    def _begin(self, ts: int) -> None:
        """Watch every market from the first event on, with its stored close time."""
        markets = self.session.markets
        for ticker in self.tickers:
            markets.watch(ticker, ts)
            stored = self.stored.get(ticker)
            if stored is not None:
                markets.apply_metadata(
                    ticker, title=stored.title, close_time_ms=stored.close_time_ms
                )


def _event(ts: int, kind: str, row: Any) -> Event:
    """A stored row (or lifecycle frame) as the domain event the live pipeline built."""
    if kind == "ticks":
        return TickEvent(row.market_ticker, ts, row.yes_bid_e6, row.yes_ask_e6, row.price_e6)
    if kind == "trades":
        return TradeEvent(
            row.market_ticker,
            ts,
            row.trade_id,
            row.yes_price_e6,
            row.count_e6,
            row.taker_side,
            row.late,
        )
    return lifecycle_event(row, ts)
