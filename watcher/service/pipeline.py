"""The pipeline task: feed events → store, decision step → alert store → sender.

Runs beside the receive loop, never in it. Kalshi frames become domain events here
(:mod:`watcher.rules.feed`) and go through the one decision step
(:class:`watcher.rules.session.Session`) that ``watcher replay`` uses too. Alerts and the rule
state that produced them are recorded in the alert store in one transaction before anything is
sent, so a crash or restart neither repeats nor loses an alert.

The scheduled jobs (:mod:`watcher.service.jobs`) see the pipeline through
:class:`~watcher.service.jobs.JobsHost`: the rules clock (:meth:`Pipeline.on_clock`), close
detection (:meth:`Pipeline.check_closed`), the digest's views and service alerts. The REST
poller calls :meth:`Pipeline.apply_market` and :meth:`Pipeline.unknown_market`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from watcher.domain.alert import Alert, Severity
from watcher.domain.market import Markets, MarketState
from watcher.domain.positions import Portfolio
from watcher.errors import ConfigError
from watcher.kalshi import messages as m
from watcher.kalshi.client import LateTrade
from watcher.notify.sender import Sender
from watcher.rules import RulesConfig
from watcher.rules.coverage import unmatched_rules
from watcher.rules.engine import StateKey
from watcher.rules.events import ClockEvent, Event
from watcher.rules.feed import lifecycle_event, tick_event, trade_event
from watcher.rules.session import Session
from watcher.rules.state import RuleState
from watcher.service import alerts as service_alerts
from watcher.service.digest import PositionView, view_position
from watcher.service.recording import Closer, Recording
from watcher.service.volume_seed import seed_from_backend
from watcher.store.ports import AlertStore, Backend, TickSink
from watcher.store.records import MarketRow

__all__ = ["Pipeline", "SettledHook"]

logger = logging.getLogger("watcher.pipeline")

_STORED = (m.OrderbookSnapshot, m.OrderbookDelta, m.Fill)
_RESULTS = ("yes", "no")

#: Called once a watched market's result (yes/no) is known: ``(market state, now_ms)``.
SettledHook = Callable[[MarketState, int], Awaitable[None]]


class Pipeline(Recording):
    """Consumes feed events in order; owns the decision session, the alert store and sender
    (recording, and acting on the rules that act: :class:`~watcher.service.recording.Recording`).

    Args:
        open_alert_store: opens the alert store when the pipeline starts (it is closed when
            the pipeline stops); e.g. :meth:`watcher.store.ports.Backend.alert_store`.
        store: the batched tick sink.
        portfolio: positions in force.
        rules: rules in force.
        clock: Unix time in seconds (tests patch it).
        on_settled: called once per watched market whose result becomes known (write-back).
        closer: closes paper positions for rules with ``action: close`` (the paper desk).
    """

    def __init__(
        self,
        *,
        open_alert_store: Callable[[], Awaitable[AlertStore]],
        store: TickSink,
        portfolio: Portfolio,
        rules: RulesConfig,
        clock: Callable[[], float] = time.time,
        on_settled: SettledHook | None = None,
        closer: Closer | None = None,
    ) -> None:
        super().__init__(closer)
        self.open_alert_store = open_alert_store
        self.store = store
        self.clock = clock
        self.on_settled = on_settled
        self.session = Session(rules=rules, portfolio=portfolio)
        #: Called with every event and its receive time (metrics' message-age histogram).
        self.observe: Callable[[Any, int], None] | None = None
        self._watched: frozenset[str] = frozenset()
        self._watch_only: frozenset[str] = frozenset()  # markets of watched events
        self._settled: set[str] = set()  # tickers whose result went to the settlement hook
        self._closed: set[str] = set()  # tickers whose close was alerted
        self.set_portfolio(portfolio)

    def __repr__(self) -> str:
        return (
            f"<Pipeline markets={len(self._watched)} rules={len(self.rules.rules)}"
            f" alerts={self.alerts_fired}>"
        )

    async def __aenter__(self) -> Pipeline:
        self.alert_store = alert_store = await self.open_alert_store()
        saved = await alert_store.load_rule_states()
        self.session.states = {key: RuleState.from_json(value) for key, value in saved.items()}
        self.sender = Sender(alert_store, self.rules.notify, awaiting=self.rules.chat_targets)
        await self.sender.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sender is not None:
            await self.sender.__aexit__(None, None, None)
        if self.alert_store is not None:
            await self.alert_store.close()

    # Public methods: state in force

    @property
    def rules(self) -> RulesConfig:
        """The rules in force."""
        return self.session.rules

    @property
    def portfolio(self) -> Portfolio:
        """The positions in force."""
        return self.session.portfolio

    @property
    def markets(self) -> Markets:
        """The market view the rules see."""
        return self.session.markets

    @property
    def states(self) -> dict[StateKey, RuleState]:
        """Rule state by (rule name, scope)."""
        return self.session.states

    @property
    def watched(self) -> frozenset[str]:
        """Tickers of the watched positions and of the watched events' markets."""
        return self._watched

    def now_ms(self) -> int:
        """The pipeline's clock in Unix milliseconds."""
        return int(self.clock() * 1000)

    def set_rules(self, rules: RulesConfig) -> None:
        """Put new rules in force (warning about rules that apply to no market; the paper
        desk takes the new fee rate)."""
        self.session.set_rules(rules)
        for warning in unmatched_rules(rules, self.portfolio):
            logger.warning("%s", warning)
        if self.sender is not None:
            self.sender.update_targets(rules.notify, awaiting=rules.chat_targets)
        if self.closer is not None:
            self.closer.fee_rate = rules.fees.taker_rate

    def set_portfolio(self, portfolio: Portfolio) -> None:
        """Swap positions: new markets are watched (`stale` counts from now), gone ones dropped."""
        now = self.now_ms()
        watched = frozenset(portfolio.tickers()) | self._watch_only
        for ticker in watched - self._watched:
            self.markets.watch(ticker, now)
        for ticker in self._watched - watched:
            self.markets.forget(ticker)
        self.session.portfolio = portfolio
        self._watched = watched

    def set_watch_only(self, tickers: frozenset[str]) -> None:
        """Watch the markets of watched events (no position): tracked and given to the rules."""
        now = self.now_ms()
        watched = frozenset(self.portfolio.tickers()) | tickers
        for ticker in watched - self._watched:
            self.markets.watch(ticker, now)
        for ticker in self._watched - watched:
            self.markets.forget(ticker)
        self._watch_only, self._watched = tickers, watched

    async def seed_volume(self, backend: Backend) -> None:
        """Seed the watched markets' ``volume_spike`` baselines from the stored ticks."""
        await seed_from_backend(backend, self.session, self._watched, self.now_ms())

    # Public methods: the feed

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

    # Public methods: what the jobs and the REST poller call

    async def on_clock(self) -> None:
        """Evaluate the time-driven rules (closing_soon, stale, settled from REST) now."""
        now = self.now_ms()
        pending = self._decide(ClockEvent(now), now)
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
            if not service_alerts.has_closed(state, now):
                continue
            self._closed.add(state.ticker)
            if state.status in service_alerts.OPEN_STATUSES or state.status is None:
                self.markets.apply_metadata(state.ticker, status="closed")
                await self.store.write_market(MarketRow(state.ticker, status="closed"))
            alerts.append(service_alerts.closed_alert(self.rules, state, now))
        if alerts:
            await self.record(alerts, {}, now)
        return [alert.market_ticker for alert in alerts]

    async def unknown_market(self, ticker: str) -> None:
        """Kalshi does not know ``ticker`` (REST 404): one warning per trades.json entry, naming
        it as ``trades.json:LINE: trade #N (TICKER)``."""
        now = self.now_ms()
        alerts = service_alerts.unknown_market_alerts(self.rules, self.portfolio, ticker, now)
        if alerts:
            await self.record(alerts, {}, now)

    async def config_error(self, file: str, errors: list[ConfigError], digest: str) -> None:
        """Alert once per distinct broken content of a config file."""
        now = self.now_ms()
        await self.record(
            [service_alerts.config_alert(self.rules, file, errors, digest, now)], {}, now
        )

    @property
    def tz(self) -> ZoneInfo:
        """The rules' time zone."""
        return self.rules.tz

    @property
    def positions_path(self) -> str:
        """Where the positions in force were read from."""
        return self.portfolio.path

    def position_views(self) -> list[PositionView]:
        """Every watched position marked at its market's current prices."""
        views = []
        for position in self.portfolio.watched():
            state = self.markets.get(position.ticker) or MarketState(position.ticker)
            views.append(
                view_position(
                    position, yes_bid=state.yes_bid, yes_ask=state.yes_ask, yes_last=state.yes_last
                )
            )
        return views

    async def record_service_alert(
        self,
        *,
        key: str,
        rule: str,
        title: str,
        body: str,
        severity: Severity,
        now_ms: int,
        quiet: bool = True,
    ) -> int:
        """Record an alert of the service itself (default targets; quiet hours honoured unless
        ``quiet`` is False). Returns 1 if it was new, 0 if its key was recorded before."""
        alert = service_alerts.service_alert(
            self.rules,
            key=key,
            rule=rule,
            title=title,
            body=body,
            severity=severity,
            now_ms=now_ms,
            quiet=quiet,
        )
        return await self.record([alert], {}, now_ms)

    # Private methods

    def _rules_for(self, event: m.Ticker | m.Trade, now: int) -> Awaitable[object] | None:
        """The decision step for a live tick or trade of a watched market."""
        if event.msg.market_ticker not in self._watched:
            return None
        # The step is called here rather than through _decide: one call fewer per message.
        if isinstance(event, m.Ticker):
            decision = self.session.step(tick_event(event, now), now)
        else:
            decision = self.session.step(trade_event(event, now, late=False), now)
        if not decision.alerts and not decision.changed:
            return None
        return self._record_decision(decision, now)

    async def _store_then_rules(self, event: m.Ticker | m.Trade, now: int) -> None:
        await self.store.put(event, now)
        pending = self._rules_for(event, now)
        if pending is not None:
            await pending

    async def _handle_other(self, event: Any, now: int) -> None:
        """Everything but live ticks and trades: late trades, lifecycle, book and fill frames."""
        if isinstance(event, LateTrade):
            await self._store(event.trade, now, late=True)
            if event.trade.msg.market_ticker in self._watched:
                pending = self._decide(trade_event(event.trade, now, late=True), now)
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

    async def _on_lifecycle(self, frame: m.MarketLifecycle, now: int) -> None:
        event = lifecycle_event(frame, now)
        pending = self._decide(event, now)
        if pending is not None:
            await pending
        await self._maybe_settled(self.markets[event.ticker], now)

    async def _maybe_settled(self, state: MarketState, now: int) -> None:
        if state.result not in _RESULTS or state.ticker in self._settled:
            return
        self._settled.add(state.ticker)
        if self.on_settled is not None:
            await self.on_settled(state, now)

    def _decide(self, event: Event, now: int) -> Awaitable[object] | None:
        """The decision step; return the recording of what it decided, or None (the usual
        case: nothing fired, no rule state changed)."""
        decision = self.session.step(event, now)
        if not decision.alerts and not decision.changed:
            return None
        return self._record_decision(decision, now)
