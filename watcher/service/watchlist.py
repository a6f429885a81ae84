"""Watched events and series (rules.yaml ``watch``, issue 14): their expansion into markets.

At start, on every metadata refresh and when a rules.yaml reload changes ``watch``, the
:class:`Watchlist` asks Kalshi's REST for each watched event (``GET /events/{t}`` with nested
markets) and each watched series' open events (``GET /events``, every page), gives the events
to the decision step (``Session.events``) and makes their open markets watch-only markets of
the pipeline (market state, rules; no position). The feed's ``ticker`` and ``trade``
subscriptions follow on the same connection with ``update_subscription``
(:func:`~watcher.service.subscriptions.resubscribe`), never by reconnecting.

An event or series that cannot be read keeps what the last expansion found (logged).

Each event carries its fee multiplier, which the event rules apply to every leg's fee: its
series' ``fee_multiplier`` (``GET /series/{t}``, asked once per series) unless an event fee
override is in force (``GET /events/fee_changes``, asked again at every expansion), both through
:class:`~watcher.service.paper_fees.SeriesFees`, the paper desk's lookup. A live
``event_fee_update`` frame (``market_lifecycle_v2``) changes a watched event's multiplier at
once (:meth:`Watchlist.on_fee_update`), and the event is stored again for replay. A failing
fee-changes lookup is said once per event and never holds the expansion up: the event keeps
the changes last known, else pays its series' multiplier. Markets a later expansion adds are
seeded for ``volume_spike`` from the stored ticks before they are subscribed, as the service
seeds the first ones at start (:mod:`watcher.service.volume_seed`).

Under ``--simulate``, a rules.yaml with an event rule and no ``watch:`` section watches the
simulator's demo events (a mutually exclusive event and a threshold ladder), said once in the
log; a ``watch:`` section replaces them. On Kalshi nothing is watched without one, and event
rules wait (said once at start, at INFO: they are on in the shipped rules.yaml).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Set
from datetime import datetime
from typing import Protocol

from watcher.domain.event import EventInfo, EventMarket
from watcher.domain.positions import Portfolio
from watcher.kalshi.client import KalshiWebSocketClient
from watcher.kalshi.errors import KalshiError
from watcher.kalshi.fee_changes import exact_number
from watcher.kalshi.messages import EventFeeUpdate
from watcher.kalshi.rest_bodies import RestEvent, RestMarket
from watcher.rules.kinds import EventRule
from watcher.rules.model import RulesConfig, Watch
from watcher.rules.session import Session
from watcher.service.paper_fees import SeriesFees, SeriesSource
from watcher.service.subscriptions import resubscribe, subscribe_watched
from watcher.service.volume_seed import seed_from_backend
from watcher.store.ports import Backend

__all__ = ["EventSource", "Watchlist", "demo_watch", "event_info", "event_rules", "open_tickers"]

logger = logging.getLogger("watcher.watchlist")

#: Market statuses that still trade (REST's words, old and new).
_OPEN = frozenset({"active", "open", "initialized", "unopened"})


class EventSource(SeriesSource, Protocol):
    """What the expansion needs of :class:`~watcher.kalshi.rest.KalshiRestClient` (events, and
    series for their fees)."""

    async def get_event(
        self, event_ticker: str, *, with_nested_markets: bool = True
    ) -> RestEvent: ...

    async def get_events(
        self, *, series_ticker: str, status: str | None = "open", with_nested_markets: bool = True
    ) -> list[RestEvent]: ...


class WatchHost(Protocol):
    """What the watchlist drives: the pipeline."""

    @property
    def rules(self) -> RulesConfig: ...

    @property
    def watched(self) -> frozenset[str]: ...

    @property
    def portfolio(self) -> Portfolio: ...

    session: Session

    def set_watch_only(self, tickers: frozenset[str]) -> None: ...

    def now_ms(self) -> int: ...


def event_info(event: RestEvent) -> EventInfo:
    """The service's view of a REST event (markets in Kalshi's order)."""
    return EventInfo(
        event_ticker=event.event_ticker,
        series_ticker=event.series_ticker or None,
        title=event.title,
        mutually_exclusive=bool(event.mutually_exclusive),
        markets=tuple(_event_market(market) for market in event.markets),
    )


def demo_watch() -> Watch:
    """The simulator's demo events, as a ``watch`` section (imported only when simulating)."""
    from watcher.kalshi.sim.events import DEFAULT_EVENTS

    return Watch(events=DEFAULT_EVENTS)


def event_rules(rules: RulesConfig) -> list[str]:
    """The names of the enabled rules about events (``event_arbitrage``, ``ladder``)."""
    return [rule.name for rule in rules.rules if isinstance(rule, EventRule) and rule.enabled]


def open_tickers(events: dict[str, EventInfo]) -> frozenset[str]:
    """The tickers of the events' markets that still trade (an unknown status counts)."""
    return frozenset(
        market.ticker
        for info in events.values()
        for market in info.markets
        if market.status is None or market.status in _OPEN
    )


class Watchlist:
    """Expands ``watch`` and moves the watch-only markets and their subscriptions.

    Args:
        rest: the REST client.
        host: the pipeline (rules in force, watched markets, the decision session).
        client: the WebSocket client whose subscriptions follow; None in keyless mode.
        on_events: called with the events after each expansion (e.g. to store them).
        backend: the store whose ticks seed ``volume_spike`` for markets added after
            :meth:`start` (None: not seeded).
        simulated: the feed is the built-in simulator: without a ``watch:`` section (and with
            an event rule), watch its demo events.
    """

    def __init__(
        self,
        rest: EventSource,
        host: WatchHost,
        client: KalshiWebSocketClient | None,
        on_events: Callable[[list[EventInfo]], Awaitable[None]] | None = None,
        *,
        backend: Backend | None = None,
        simulated: bool = False,
    ) -> None:
        self.rest, self.host, self.client, self.on_events = rest, host, client, on_events
        self.backend, self.simulated = backend, simulated
        self.fees = SeriesFees(rest, purpose="event rule fees")
        self.events: dict[str, EventInfo] = {}
        self._watch: Watch | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False  # markets added from now on are seeded here
        self._said_demo = False
        if client is not None:
            client.register_handler("event_fee_update", self.on_fee_update)

    def __repr__(self) -> str:
        return f"<Watchlist events={len(self.events)} markets={len(open_tickers(self.events))}>"

    async def start(self) -> None:
        """The first subscriptions (positions, lifecycle), then the first expansion (whose
        markets the service seeds with the positions', :meth:`Pipeline.seed_volume`)."""
        if self.client is not None:
            subscribe_watched(self.client, self.host.portfolio)
        await self.refresh()
        self._started = True
        waiting = event_rules(self.host.rules)
        if waiting and not self.events:
            logger.info(
                "event rules %s wait for watched events: list event or series tickers under"
                " watch: in rules.yaml",
                ", ".join(repr(name) for name in waiting),
            )

    def watch_for(self, rules: RulesConfig) -> Watch:
        """The ``watch`` in force under ``rules``: theirs, else (simulating, with an event rule
        to show) the demo events."""
        if rules.watch or not self.simulated or not event_rules(rules):
            return rules.watch
        if not self._said_demo:
            self._said_demo = True
            logger.info(
                "rules.yaml has no watch: section: watching the simulator's demo events %s"
                " (list events or series under watch: to choose others)",
                ", ".join(demo_watch().events),
            )
        return demo_watch()

    async def refresh(self) -> None:
        """Expand the ``watch`` in force now and move markets and subscriptions to match."""
        async with self._lock:
            watch = self.watch_for(self.host.rules)
            if not watch and not self.events:
                self._watch = watch
                return
            events = await self._expand(watch)
            # again from what is known: an update that came live meanwhile, a scheduled change
            events = {ticker: self._repriced(info) for ticker, info in events.items()}
            self._watch = watch
            old = set(self.host.watched)
            tickers = open_tickers(events)
            if self._started:
                await self._seed(tickers - old)  # before their first tick can arrive
            self.events = events
            self.host.session.events = dict(events)
            self.host.set_watch_only(tickers)
            new = set(self.host.watched)
            if self.client is not None and new != old:
                await resubscribe(self.client, old, new)
            if new != old:
                logger.info("watched events: +%s -%s", sorted(new - old), sorted(old - new))
            if self.on_events is not None and events:
                await self.on_events(list(events.values()))

    def on_fee_update(self, frame: EventFeeUpdate) -> None:
        """``event_fee_update``: a watched event's fee override set or cleared; its rules use
        the new multiplier from the next tick. Runs in the receive loop: no REST, the store
        write is left to a task."""
        msg = frame.msg
        info = self.events.get(msg.event_ticker)
        if info is None:  # the channel covers every event on Kalshi: keep only the watched
            return
        multiplier = exact_number(msg.fee_multiplier_override)
        self.fees.apply_update(msg.event_ticker, multiplier, msg.fee_type_override)
        priced = self._repriced(info)
        if priced == info:
            return
        self.events[info.event_ticker] = self.host.session.events[info.event_ticker] = priced
        logger.info(
            "event %s: fee multiplier %s (was %s) after Kalshi's event_fee_update",
            info.event_ticker,
            priced.fee_multiplier,
            info.fee_multiplier,
        )
        if self.on_events is not None:
            self._spawn(self.on_events([priced]), "storing the event's new fee multiplier")

    def rules_changed(self, rules: RulesConfig) -> None:
        """Re-expand soon when a reload changed ``watch``."""
        if self._watch is None or self.watch_for(rules) == self._watch:
            return
        self._spawn(self._guarded(), "watch-refresh")

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                logger.exception("%s failed", name)

        task = asyncio.get_running_loop().create_task(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self) -> None:
        try:
            await self.refresh()
        except Exception:
            logger.exception("expanding the watched events failed")

    async def _seed(self, added: Set[str]) -> None:
        """Seed ``volume_spike``'s history of newly watched markets from the stored ticks."""
        if self.backend is not None and added:
            session = self.host.session
            await seed_from_backend(self.backend, session, added, self.host.now_ms())

    async def _priced(self, event: RestEvent) -> EventInfo:
        """The event with its fee multiplier (its fee changes asked again; the series'
        multiplier when no override is in force; 1 when Kalshi cannot say)."""
        info = event_info(event)
        ticker, series = info.event_ticker, info.series_ticker
        multiplier = await self.fees.event_multiplier(ticker, series, fresh=True)
        return dataclasses.replace(info, fee_multiplier=multiplier)

    def _repriced(self, info: EventInfo) -> EventInfo:
        """``info`` with the multiplier in force now, from what the fee lookup knows."""
        multiplier = self.fees.resolve(info.event_ticker, info.series_ticker)
        if multiplier == info.fee_multiplier:
            return info
        return dataclasses.replace(info, fee_multiplier=multiplier)

    async def _expand(self, watch: Watch) -> dict[str, EventInfo]:
        found: dict[str, EventInfo] = {}
        for ticker in watch.events:
            try:
                found[ticker] = await self._priced(await self.rest.get_event(ticker))
            except KalshiError as exc:
                logger.warning("cannot read watched event %s: %s", ticker, exc)
                if ticker in self.events:
                    found[ticker] = self.events[ticker]
        for series in watch.series:
            try:
                events = await self.rest.get_events(series_ticker=series, status="open")
            except KalshiError as exc:
                logger.warning("cannot read the events of watched series %s: %s", series, exc)
                kept = (i for i in self.events.values() if i.series_ticker == series)
                found.update((info.event_ticker, info) for info in kept)
                continue
            for event in events:
                if event.event_ticker not in found:
                    found[event.event_ticker] = await self._priced(event)
        return found


def _event_market(market: RestMarket) -> EventMarket:
    return EventMarket(
        ticker=market.ticker,
        strike_type=market.strike_type or None,
        floor_strike=market.floor_strike,
        cap_strike=market.cap_strike,
        close_time_ms=_ms(market.close_time),
        status=market.status or None,
    )


def _ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None
