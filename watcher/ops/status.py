"""``watcher status``: every watched position with its latest stored quote, P&L, last alert and
the feed health the service recorded; when paper positions were closed, a total line with the
realized P&L (from trades.json's CLOSED entries, ``realized_pnl_dollars``) beside the
unrealized P&L of the open ones. After the positions, one line per stored event expansion
(``event KXELECT-26 (4 markets, mutually exclusive)``), then one per mute in force
(``muted: KXCPI-26JAN-T0.3 until 15:04 EST (telegram:987654321)``) and the pause.

Reads through the store's :class:`~watcher.store.ports.ReadModel`, which never blocks the
writer, so it works while the service runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from watcher.domain.controls import ControlState
from watcher.domain.event import EventInfo
from watcher.domain.positions import Portfolio, Position
from watcher.kalshi.fixed import format_cents
from watcher.ops.readout import ago_text, cents_text, time_text
from watcher.rules.wording import contracts_text, signed_dollars
from watcher.service.controls import when_text
from watcher.service.digest import PositionView, view_position
from watcher.store.ports import ReadModel

__all__ = [
    "SERVICE_GONE_AFTER_MS",
    "FeedHealth",
    "StatusRow",
    "StatusTable",
    "control_lines",
    "event_line",
    "read_status",
    "realized_total",
    "render_status",
]

#: A heartbeat older than this means the service is not running.
SERVICE_GONE_AFTER_MS = 20_000


@dataclass(frozen=True, slots=True)
class StatusRow:
    """One watched position as ``watcher status`` shows it."""

    view: PositionView
    last_tick_ms: int | None
    last_alert: tuple[int, str] | None  # (created_ms, rule)


@dataclass(frozen=True, slots=True)
class StatusTable:
    """The watched positions, and what the closed ones realized.

    Attributes:
        rows: one per watched position, in file order.
        closed: how many CLOSED entries say what they realized.
        realized: the sum of their ``realized_pnl_dollars``, exact.
        events: the stored event expansions (the watched events), by event ticker.
        controls: the stored mutes and pause (ended mutes are left out when shown).
    """

    rows: list[StatusRow] = field(default_factory=list)
    closed: int = 0
    realized: Decimal = Decimal(0)
    events: list[EventInfo] = field(default_factory=list)
    controls: ControlState = field(default_factory=ControlState)

    @property
    def unrealized(self) -> Decimal | None:
        """The open positions' P&L at their marks (None when none has a mark yet)."""
        known = [row.view.pnl for row in self.rows if row.view.pnl is not None]
        return sum(known, Decimal(0)) if known else None


@dataclass(frozen=True, slots=True)
class FeedHealth:
    """What the service last recorded in ``service_state`` (all None if it never ran)."""

    status: str | None = None
    mode: str | None = None
    last_message_ms: int | None = None
    heartbeat_ms: int | None = None
    started_ms: int | None = None
    pid: str | None = None
    active: str | None = None  # on a shared database: "<host> pid <pid>" of the active one
    standby: str | None = None  # the standby that wrote its heartbeat last
    standby_heartbeat_ms: int | None = None

    def is_running(self, now_ms: int) -> bool:
        """True when the service wrote a heartbeat recently and did not record a stop."""
        if self.heartbeat_ms is None or self.status == "stopped":
            return False
        return now_ms - self.heartbeat_ms <= SERVICE_GONE_AFTER_MS

    def standing_by(self, now_ms: int) -> str | None:
        """The standby instance, if one wrote its heartbeat recently (None otherwise)."""
        beat = self.standby_heartbeat_ms
        if self.standby is None or beat is None or now_ms - beat > SERVICE_GONE_AFTER_MS:
            return None
        return None if self.standby == self.active else self.standby


async def read_status(
    read_model: ReadModel, portfolio: Portfolio
) -> tuple[StatusTable, FeedHealth]:
    """Every watched position with its latest stored quote and last alert, what the closed
    ones realized, the mutes and the pause, and feed health."""
    rows = []
    for position in portfolio.watched():
        tick = await read_model.latest_ticker(position.ticker)
        view = view_position(
            position,
            yes_bid=tick.yes_bid_e6 if tick else None,
            yes_ask=tick.yes_ask_e6 if tick else None,
            yes_last=tick.price_e6 if tick else None,
        )
        alert = await read_model.last_alert(position.ticker)
        rows.append(StatusRow(view, tick.received_ms if tick else None, alert))
    state = await read_model.service_state()
    health = FeedHealth(
        status=state.get("feed.status"),
        mode=state.get("feed.mode"),
        last_message_ms=_int_or_none(state.get("feed.last_message_ms")),
        heartbeat_ms=_int_or_none(state.get("service.heartbeat_ms")),
        started_ms=_int_or_none(state.get("service.started_ms")),
        pid=state.get("service.pid"),
        active=state.get("service.active"),
        standby=state.get("standby.instance"),
        standby_heartbeat_ms=_int_or_none(state.get("standby.heartbeat_ms")),
    )
    closed, realized = realized_total(portfolio.positions)
    events, controls = await read_model.events(), await read_model.control_state()
    return StatusTable(rows, closed, realized, events, controls), health


def realized_total(positions: tuple[Position, ...]) -> tuple[int, Decimal]:
    """How many CLOSED entries say what they realized, and the sum (``realized_pnl_dollars``,
    written by the paper desk when it closes a position)."""
    count, total = 0, Decimal(0)
    for position in positions:
        value = position.raw.get("realized_pnl_dollars")
        if position.status != "CLOSED" or value is None or isinstance(value, bool):
            continue
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            continue
        if amount.is_finite():
            count, total = count + 1, total + amount
    return count, total


def render_status(
    report: StatusTable, health: FeedHealth, *, now_ms: int, tz: ZoneInfo
) -> list[str]:
    """The ``watcher status`` table, its P&L total line (once a position was closed) and its
    feed line."""
    rows = report.rows
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
                cents_text(v.last),
                cents_text(v.mark),
                signed_dollars(v.pnl) if v.pnl is not None else "-",
                ago_text(row.last_tick_ms, now_ms),
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
    lines += [event_line(event) for event in report.events]
    lines += control_lines(report.controls, now_ms=now_ms, tz=tz)
    if report.closed:
        lines.append(_totals_line(report))
    lines.append(_feed_line(health, now_ms, tz))
    return lines


def event_line(event: EventInfo) -> str:
    """``event KXELECT-26 (4 markets, mutually exclusive)``: a watched event of ``status``."""
    count = len(event.markets)
    what = f"{count} market{'' if count == 1 else 's'}"
    if event.mutually_exclusive:
        what += ", mutually exclusive"
    return f"event {event.event_ticker} ({what})"


def control_lines(state: ControlState, *, now_ms: int, tz: ZoneInfo) -> list[str]:
    """``muted: KXCPI-26JAN-T0.3 until 15:04 EST (telegram:987654321)`` per mute in force at
    ``now_ms``, and ``paused since 13:02 EST by web (non-critical alerts held back)``."""
    lines = [
        f"muted: {mute.target or 'everything'} until {when_text(mute.until_ms, tz, now_ms)}"
        f" ({mute.by})"
        for mute in state.at(now_ms).mutes
    ]
    if state.paused is not None:
        since = when_text(state.paused.since_ms, tz, now_ms)
        lines.append(f"paused since {since} by {state.paused.by} (non-critical alerts held back)")
    return lines


def _totals_line(table: StatusTable) -> str:
    """``realized P&L -$11.25 (1 closed), unrealized P&L +$3.20``."""
    unrealized = table.unrealized
    open_text = "not known yet" if unrealized is None else signed_dollars(unrealized)
    return (
        f"realized P&L {signed_dollars(table.realized)} ({table.closed} closed),"
        f" unrealized P&L {open_text}"
    )


def _feed_line(health: FeedHealth, now_ms: int, tz: ZoneInfo) -> str:
    line = _service_text(health, now_ms, tz)
    standby = health.standing_by(now_ms)
    return line if standby is None else f"{line}; standby: {standby}"


def _service_text(health: FeedHealth, now_ms: int, tz: ZoneInfo) -> str:
    if health.heartbeat_ms is None:
        return "service: never ran on this database"
    if not health.is_running(now_ms):
        seen = time_text(health.heartbeat_ms, tz, "%Y-%m-%d %H:%M")
        return f"service: not running (last seen {seen}, {ago_text(health.heartbeat_ms, now_ms)})"
    since = time_text(health.started_ms or now_ms, tz, "%Y-%m-%d %H:%M")
    data = (
        "no data yet"
        if health.last_message_ms is None
        else f"last data {ago_text(health.last_message_ms, now_ms)}"
    )
    role = f"; active: {health.active}" if health.active else ""
    return (
        f"service: running (pid {health.pid}, {health.mode}) since {since};"
        f" feed {health.status}, {data}{role}"
    )


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.lstrip("-").isdigit() else None


def _alert_text(alert: tuple[int, str] | None, tz: ZoneInfo) -> str:
    if alert is None:
        return "-"
    created, rule = alert
    return f"{time_text(created, tz, '%m-%d %H:%M')} {rule}"
