"""What the bot says: HTML text (every value escaped), in the command line's own wording.

Pure functions. Positions are shown with :meth:`~watcher.service.digest.PositionView.line`
(the digest's wording, the marks and P&L of :func:`~watcher.ops.status.read_status`), alerts
with :func:`~watcher.ops.alerts.alert_line`, paper orders with the desk's ``buy_text`` and
``close_text``; nothing is priced or computed here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from watcher.domain.controls import ControlState, Mute
from watcher.ops.alerts import alert_line
from watcher.ops.health import LiveHealth
from watcher.ops.readout import time_text
from watcher.ops.status import StatusTable, event_line
from watcher.rules.wording import signed_dollars, span_text
from watcher.store.records import AlertRecord

__all__ = [
    "HELP",
    "MAX_TEXT",
    "alerts_text",
    "clip",
    "controls_text",
    "esc",
    "mute_text",
    "status_text",
]

#: Telegram's limit on one message's text.
MAX_TEXT = 4096

HELP = """\
/status: positions with side, mark and P&amp;L; feed health
/alerts [N]: the last N alerts (5)
/mute DURATION [MARKET|RULE]: hold alerts back (all without a target), e.g. /mute 1h
/unmute [MARKET|RULE]: end mutes (all without a target)
/pause: send only critical alerts until /resume
/resume: send every alert again
/buy TICKER yes|no QTY [LIMIT]: paper buy at the ask (LIMIT in cents)
/close ID|TICKER [QTY]: paper sell at the bid (all without QTY)
Orders wait for your Confirm press (60 s)."""


def esc(text: str) -> str:
    """``text`` safe inside Telegram HTML."""
    return html.escape(text, quote=False)


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to Telegram's length limit, at a line end when possible."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit - 2)
    return f"{text[: cut if cut > 0 else limit - 2]}\n…"


def status_text(
    table: StatusTable,
    health: LiveHealth,
    controls: ControlState | None,
    *,
    now_ms: int,
    tz: ZoneInfo,
) -> str:
    """``/status``: positions, totals, watched events, feed, store and alerts, mutes."""
    lines = ["<b>Positions</b>"]
    lines += [esc(row.view.line()) for row in table.rows] or ["(no watched positions)"]
    if table.closed:
        unrealized = table.unrealized
        open_text = "not known yet" if unrealized is None else signed_dollars(unrealized)
        lines.append(
            esc(
                f"realized P&L {signed_dollars(table.realized)} ({table.closed} closed),"
                f" unrealized P&L {open_text}"
            )
        )
    lines += [esc(event_line(event)) for event in table.events]
    lines += ["<b>Feed</b>", esc(_feed_line(health))]
    if controls is not None:
        lines += [esc(line) for line in controls_text(controls, now_ms=now_ms, tz=tz)]
    return clip("\n".join(lines))


def _feed_line(h: LiveHealth) -> str:
    link = "connected" if h.connected else "not connected"
    age = h.last_message_age_s
    data = "no data yet" if age is None else f"last data {span_text(int(age * 1000))} ago"
    role = f", {h.role} {h.instance}" if h.instance else ""
    return (
        f"{h.mode}, {link}, {data}{role}; {h.messages:,} messages, {h.reconnects} reconnects,"
        f" {h.sequence_gaps} gaps; store queue {h.store_queue:,}, {h.store_errors} errors;"
        f" alerts {h.alerts_fired:,} ({h.alerts_suppressed:,} suppressed)"
    )


def controls_text(state: ControlState, *, now_ms: int, tz: ZoneInfo) -> list[str]:
    """The pause and the mutes in force, one line each (plain text)."""
    lines = []
    if state.paused is not None:
        since = time_text(state.paused.since_ms, tz, "%m-%d %H:%M")
        lines.append(f"paused since {since} by {state.paused.by}: only critical alerts are sent")
    lines += [mute_text(mute, now_ms=now_ms, tz=tz) for mute in state.mutes]
    return lines or ["not muted, not paused"]


def mute_text(mute: Mute, *, now_ms: int, tz: ZoneInfo) -> str:
    """``muted KXCPI-26JAN-T0.3 until 05-01 14:05 UTC (1h left)`` (plain text)."""
    what = "everything" if mute.target is None else mute.target
    until = time_text(mute.until_ms, tz, "%m-%d %H:%M")
    return f"muted {what} until {until} ({span_text(mute.until_ms - now_ms)} left)"


def alerts_text(records: Sequence[AlertRecord], tz: ZoneInfo) -> str:
    """``/alerts``: one ``watcher alerts`` line per alert, newest first."""
    if not records:
        return "no alerts yet"
    return clip("\n".join(esc(alert_line(record, tz)) for record in records))
