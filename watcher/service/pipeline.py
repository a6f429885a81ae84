"""The pipeline task: feed events → store, market state → rule engine → outbox → sender.

Runs beside the receive loop, never in it. Alerts and the rule state that produced them are
written to the outbox in one transaction before anything is sent, so a crash or restart neither
repeats nor loses an alert. The scheduled jobs (:mod:`watcher.service.jobs`) call in here too: the rules
clock (:meth:`Pipeline.on_clock`), market metadata from REST (:meth:`Pipeline.apply_market`),
close detection (:meth:`Pipeline.check_closed`) and service alerts (:meth:`Pipeline.record`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from watcher.domain.alert import Alert, Severity
from watcher.domain.market import Markets, MarketState
from watcher.domain.positions import Portfolio
from watcher.errors import ConfigError
from watcher.kalshi import messages as m
from watcher.kalshi.client import LateTrade
from watcher.kalshi.fixed import to_micros
from watcher.notify.outbox import Outbox
from watcher.notify.sender import Sender
from watcher.rules import RulesConfig, is_suppressed
from watcher.rules.engine import (
    SETTLED_STATUSES,
    ClockEvent,
    LifecycleEvent,
    RuleState,
    TickEvent,
    TradeEvent,
    evaluate,
    unmatched_rules,
)
from watcher.rules.wording import clock_text
from watcher.store.queries import MarketRow
from watcher.store.writer import StoreWriter

__all__ = ["CLOCK_INTERVAL", "Pipeline", "SettledHook", "apply_lifecycle"]

logger = logging.getLogger("watcher.pipeline")

#: How often time-driven rules (closing_soon, stale, expiry) are evaluated, in seconds.
CLOCK_INTERVAL = 5.0
_OPEN_STATUSES = frozenset({"initialized", "active", "inactive"})
_STORED = (m.OrderbookSnapshot, m.OrderbookDelta, m.Fill)
_RESULTS = ("yes", "no")

#: Called once a watched market's result (yes/no) is known: ``(market state, now_ms)``.
SettledHook = Callable[[MarketState, int], Awaitable[None]]


class Pipeline:
    """Consumes feed events in order; owns market state, rule state, the outbox and sender.

    Args:
        db_path: the SQLite file (the outbox opens its own connection).
        store: the batched tick writer.
        portfolio: positions in force.
        rules: rules in force.
        clock: Unix time in seconds (tests patch it).
        on_settled: called once per watched market whose result becomes known (write-back).
    """

    def __init__(
        self,
        *,
        db_path: Path,
        store: StoreWriter,
        portfolio: Portfolio,
        rules: RulesConfig,
        clock: Callable[[], float] = time.time,
        on_settled: SettledHook | None = None,
    ) -> None:
        self.db_path = db_path
        self.store = store
        self.portfolio = portfolio
        self.rules = rules
        self.clock = clock
        self.on_settled = on_settled
        self.markets = Markets(history_ms=rules.history_ms)
        self.states: dict[tuple[str, str], RuleState] = {}
        self.alerts_fired = 0
        self.alerts_suppressed = 0
        #: Called with every event and its receive time (metrics' message-age histogram).
        self.observe: Callable[[Any, int], None] | None = None
        self.outbox: Outbox | None = None
        self.sender: Sender | None = None
        self._watched: frozenset[str] = frozenset()
        self._settled: set[str] = set()  # tickers whose result went to the settlement hook
        self._closed: set[str] = set()  # tickers whose close was alerted
        self.set_portfolio(portfolio)

    def __repr__(self) -> str:
        return (
            f"<Pipeline markets={len(self._watched)} rules={len(self.rules.rules)}"
            f" alerts={self.alerts_fired}>"
        )

    async def __aenter__(self) -> Pipeline:
        self.outbox = Outbox(self.db_path)
        saved = await asyncio.to_thread(self.outbox.load_rule_states)
        self.states = {key: RuleState.from_json(value) for key, value in saved.items()}
        self.sender = Sender(self.outbox, self.rules.notify)
        await self.sender.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sender is not None:
            await self.sender.__aexit__(None, None, None)
        if self.outbox is not None:
            self.outbox.close()

    # Public methods

    @property
    def watched(self) -> frozenset[str]:
        """Tickers of the watched positions."""
        return self._watched

    def now_ms(self) -> int:
        """The pipeline's clock in Unix milliseconds."""
        return int(self.clock() * 1000)

    def set_rules(self, rules: RulesConfig) -> None:
        self.rules = rules
        self.markets.history_ms = rules.history_ms
        for warning in unmatched_rules(rules, self.portfolio):
            logger.warning("%s", warning)
        if self.sender is not None:
            self.sender.update_targets(rules.notify)

    def set_portfolio(self, portfolio: Portfolio) -> None:
        """Swap positions: new markets are watched (`stale` counts from now), gone ones dropped."""
        now = self.now_ms()
        watched = frozenset(portfolio.tickers())
        for ticker in watched - self._watched:
            self.markets.watch(ticker, now)
        for ticker in self._watched - watched:
            self.markets.forget(ticker)
        self.portfolio = portfolio
        self._watched = watched

    async def consume(self, queue: asyncio.Queue[Any]) -> None:
        """Handle events until the ``None`` marker; every event before it is handled."""
        get, get_nowait = queue.get, queue.get_nowait
        while True:
            try:  # under load the queue is rarely empty: skip the get() coroutine
                event = get_nowait()
            except asyncio.QueueEmpty:
                event = await get()
            if event is None:
                return
            pending = self.handle_nowait(event)
            if pending is not None:
                await pending

    async def handle(self, event: Any) -> None:
        """Store ``event`` and run what it concerns: market state, rules, alerts."""
        pending = self.handle_nowait(event)
        if pending is not None:
            await pending

    def handle_nowait(self, event: Any) -> Awaitable[object] | None:
        """Start handling ``event``; return what is left to await, if anything.

        The usual tick or trade (row queued, rules evaluated, nothing fired) is handled here
        without a coroutine. What must wait comes back as an awaitable: recording alerts or
        rule states, a full store queue (backpressure, never a drop), rare frame types.
        """
        now = self.now_ms()
        if self.observe is not None:
            self.observe(event, now)
        kind = type(event)
        if kind is not m.Ticker and kind is not m.Trade:
            return self._handle_other(event, now)
        if not self.store.put_nowait(event, now):
            return self._store_then_rules(event, now)
        return self._rules_for(event, now)

    def _rules_for(self, event: m.Ticker | m.Trade, now: int) -> Awaitable[object] | None:
        """Market state and rules for a live tick or trade of a watched market."""
        if event.msg.market_ticker not in self._watched:
            return None
        if isinstance(event, m.Ticker):
            return self._on_ticker(event, now)
        return self._on_trade(event, now, late=False)

    async def _store_then_rules(self, event: m.Ticker | m.Trade, now: int) -> None:
        await self.store.put(event, now)
        pending = self._rules_for(event, now)
        if pending is not None:
            await pending

    async def _handle_other(self, event: Any, now: int) -> None:
        """Everything but live ticks and trades: late trades, lifecycle, book and fill frames."""
        if isinstance(event, LateTrade):
            await self._store(event.trade, now, late=True)
            pending = self._on_trade(event.trade, now, late=True)
            if pending is not None:
                await pending
        elif isinstance(event, m.MarketLifecycle):
            if event.msg.market_ticker in self._watched:
                await self._store(event, now)
                await self._on_lifecycle(event, now)
        elif isinstance(event, _STORED):
            await self._store(event, now)

    async def _store(self, event: Any, now: int, *, late: bool = False) -> None:
        """Queue the row; wait (backpressure, never drop) only when the writer's queue is full."""
        if not self.store.put_nowait(event, now, late=late):
            await self.store.put(event, now, late=late)

    async def on_clock(self) -> None:
        """Evaluate the time-driven rules (closing_soon, stale, settled from REST) now."""
        now = self.now_ms()
        pending = self._evaluate(ClockEvent(now), now)
        if pending is not None:
            await pending

    async def apply_market(self, row: MarketRow) -> MarketState | None:
        """Apply market metadata from REST (title, status, close time, result) and store it.

        Ignored (None) for a market no longer watched. A result learned here triggers the
        settlement hook; the ``settled`` rule sees it on the next clock tick.
        """
        if row.market_ticker not in self._watched:
            return None
        state = self.markets.apply_metadata(
            row.market_ticker,
            title=row.title,
            status=row.status,
            close_time_ms=row.close_time_ms,
            result=row.result,
        )
        await self.store.write_market(row)
        await self._maybe_settled(state, self.now_ms())
        return state

    async def check_closed(self) -> list[str]:
        """Mark watched markets whose close time passed as ``closed``; alert once for each
        market that stopped trading (REST ``closed`` or the clock). Returns their tickers."""
        now = self.now_ms()
        alerts: list[Alert] = []
        for state in self.markets:
            if state.ticker not in self._watched or state.ticker in self._closed:
                continue
            if not _has_closed(state, now):
                continue
            self._closed.add(state.ticker)
            if state.status in _OPEN_STATUSES or state.status is None:
                self.markets.apply_metadata(state.ticker, status="closed")
                await self.store.write_market(MarketRow(state.ticker, status="closed"))
            close = state.close_time_ms or now
            alerts.append(
                self.service_alert(
                    key=f"market-closed|{state.ticker}|{state.close_time_ms or 'status'}",
                    rule="market-closed",
                    market_ticker=state.ticker,
                    severity="info",
                    title=f"{state.ticker} · closed for trading",
                    body=f"trading closed at {clock_text(close, self.rules.tz)};"
                    " waiting for the result",
                    now_ms=now,
                )
            )
        if alerts:
            await self.record(alerts, {}, now)
        return [alert.market_ticker for alert in alerts]

    async def unknown_market(self, ticker: str) -> None:
        """Kalshi does not know ``ticker`` (REST 404): one warning per trades.json entry, naming
        it as ``trades.json:LINE: trade #N (TICKER)``."""
        now = self.now_ms()
        name = Path(self.portfolio.path).name
        alerts = []
        for position in self.portfolio.by_ticker(ticker, watched_only=True):
            where = f"{name}:{position.line}: trade #{position.index} ({ticker})"
            logger.warning("%s: Kalshi has no market with this ticker (REST 404)", where)
            alerts.append(
                self.service_alert(
                    key=f"unknown-market|{ticker}|{position.line}",
                    rule="unknown-market",
                    market_ticker=ticker,
                    severity="warning",
                    title=f"{ticker} · unknown market",
                    body=f"{where}: Kalshi has no market with this ticker (REST 404);"
                    f" check the ticker in {name}",
                    now_ms=now,
                )
            )
        if alerts:
            await self.record(alerts, {}, now)

    def service_alert(
        self,
        *,
        key: str,
        rule: str,
        title: str,
        body: str,
        severity: Severity,
        now_ms: int,
        market_ticker: str = "",
        quiet: bool = True,
    ) -> Alert:
        """An alert of the service itself (not of a rule): default targets, quiet hours
        honoured unless ``quiet`` is False."""
        rules = self.rules
        return Alert(
            key=key,
            rule=rule,
            market_ticker=market_ticker,
            severity=severity,
            title=title,
            body=body,
            targets=tuple(rules.defaults.notify),
            at_ms=now_ms,
            suppressed=quiet and is_suppressed(rules.quiet_hours, rules.tz, now_ms, severity),
        )

    async def config_error(self, file: str, errors: list[ConfigError], digest: str) -> None:
        """Alert once per distinct broken content of a config file."""
        now = self.now_ms()
        body = "\n".join(e.located() for e in errors[:10])
        alert = Alert(
            key=f"config|{file}|{digest}",
            rule="config",
            market_ticker="",
            severity="warning",
            title=f"{Path(file).name} is invalid; the last good version stays in force",
            body=body,
            targets=tuple(self.rules.defaults.notify),
            at_ms=now,
        )
        await self.record([alert], {}, now)

    async def record(
        self, alerts: Sequence[Alert], states: dict[tuple[str, str], str], now: int
    ) -> int:
        """Record alerts (with rule states) in the outbox and wake the sender.

        Returns:
            how many alerts were new (a key already recorded is not recorded again).
        """
        assert self.outbox is not None and self.sender is not None
        new = await asyncio.to_thread(self.outbox.record, alerts, states, now_ms=now)
        if not new:
            return 0
        self.alerts_fired += len(new)
        self.alerts_suppressed += sum(1 for alert in alerts if alert.suppressed)
        for alert in alerts:
            if alert.suppressed:
                logger.info(
                    "alert held by quiet hours (recorded, not sent): %s: %s",
                    alert.title,
                    alert.body.replace("\n", " | "),
                )
            elif alert.targets:
                logger.info(
                    "alert [%s] %s -> %s", alert.severity, alert.title, ", ".join(alert.targets)
                )
            # Alerts without targets are printed by the outbox as the console delivery.
        self.sender.wake()
        return len(new)

    # Private methods

    def _on_ticker(self, event: m.Ticker, now: int) -> Awaitable[object] | None:
        msg = event.msg
        ticker = msg.market_ticker
        if ticker not in self._watched:
            return None
        ts = m.timestamp_ms(msg.ts_ms, msg.ts, event.sending_ts_ms) or now
        self.markets.apply_ticker(
            ticker,
            ts,
            yes_bid=to_micros(msg.yes_bid_dollars),
            yes_ask=to_micros(msg.yes_ask_dollars),
            yes_last=to_micros(msg.price_dollars),
        )
        return self._evaluate(TickEvent(ticker, ts), now)

    def _on_trade(self, event: m.Trade, now: int, *, late: bool) -> Awaitable[object] | None:
        msg = event.msg
        if msg.market_ticker not in self._watched:
            return None
        ts = m.timestamp_ms(msg.ts_ms, msg.ts, event.sending_ts_ms) or now
        trade = TradeEvent(
            msg.market_ticker,
            ts,
            msg.trade_id,
            to_micros(msg.yes_price_dollars),
            to_micros(msg.count_fp),
            msg.taker_side,
            late,
        )
        self.markets.apply_trade(trade.ticker, ts, trade.yes_price, late=late)
        return self._evaluate(trade, now)

    async def _on_lifecycle(self, event: m.MarketLifecycle, now: int) -> None:
        lifecycle, state = apply_lifecycle(self.markets, event, now)
        pending = self._evaluate(lifecycle, now)
        if pending is not None:
            await pending
        await self._maybe_settled(state, now)

    async def _maybe_settled(self, state: MarketState, now: int) -> None:
        if state.result not in _RESULTS or state.ticker in self._settled:
            return
        self._settled.add(state.ticker)
        if self.on_settled is not None:
            await self.on_settled(state, now)

    def _evaluate(self, event: Any, now: int) -> Awaitable[object] | None:
        """Run the rules; return the recording of what they decided, or None (the usual case)."""
        decision = evaluate(self.rules, self.portfolio, self.markets, event, self.states, now)
        if not decision.alerts and not decision.changed:
            return None
        self.states.update(decision.changed)
        changed = {key: state.to_json() for key, state in decision.changed.items()}
        return self.record(decision.alerts, changed, now)


def apply_lifecycle(
    markets: Markets, frame: m.MarketLifecycle, fallback_ms: int
) -> tuple[LifecycleEvent, MarketState]:
    """Apply a ``market_lifecycle_v2`` frame to market state; return the rule event for it.

    The event's time is the settlement or determination time, else the frame's sending time,
    else ``fallback_ms``. Shared by the live pipeline and ``watcher replay``.
    """
    msg = frame.msg
    ts = m.timestamp_ms(None, msg.settled_ts or msg.determination_ts, frame.sending_ts_ms)
    ts = ts or fallback_ms
    value = to_micros(msg.settlement_value) if msg.settlement_value is not None else None
    state = markets.apply_lifecycle(
        msg.market_ticker,
        ts,
        msg.event_type,
        result=msg.result,
        close_time_ms=msg.close_ts * 1000 if msg.close_ts is not None else None,
        settlement_value_micros=value,
    )
    return LifecycleEvent(msg.market_ticker, ts, msg.event_type, msg.result, value), state


def _has_closed(state: MarketState, now_ms: int) -> bool:
    """True when REST says ``closed``, or the close time passed before a result is known."""
    if state.status == "closed":
        return True
    if state.status in SETTLED_STATUSES or state.result in _RESULTS:
        return False
    return state.close_time_ms is not None and state.close_time_ms <= now_ms
