"""Live updates: one server-sent-event stream per browser tab (``GET /events``).

Named events:

- ``hello``: sent first; its ``id`` is the newest alert the tab has, so a reconnect resumes.
- ``tick``: a market's quote and its positions' prices and P&L (:func:`~.views.quote_json`).
- ``alert``: a newly recorded alert (:func:`~.views.alert_row`); its ``id`` is the alert's id.
- ``health``: the health strip, with what is silenced (:func:`~.views.health_json`).

One :class:`LiveFeed` per dashboard does the work, and only while a tab is connected: every
:data:`TICK_INTERVAL` it compares each watched market of the running service's market view with
what it sent last, so a market's ticks are coalesced to at most four updates a second and the
service's per-message path is untouched whether a tab is open or not. Without a running
service (``watcher web``, or a standby) it polls the database's newest ticks instead, every
:data:`POLL_INTERVAL`. New alerts are read from the database in both cases.

Only ``alert`` and ``hello`` events carry an id. A browser that reconnects sends the last one
back (``Last-Event-ID``) and gets every alert recorded after it. Each tab keeps only the newest
tick per market and the newest health while it waits to be written to, so a slow tab costs
memory in proportion to the markets, not to the ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from watcher.domain.positions import Portfolio
from watcher.errors import StorageError
from watcher.faces.web.source import Source
from watcher.faces.web.views import alert_row, quote_json
from watcher.service.digest import view_position

__all__ = ["POLL_INTERVAL", "TICK_INTERVAL", "LiveFeed", "Subscriber", "encode"]

logger = logging.getLogger("watcher.web")

#: Seconds between two looks at the live market view (at most 4 ticks/s per market).
TICK_INTERVAL = 0.25
#: Seconds between two database polls (alerts; ticks too without a running service).
POLL_INTERVAL = 1.0
#: Seconds between two health events.
HEALTH_INTERVAL = 2.0
#: The most alerts re-sent on a reconnect, and kept for one slow tab.
MAX_BACKLOG = 200
#: How far before the newest alert seen the next poll looks (alerts are recorded with their
#: instance's clock, and ids, not times, say what is new).
CLOCK_MARGIN_MS = 10_000

#: A market's quote as the feed looks at it: (yes_bid, yes_ask, yes_last, ts_ms).
Quote = tuple[int | None, int | None, int | None, int | None]
#: One event for the stream: (name, id or None, JSON-ready data).
Event = tuple[str, str | None, Any]


class Subscriber:
    """One tab's pending events: the newest tick per market, new alerts, the newest health."""

    def __init__(self, last_alert_id: int) -> None:
        #: The newest alert the tab had when it connected (the ``hello`` event's id).
        self.start_id = last_alert_id
        self.last_alert_id = last_alert_id
        self.ticks: dict[str, Any] = {}
        self.alerts: list[dict[str, Any]] = []
        self.health: Any = None
        self.ready = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Subscriber after={self.last_alert_id} ticks={len(self.ticks)}>"

    def push(self, name: str, data: Any) -> None:
        """Queue an event (a tick replaces the market's previous one)."""
        if name == "tick":
            self.ticks[data["ticker"]] = data
        elif name == "alert":
            if data["id"] > self.last_alert_id:
                self.alerts = [*self.alerts, data][-MAX_BACKLOG:]
                self.last_alert_id = data["id"]
        else:
            self.health = data
        self.ready.set()

    def drain(self) -> list[Event]:
        """Everything pending, alerts first; empties the queue."""
        events: list[Event] = [("alert", str(a["id"]), a) for a in self.alerts]
        events += [("tick", None, tick) for tick in self.ticks.values()]
        if self.health is not None:
            events.append(("health", None, self.health))
        self.alerts, self.ticks, self.health = [], {}, None
        self.ready.clear()
        return events


class LiveFeed:
    """Produces the live events for every connected tab (see the module docstring).

    Args:
        source: where the dashboard reads.
        health: builds the ``health`` event's data.
    """

    def __init__(self, source: Source, health: Callable[[], Awaitable[Any]]) -> None:
        self.source = source
        self._health_of = health
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._sent: dict[str, tuple[int | None, ...]] = {}  # the prices sent last
        self._latest: dict[str, Any] = {}  # the newest tick event of each market
        self._last_alert_id: int | None = None
        self._last_alert_ms: int | None = None  # when the newest alert published was recorded
        self._health_sent: Any = None
        self.closing = asyncio.Event()

    def __repr__(self) -> str:
        return f"<LiveFeed tabs={len(self._subscribers)} closing={self.closing.is_set()}>"

    # Public methods

    @contextlib.asynccontextmanager
    async def subscribe(self, after: int | None) -> AsyncIterator[Subscriber]:
        """A new tab's queue, with the alerts recorded after ``after`` already in it (None:
        from now on); the feed runs while any tab is subscribed."""
        newest = await self._newest_alert_id()
        if self._last_alert_id is None:  # the feed publishes every alert after this one
            self._last_alert_id = newest
        subscriber = Subscriber(newest if after is None else min(after, newest))
        if after is not None and after < newest:
            for record in reversed(await self._alerts_after(after)):
                subscriber.push("alert", self._alert(record))
        for tick in self._latest.values():  # a tab that reconnects catches up at once
            subscriber.push("tick", tick)
        if self._health_sent is not None:
            subscriber.push("health", self._health_sent)
        self._subscribers.add(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="web-live-feed")
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    async def close(self) -> None:
        """End every stream (server shutdown) and stop producing."""
        self.closing.set()
        for subscriber in self._subscribers:
            subscriber.ready.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # Private methods

    async def _run(self) -> None:
        """Produce until the last tab leaves; database trouble is logged and retried."""
        cycle, failing = 0, ""
        polls = round(POLL_INTERVAL / TICK_INTERVAL)
        healths = round(HEALTH_INTERVAL / TICK_INTERVAL)
        while self._subscribers and not self.closing.is_set():
            try:
                if self.source.service is not None:
                    self._live_ticks()
                elif cycle % polls == 0:
                    await self._stored_ticks()
                if cycle % polls == 0:
                    await self._new_alerts()
                if cycle % healths == 0:
                    await self._health_changed()
            except StorageError as exc:
                logger.debug("live feed cannot read the database yet: %s", exc)
            except Exception as exc:  # a bug must not end every tab's updates
                if repr(exc) != failing:
                    logger.exception("live feed failed, going on: %s", exc)
                failing = repr(exc)
            cycle += 1
            await asyncio.sleep(TICK_INTERVAL)

    def _live_ticks(self) -> None:
        """Send each watched market whose quote changed since it was last sent."""
        service = self.source.service
        assert service is not None
        pipeline = service.pipeline
        for ticker in pipeline.watched:
            state = pipeline.markets.get(ticker)
            if state is None or state.last_tick_ms is None:
                continue
            quote = (state.yes_bid, state.yes_ask, state.yes_last, state.last_tick_ms)
            self._changed(ticker, quote, pipeline.portfolio)

    async def _stored_ticks(self) -> None:
        """Send each position's market whose newest stored tick changed."""
        portfolio = self.source.portfolio()
        reader = await self.source.reader()
        for ticker in portfolio.tickers():
            row = await reader.latest_ticker(ticker)
            if row is not None:
                quote = (row.yes_bid_e6, row.yes_ask_e6, row.price_e6, row.ts_ms)
                self._changed(ticker, quote, portfolio)

    def _changed(self, ticker: str, quote: Quote, portfolio: Portfolio) -> None:
        """Publish the market's tick if its prices differ from those sent last."""
        bid, ask, last, ts = quote
        if self._sent.get(ticker) == (bid, ask, last):
            return
        self._sent[ticker] = (bid, ask, last)
        views = [
            view_position(p, yes_bid=bid, yes_ask=ask, yes_last=last)
            for p in portfolio.by_ticker(ticker, watched_only=True)
        ]
        data = quote_json(ticker, yes_bid=bid, yes_ask=ask, yes_last=last, ts_ms=ts, views=views)
        self._latest[ticker] = data
        self._publish("tick", data)

    async def _new_alerts(self) -> None:
        """Publish the alerts recorded since the last look (only the last moments are read)."""
        if self._last_alert_id is None:
            self._last_alert_id = await self._newest_alert_id()
            return
        since = None if self._last_alert_ms is None else self._last_alert_ms - CLOCK_MARGIN_MS
        for record in reversed(await self._alerts_after(self._last_alert_id, since)):
            self._last_alert_id = max(self._last_alert_id, record.id)
            self._last_alert_ms = max(self._last_alert_ms or 0, record.created_ms)
            self._publish("alert", self._alert(record))

    async def _health_changed(self) -> None:
        health = await self._health_of()
        if health != self._health_sent:
            self._health_sent = health
            self._publish("health", health)

    def _publish(self, name: str, data: Any) -> None:
        for subscriber in self._subscribers:
            subscriber.push(name, data)

    async def _newest_alert_id(self) -> int:
        try:
            found = await (await self.source.reader()).recent_alerts(limit=1)
        except StorageError:
            return 0
        return found[0].id if found else 0

    async def _alerts_after(self, alert_id: int, since_ms: int | None = None) -> list[Any]:
        """The alerts with an id above ``alert_id`` (created at or after ``since_ms``), newest
        first, at most :data:`MAX_BACKLOG`."""
        reader = await self.source.reader()
        found = await reader.recent_alerts(since_ms=since_ms, limit=MAX_BACKLOG)
        return [a for a in found if a.id > alert_id]

    def _alert(self, record: Any) -> dict[str, Any]:
        return alert_row(record, tz=self.source.rules.tz, now_ms=self.source.now_ms())


def encode(event: Event) -> dict[str, Any]:
    """An event as sse-starlette writes it (data as compact JSON)."""
    name, event_id, data = event
    item: dict[str, Any] = {"event": name, "data": json.dumps(data, separators=(",", ":"))}
    if event_id is not None:
        item["id"] = event_id
    return item
