"""Where the dashboard reads: the running service when this instance is active, else the
database (``watcher web``, or a standby).

Positions, P&L and feed health come from the same read-outs as ``watcher status``
(:func:`watcher.ops.status.read_status`); while the service runs, each position is marked at the
live market view instead of the newest stored tick (the same
:func:`~watcher.service.digest.view_position`, just fresher). Alerts, charts and trades are read
through the store's :class:`~watcher.store.ports.ReadModel`; a replay runs
:func:`watcher.ops.replay.replay`, which ``watcher replay`` runs.

Mutes and the pause are read through the running service's
:class:`~watcher.service.controls.Controls` (else the read model's ``control_state``) and
changed through a ``Controls`` only: the service's, or, with no service in this process
(``watcher web``, a standby), one of the dashboard's own on the same database, which the
service re-reads within :data:`~watcher.service.controls.MAX_AGE_S`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from watcher.domain.alert import Alert
from watcher.domain.controls import ControlState
from watcher.domain.positions import Portfolio
from watcher.domain.trades_file import load_positions
from watcher.errors import ConfigError
from watcher.faces.host import FaceHost, ServiceView
from watcher.faces.web.charts import ChartPoint
from watcher.ops.health import LiveHealth
from watcher.ops.replay import ReplayStats, replay
from watcher.ops.status import FeedHealth, StatusRow, StatusTable, read_status
from watcher.rules import RulesConfig
from watcher.service.controls import Controls, stored_scope
from watcher.service.digest import view_position
from watcher.store import open_backend
from watcher.store.ports import ReadModel
from watcher.store.records import OPEN_STATUSES, AlertRecord, DeliveryStatus

__all__ = ["ALERT_SCAN", "REPLAY_SHOWN", "Health", "Overview", "ReplayRun", "Source"]

#: How many of the newest alerts the inbox filters and the rules page's "last fire" look at.
ALERT_SCAN = 1_000
#: The most would-be alerts a replay lists (all are counted).
REPLAY_SHOWN = 500
_FAILED = (DeliveryStatus.FAILED, DeliveryStatus.CONFIG_ERROR)


@dataclass(frozen=True, slots=True)
class Health:
    """The health strip: the service's own counters while it runs here, else what it recorded.

    Attributes:
        role: ``active`` / ``single`` (serving a running service), ``standby`` (this instance
            waits for the lock), or ``read-only`` (``watcher web``).
        live: the running service's counters (None when it does not run here).
        feed: what the service last recorded in the database.
        outbox_open: deliveries still to send.
        outbox_failed: deliveries that ended without success (failed, config_error).
        database: ``--db`` as it may be shown (a password masked).
        controls: the mutes in force and the pause.
    """

    role: str
    live: LiveHealth | None
    feed: FeedHealth
    outbox_open: int
    outbox_failed: int
    database: str
    controls: ControlState = field(default_factory=ControlState)


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview: every watched position (marked live when the service runs here)."""

    table: StatusTable
    health: Health
    problem: str | None = None  # trades.json could not be read (read-only)


@dataclass(slots=True)
class ReplayRun:
    """What a replay over a window would have fired."""

    window: str
    alerts: list[Alert] = field(default_factory=list)  # the first REPLAY_SHOWN, oldest first
    stats: ReplayStats = field(default_factory=ReplayStats)
    per_rule: dict[str, int] = field(default_factory=dict)


class Source:
    """The dashboard's reads, from the running service or the database.

    Args:
        host: the settings, rules and (while active) the running service.
        read_only: serving ``watcher web``: never a running service, nothing to retry.
        clock: Unix time in seconds.
    """

    def __init__(
        self, host: FaceHost, *, read_only: bool = False, clock: Callable[[], float] = time.time
    ) -> None:
        self.host = host
        self.read_only = read_only
        self.clock = clock
        self._reader: ReadModel | None = None
        self._opening = asyncio.Lock()
        self._replaying = asyncio.Lock()
        self._positions: tuple[tuple[int, int], Portfolio] | None = None
        self._controls: Controls | None = None  # this dashboard's own (no service here)
        self.problem: str | None = None

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "live" if self.service else "standby"
        return f"<Source {mode} db={self.host.settings.database}>"

    # Public methods: what is in force

    @property
    def service(self) -> ServiceView | None:
        """The running service, while this instance is active."""
        return None if self.read_only else self.host.service

    @property
    def rules(self) -> RulesConfig:
        return self.host.current_rules

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def portfolio(self) -> Portfolio:
        """The positions in force: the running service's, else trades.json as it is now (the
        last good version while it cannot be read; ``problem`` says why)."""
        service = self.service
        if service is not None:
            return service.pipeline.portfolio
        path = self.host.settings.trades_path
        try:
            stat = os.stat(path)
            key = (stat.st_mtime_ns, stat.st_size)
            if self._positions is None or self._positions[0] != key:
                self._positions = (key, load_positions(path))
            self.problem = None
        except (OSError, ConfigError) as exc:
            self.problem = f"{path}: {exc}"
        return self._positions[1] if self._positions else Portfolio((), str(path))

    async def reader(self) -> ReadModel:
        """The read model of ``--db``, opened on first use."""
        async with self._opening:
            if self._reader is None:
                self._reader = await open_backend(self.host.settings.db_path).read_model()
        return self._reader

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        controls, self._controls = self._controls, None
        try:
            if controls is not None:
                await controls.close()
        finally:
            if reader is not None:
                await reader.close()

    # Public methods: what the pages show

    async def overview(self) -> Overview:
        """Every watched position with its quote, mark, P&L and last alert, and the health."""
        reader = await self.reader()
        portfolio = self.portfolio()
        table, feed = await read_status(reader, portfolio)
        service = self.service
        if service is not None:  # the live view is fresher than the newest stored tick
            markets = service.pipeline.markets
            rows = []
            for row in table.rows:
                state = markets.get(row.view.position.ticker)
                if state is not None and state.last_tick_ms is not None:
                    prices = {"yes_bid": state.yes_bid, "yes_ask": state.yes_ask}
                    view = view_position(row.view.position, **prices, yes_last=state.yes_last)
                    row = StatusRow(view, row.last_tick_ms, row.last_alert)
                rows.append(row)
            table = StatusTable(rows, table.closed, table.realized, table.events)
        return Overview(table, await self._health(reader, feed), self.problem)

    async def health(self) -> Health:
        reader = await self.reader()
        _, feed = await read_status(reader, Portfolio(()))
        return await self._health(reader, feed)

    async def alerts(
        self,
        *,
        status: str | None = None,
        market: str | None = None,
        rule: str | None = None,
        since_ms: int | None = None,
        limit: int = 200,
    ) -> list[AlertRecord]:
        """The newest alerts first, filtered (market and rule among the newest
        :data:`ALERT_SCAN`)."""
        reader = await self.reader()
        scan = limit if market is None and rule is None else ALERT_SCAN
        found = await reader.recent_alerts(since_ms=since_ms, status=status, limit=scan)
        kept = [
            a for a in found if (market in (None, a.market_ticker)) and (rule in (None, a.rule))
        ]
        return kept[:limit]

    async def last_fires(self) -> dict[str, AlertRecord]:
        """Each rule's newest alert, among the newest :data:`ALERT_SCAN`."""
        newest: dict[str, AlertRecord] = {}
        for record in await (await self.reader()).recent_alerts(limit=ALERT_SCAN):
            newest.setdefault(record.rule, record)
        return newest

    async def series(self, ticker: str, *, since_ms: int | None, points: int) -> list[ChartPoint]:
        """A market's YES quote over time, thinned to ``points``, oldest first."""
        rows = await (await self.reader()).tick_series(ticker, since_ms=since_ms, points=points)
        return [ChartPoint(r.ts_ms, r.yes_bid_e6, r.yes_ask_e6, r.price_e6) for r in rows]

    async def quote(self, ticker: str) -> ChartPoint | None:
        """A market's current YES quote: the live view's, else the newest stored tick."""
        service = self.service
        state = service.pipeline.markets.get(ticker) if service is not None else None
        if state is not None and state.last_tick_ms is not None:
            return ChartPoint(state.last_tick_ms, state.yes_bid, state.yes_ask, state.yes_last)
        row = await (await self.reader()).latest_ticker(ticker)
        return (
            None
            if row is None
            else ChartPoint(row.ts_ms, row.yes_bid_e6, row.yes_ask_e6, row.price_e6)
        )

    async def replay(self, window: str, window_ms: int) -> ReplayRun:
        """What the rules in force would have fired over the last ``window_ms``, by the
        engine ``watcher replay`` runs (one replay at a time, on a reader of its own)."""
        run = ReplayRun(window)
        async with self._replaying:
            reader = await open_backend(self.host.settings.db_path).read_model()
            try:
                since = self.now_ms() - window_ms
                found = replay(
                    reader, self.rules, self.portfolio(), since_ms=since, stats=run.stats
                )
                async for alert in found:
                    run.per_rule[alert.rule] = run.per_rule.get(alert.rule, 0) + 1
                    if len(run.alerts) < REPLAY_SHOWN:
                        run.alerts.append(alert)
            finally:
                await reader.close()
        return run

    async def controls(self) -> ControlState:
        """The mutes in force now and the pause: as the running service's ``Controls`` reads
        them, else as stored."""
        service = self.service
        controls = service.controls if service is not None else None
        if controls is not None:
            return await controls.active(self.now_ms())
        return (await (await self.reader()).control_state()).at(self.now_ms())

    # Public methods: what a person may do

    async def acting_controls(self) -> Controls:
        """The one way to mute, unmute, pause and resume: the running service's ``Controls``;
        without one here, the dashboard's own on ``--db`` (opened on first use), whose mutes
        may name the rules in force and the markets of the positions and the stored watched
        events.

        Raises:
            StorageError: the database cannot be opened or read.
        """
        service = self.service
        if service is not None and service.controls is not None:
            return service.controls
        scope = await stored_scope(await self.reader(), self.rules, self.portfolio().tickers())
        async with self._opening:
            if self._controls is None:
                backend = open_backend(self.host.settings.db_path)
                self._controls = await Controls.open(backend, clock=self.clock)
        self._controls.scope = scope  # the rules and markets in force now
        return self._controls

    async def retry(self, alert_id: int, target: str) -> int:
        """Put a failed delivery back in the running service's queue and wake its sender;
        how many rows went back (0: not failed, or no service runs here)."""
        service = self.service
        pipeline = service.pipeline if service is not None else None
        if pipeline is None or pipeline.alert_store is None:
            return 0
        count = await pipeline.alert_store.requeue([(alert_id, target)], now_ms=self.now_ms())
        if count and pipeline.sender is not None:
            pipeline.sender.wake()
        return count

    # Private methods

    async def _health(self, reader: ReadModel, feed: FeedHealth) -> Health:
        service = self.service
        live = service.live_health() if service is not None else None
        role = live.role if live else "read-only" if self.read_only else "standby"
        counts = await reader.delivery_counts()
        opened = sum(counts.get(status, 0) for status in OPEN_STATUSES)
        failed = sum(counts.get(status, 0) for status in _FAILED)
        database = self.host.settings.database
        return Health(role, live, feed, opened, failed, database, await self.controls())
