"""``watcher replay``: run a rules file over the recorded ticks, trades and lifecycle events.

The decision step the live pipeline uses — :class:`watcher.rules.session.Session` — goes over
the recorded events in time order, with rule state starting fresh, and yields the alerts it
would have sent. Nothing is sent or written. Time-driven rules see a clock event whenever
recorded time moved on by the live clock's interval (:class:`watcher.rules.session.RecordedClock`),
at the time of the next event.

A rule that acts (``action: close``) only says what it would have done: its line ends with
``(would close 50 YES at 20¢)``; no position is closed and nothing is written. The positions
are taken as they were over the recording: an entry closed by a paper fill (CLOSED, with a
``closed_at`` time) is watched again until a moment after it was closed, so the rule that closed
it fires in the replay as it did live (a partial close's CLOSED part, with ``parent_id``, is
not: its contracts were part of the entry still open).

The stored event expansions (``events``, written by the live service) are the session's
events, and every market of them is replayed and watched beside the positions', so
``event_arbitrage`` and ``ladder`` fire in a replay as they did live.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from watcher.domain.alert import Alert
from watcher.domain.event import EventInfo
from watcher.domain.positions import Portfolio, Position
from watcher.kalshi.fixed import format_cents
from watcher.ops.readout import time_text
from watcher.rules import RulesConfig
from watcher.rules.events import Event, TickEvent, TradeEvent
from watcher.rules.feed import lifecycle_event
from watcher.rules.session import RecordedClock, Session
from watcher.rules.wording import contracts_text
from watcher.store.ports import ReadModel
from watcher.store.records import MarketRow

__all__ = [
    "ReplayStats",
    "alert_json",
    "alert_line",
    "as_it_was",
    "count_replay_events",
    "replay",
    "replay_tickers",
    "summary_line",
    "would_do",
]

#: A closed entry stays watched this long after its ``closed_at``: the live run stopped
#: watching it only when it reloaded trades.json, and exchange and local clocks differ a little.
CLOSE_GRACE_MS = 5_000

#: (when it stops being watched, Unix ms; the entry) of each entry a replay reopens.
Closing = tuple[int, Position]


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
    """Yield the alerts ``rules`` would have raised over the recorded data, in time order
    (:meth:`ReadModel.replay_events`, counted by ``count_events``), with the stored events.

    Args:
        read_model: where the recorded events are read.
        rules: the rules to test.
        portfolio: the positions, as they were (:func:`as_it_was`).
        since_ms, until_ms: the time range (``until`` excluded); None is open.
        markets: only these tickers (None: the positions' and stored events' markets).
        stats: filled with counts as the replay runs.
        progress: called with the number of events handled since the last call.
    """
    portfolio, closings = as_it_was(portfolio, since_ms)
    stats = stats if stats is not None else ReplayStats()
    infos = await read_model.events()
    stats.markets = tickers = replay_tickers(portfolio, markets, infos)
    stored = {t: await read_model.get_market(t) for t in tickers}
    run, done = _Replay(rules, portfolio, tickers, stored, closings, infos), 0
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


def replay_tickers(
    portfolio: Portfolio, markets: Collection[str] | None, events: Collection[EventInfo] = ()
) -> list[str]:
    """The markets a replay goes over: the watched positions', then the stored events' (only
    ``markets`` if given)."""
    every = dict.fromkeys([*portfolio.tickers(), *(t for e in events for t in e.tickers)])
    return [t for t in every if markets is None or t in markets]


async def count_replay_events(
    read_model: ReadModel,
    portfolio: Portfolio,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    markets: Collection[str] | None = None,
) -> int:
    """How many recorded events :func:`replay` will go through (for a progress bar)."""
    infos = await read_model.events()
    tickers = replay_tickers(as_it_was(portfolio, since_ms)[0], markets, infos)
    return await read_model.count_events(since_ms=since_ms, until_ms=until_ms, markets=tickers)


def as_it_was(portfolio: Portfolio, since_ms: int | None = None) -> tuple[Portfolio, list[Closing]]:
    """``portfolio`` with every entry closed by a fill (after ``since_ms``) watched again, as
    OPEN, and when each of those stops being watched, soonest first."""
    reopened: list[Position] = []
    closings: list[Closing] = []
    for position in portfolio.positions:
        closed_ms = _closed_ms(position)
        if closed_ms is None or (since_ms is not None and closed_ms + CLOSE_GRACE_MS < since_ms):
            reopened.append(position)
            continue
        again = replace(position, status="OPEN")
        reopened.append(again)
        closings.append((closed_ms + CLOSE_GRACE_MS, again))
    if not closings:
        return portfolio, []
    return Portfolio(tuple(reopened), portfolio.path), sorted(closings, key=lambda c: c[0])


def would_do(alert: Alert) -> str | None:
    """What ``alert``'s action would have done: ``would close 50 YES at 20¢`` (None when the
    alert has no action)."""
    if alert.action is None:
        return None
    what = f"would {alert.action}"
    if alert.action_contracts is not None:
        what += f" {contracts_text(alert.action_contracts)}"
    if alert.action_side is not None:
        what += f" {alert.action_side}"
    if alert.action_price_micros is None:
        return f"{what}, but there was no bid"
    return f"{what} at {format_cents(alert.action_price_micros)}"


def alert_line(alert: Alert, tz: ZoneInfo) -> str:
    """One line of ``watcher replay``: when (labelled), the market, severity, rule and body,
    then what the rule would have done (``(would close 50 YES at 20¢)``)."""
    when = time_text(alert.at_ms, tz)
    held = " (held by quiet hours)" if alert.suppressed else ""
    body = " ".join(alert.body.split())
    would = would_do(alert)
    acted = f" ({would})" if would else ""
    line = f"{when}  {alert.market_ticker or '-'}  [{alert.severity}] {alert.rule}: {body}"
    return f"{line}{held}{acted}"


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
    } | _action_json(alert)


def _action_json(alert: Alert) -> dict[str, Any]:
    if alert.action is None:
        return {}
    price = alert.action_price_micros
    return {
        "action": alert.action,
        "position_id": alert.position_id,
        "would": would_do(alert),
        "price_cents": None if price is None else format_cents(price).removesuffix("¢"),
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
        closings: list[Closing] | None = None,
        events: Collection[EventInfo] = (),
    ) -> None:
        self.tickers = tickers
        self.stored = stored
        by_ticker = {event.event_ticker: event for event in events}
        self.session = Session(rules=rules, portfolio=portfolio, events=by_ticker)
        self.clock = RecordedClock()
        self.closings = list(closings or ())

    def step(self, ts: int, kind: str, row: Any) -> list[Alert]:
        """The alerts of the clock event due at ``ts`` (if any), then of the event itself."""
        alerts: list[Alert] = []
        if self.clock.last_ms is None:
            self._begin(ts)
        if self.closings and self.closings[0][0] < ts:
            self._stop_watching(ts)
        clock = self.clock.advance(ts)
        if clock is not None:
            alerts += self.session.step(clock, ts).alerts
        alerts += self.session.step(_event(ts, kind, row), ts).alerts
        return alerts

    def _stop_watching(self, ts: int) -> None:
        """Stop watching the reopened entries that were closed (live) before ``ts``."""
        gone: list[Position] = []
        while self.closings and self.closings[0][0] < ts:
            gone.append(self.closings.pop(0)[1])
        portfolio = self.session.portfolio
        kept = tuple(p for p in portfolio.positions if all(p is not g for g in gone))
        self.session.portfolio = Portfolio(kept, portfolio.path)

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


def _closed_ms(position: Position) -> int | None:
    """When a CLOSED entry was closed by a fill (its ``closed_at``), Unix ms; None for any
    other entry (a hand-closed one, or the CLOSED part of a partial close)."""
    raw = position.raw
    closed_at = raw.get("closed_at")
    if position.status != "CLOSED" or not isinstance(closed_at, str) or "parent_id" in raw:
        return None
    try:
        at = datetime.fromisoformat(closed_at.strip())
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def _event(ts: int, kind: str, row: Any) -> Event:
    """A stored row (or lifecycle frame) as the domain event the live pipeline built."""
    if kind == "ticks":
        return TickEvent(
            row.market_ticker,
            ts,
            row.yes_bid_e6,
            row.yes_ask_e6,
            row.price_e6,
            row.volume_e6,
            row.open_interest_e6,
            row.yes_bid_size_e6,
            row.yes_ask_size_e6,
        )
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
