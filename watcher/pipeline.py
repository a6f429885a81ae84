"""The pipeline task: feed events → store, market state → rule engine → outbox → sender.

Runs beside the receive loop, never in it. Alerts and the rule state that produced them are
written to the outbox in one transaction before anything is sent, so a crash or restart neither
repeats nor loses an alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watcher.alert import Alert
from watcher.errors import ConfigError
from watcher.kalshi import messages as m
from watcher.kalshi.client import LateTrade
from watcher.kalshi.fixed import to_micros
from watcher.market import Markets
from watcher.notify.outbox import Outbox
from watcher.notify.sender import Sender
from watcher.positions import Portfolio
from watcher.rules import RulesConfig
from watcher.rules.engine import (
    ClockEvent,
    LifecycleEvent,
    RuleState,
    TickEvent,
    TradeEvent,
    evaluate,
    unmatched_rules,
)
from watcher.store.writer import StoreWriter

__all__ = ["CLOCK_INTERVAL", "Pipeline"]

logger = logging.getLogger("watcher.pipeline")

#: How often time-driven rules (closing_soon, stale, expiry) are evaluated, in seconds.
CLOCK_INTERVAL = 5.0
_STORED = (m.OrderbookSnapshot, m.OrderbookDelta, m.Fill)


class Pipeline:
    """Consumes feed events in order; owns market state, rule state, the outbox and sender.

    Args:
        db_path: the SQLite file (the outbox opens its own connection).
        store: the batched tick writer.
        portfolio: positions in force.
        rules: rules in force.
        clock: Unix time in seconds (tests patch it).
    """

    def __init__(
        self,
        *,
        db_path: Path,
        store: StoreWriter,
        portfolio: Portfolio,
        rules: RulesConfig,
        clock: Callable[[], float] = time.time,
        clock_interval: float = CLOCK_INTERVAL,
    ) -> None:
        self.db_path = db_path
        self.store = store
        self.portfolio = portfolio
        self.rules = rules
        self.clock = clock
        self.clock_interval = clock_interval
        self.markets = Markets(history_ms=rules.history_ms)
        self.states: dict[tuple[str, str], RuleState] = {}
        self.alerts_fired = 0
        self.outbox: Outbox | None = None
        self.sender: Sender | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self._watched: frozenset[str] = frozenset()
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
        self.scheduler = AsyncIOScheduler()
        self.scheduler.add_job(
            self.on_clock,
            "interval",
            seconds=self.clock_interval,
            id="rules-clock",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(self.clock_interval),
        )
        self.scheduler.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.sender is not None:
            await self.sender.__aexit__(None, None, None)
        if self.outbox is not None:
            self.outbox.close()

    # Public methods

    def set_rules(self, rules: RulesConfig) -> None:
        self.rules = rules
        self.markets.history_ms = rules.history_ms
        for warning in unmatched_rules(rules, self.portfolio):
            logger.warning("%s", warning)
        if self.sender is not None:
            self.sender.update_targets(rules.notify)

    def set_portfolio(self, portfolio: Portfolio) -> None:
        """Swap positions: new markets are watched (`stale` counts from now), gone ones dropped."""
        now = int(self.clock() * 1000)
        watched = frozenset(portfolio.tickers())
        for ticker in watched - self._watched:
            self.markets.watch(ticker, now)
        for ticker in self._watched - watched:
            self.markets.forget(ticker)
        self.portfolio = portfolio
        self._watched = watched

    async def consume(self, queue: asyncio.Queue[Any]) -> None:
        """Handle events until the ``None`` marker; every event before it is handled."""
        while True:
            event = await queue.get()
            if event is None:
                return
            await self.handle(event)

    async def handle(self, event: Any) -> None:
        now = int(self.clock() * 1000)
        if isinstance(event, m.Ticker):
            await self.store.put(event, now)
            await self._on_ticker(event, now)
        elif isinstance(event, m.Trade):
            await self.store.put(event, now)
            await self._on_trade(event, now, late=False)
        elif isinstance(event, LateTrade):
            await self.store.put(event.trade, now, late=True)
            await self._on_trade(event.trade, now, late=True)
        elif isinstance(event, m.MarketLifecycle):
            if event.msg.market_ticker in self._watched:
                await self.store.put(event, now)
                await self._on_lifecycle(event, now)
        elif isinstance(event, _STORED):
            await self.store.put(event, now)

    async def on_clock(self) -> None:
        now = int(self.clock() * 1000)
        await self._evaluate(ClockEvent(now), now)

    async def config_error(self, file: str, errors: list[ConfigError], digest: str) -> None:
        """Alert once per distinct broken content of a config file."""
        now = int(self.clock() * 1000)
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
        await self._record([alert], {}, now)

    # Private methods

    async def _on_ticker(self, event: m.Ticker, now: int) -> None:
        msg = event.msg
        ticker = msg.market_ticker
        if ticker not in self._watched:
            return
        ts = m.timestamp_ms(msg.ts_ms, msg.ts, event.sending_ts_ms) or now
        self.markets.apply_ticker(
            ticker,
            ts,
            yes_bid=to_micros(msg.yes_bid_dollars),
            yes_ask=to_micros(msg.yes_ask_dollars),
            yes_last=to_micros(msg.price_dollars),
        )
        await self._evaluate(TickEvent(ticker, ts), now)

    async def _on_trade(self, event: m.Trade, now: int, *, late: bool) -> None:
        msg = event.msg
        if msg.market_ticker not in self._watched:
            return
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
        await self._evaluate(trade, now)

    async def _on_lifecycle(self, event: m.MarketLifecycle, now: int) -> None:
        msg = event.msg
        ts = (
            m.timestamp_ms(None, msg.settled_ts or msg.determination_ts, event.sending_ts_ms) or now
        )
        value = to_micros(msg.settlement_value) if msg.settlement_value is not None else None
        lifecycle = LifecycleEvent(msg.market_ticker, ts, msg.event_type, msg.result, value)
        self.markets.apply_lifecycle(
            msg.market_ticker,
            ts,
            msg.event_type,
            result=msg.result,
            close_time_ms=msg.close_ts * 1000 if msg.close_ts is not None else None,
            settlement_value_micros=value,
        )
        await self._evaluate(lifecycle, now)

    async def _evaluate(self, event: Any, now: int) -> None:
        decision = evaluate(self.rules, self.portfolio, self.markets, event, self.states, now)
        if not decision.alerts and not decision.changed:
            return
        self.states.update(decision.changed)
        changed = {key: state.to_json() for key, state in decision.changed.items()}
        await self._record(decision.alerts, changed, now)

    async def _record(
        self, alerts: Sequence[Alert], states: dict[tuple[str, str], str], now: int
    ) -> None:
        assert self.outbox is not None and self.sender is not None
        new = await asyncio.to_thread(self.outbox.record, alerts, states, now_ms=now)
        if not new:
            return
        self.alerts_fired += len(new)
        for alert in alerts:
            if alert.suppressed:
                logger.info("alert held by quiet hours (recorded, not sent): %s", alert.title)
            elif alert.targets:
                logger.info(
                    "alert [%s] %s -> %s", alert.severity, alert.title, ", ".join(alert.targets)
                )
            # Alerts without targets are printed by the outbox as the console delivery.
        self.sender.wake()
