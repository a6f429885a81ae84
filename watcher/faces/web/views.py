"""How the dashboard writes what it shows: one place for the pages, the JSON API and the live
events, so a price reads the same in all three.

Money stays exact: the JSON API carries dollar amounts as decimal strings (``"0.45"``,
``"-1.50"``) and the pages carry the read-outs' texts (``45¢``, ``+$1.50``), both made from
integer micro-dollars or Decimals. Nothing here does I/O; times are written in the rules'
timezone, as every read-out does.
"""

from __future__ import annotations

from datetime import tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from watcher.domain.controls import ControlState
from watcher.domain.positions import Position
from watcher.faces.web.charts import Marker
from watcher.faces.web.source import Health
from watcher.kalshi.fixed import format_cents
from watcher.ops.readout import ago_text, cents_text, time_text
from watcher.rules.wording import contracts_text, signed_dollars, span_text
from watcher.service.controls import when_text
from watcher.service.digest import PositionView
from watcher.store.records import AlertRecord, DeliveryRecord, TradeRow, decimal_text

__all__ = [
    "RETRYABLE",
    "WINDOWS",
    "alert_marker",
    "alert_row",
    "controls_json",
    "health_json",
    "pnl_sign",
    "position_json",
    "position_row",
    "quote_json",
    "trade_row",
    "yes_entry",
]

#: The chart windows a market page offers: name → milliseconds back from now (None: all).
WINDOWS: dict[str, int | None] = {
    "1h": 3_600_000,
    "1d": 86_400_000,
    "7d": 7 * 86_400_000,
    "all": None,
}
#: Delivery statuses a person may retry ("retry now" puts them back in the queue).
RETRYABLE = frozenset({"failed", "config_error"})
_ONE = 1_000_000


def pnl_sign(pnl: Decimal | None) -> str:
    """The CSS class of a P&L: ``gain``, ``loss``, ``flat`` or ``unknown``."""
    if pnl is None:
        return "unknown"
    return "gain" if pnl > 0 else "loss" if pnl < 0 else "flat"


def position_json(view: PositionView, last_alert: tuple[int, str] | None = None) -> dict[str, Any]:
    """One watched position for ``GET /api/positions``: prices of its side and P&L as exact
    decimal strings (None while unknown)."""
    p = view.position
    return {
        "index": p.index,
        "id": p.id,
        "ticker": p.ticker,
        "title": p.title,
        "side": p.side,
        "contracts": contracts_text(p.contracts),
        "entry": decimal_text(p.entry_micros),
        "bid": decimal_text(view.bid),
        "ask": decimal_text(view.ask),
        "last": decimal_text(view.last),
        "mark": decimal_text(view.mark),
        "pnl": None if view.pnl is None else f"{view.pnl:f}",
        "last_alert": None
        if last_alert is None
        else {"created_ms": last_alert[0], "rule": last_alert[1]},
    }


def position_row(
    view: PositionView, last_alert: tuple[int, str] | None, *, tz: ZoneInfo
) -> dict[str, Any]:
    """One row of the overview's positions table: the texts the page shows."""
    p = view.position
    return {
        "index": p.index,
        "ticker": p.ticker,
        "title": p.title or "",
        "side": p.side,
        "contracts": contracts_text(p.contracts),
        "entry": format_cents(p.entry_micros),
        **_prices(view),
        "last_alert": "-" if last_alert is None else _alert_text(last_alert, tz),
    }


def quote_json(
    ticker: str,
    *,
    yes_bid: int | None,
    yes_ask: int | None,
    yes_last: int | None,
    ts_ms: int | None,
    views: list[PositionView],
) -> dict[str, Any]:
    """A live ``tick`` event: the market's YES quote (exact strings and texts) and each of its
    positions' side prices and P&L, as the overview and market page show them."""
    return {
        "ticker": ticker,
        "ts_ms": ts_ms,
        "yes_bid": decimal_text(yes_bid),
        "yes_ask": decimal_text(yes_ask),
        "yes_last": decimal_text(yes_last),
        "text": {
            "bid": cents_text(yes_bid),
            "ask": cents_text(yes_ask),
            "last": cents_text(yes_last),
        },
        "positions": [{"index": v.position.index, **_prices(v)} for v in views],
    }


def alert_row(record: AlertRecord, *, tz: ZoneInfo, now_ms: int) -> dict[str, Any]:
    """One alert of the inbox (and of a live ``alert`` event): texts, and each delivery with
    whether it may be retried."""
    return {
        "id": record.id,
        "created_ms": record.created_ms,
        "time": time_text(record.created_ms, tz, "%Y-%m-%d %H:%M:%S"),
        "ago": ago_text(record.created_ms, now_ms),
        "market": record.market_ticker,
        "rule": record.rule,
        "severity": record.severity,
        "status": record.status,
        "title": record.title,
        "body": record.body,
        "deliveries": [_delivery(d) for d in record.deliveries],
    }


def alert_marker(record: AlertRecord, tz: ZoneInfo) -> Marker:
    """The chart marker of an alert, with its time, rule and title as hover text."""
    when = time_text(record.created_ms, tz, "%m-%d %H:%M:%S")
    return Marker(record.created_ms, f"{when} {record.rule}: {record.title}", record.severity)


def trade_row(row: TradeRow, tz: ZoneInfo) -> dict[str, Any]:
    """One trade of the market page's table."""
    return {
        "time": time_text(row.ts_ms, tz, "%m-%d %H:%M:%S"),
        "yes": format_cents(row.yes_price_e6),
        "no": format_cents(row.no_price_e6),
        "count": contracts_text(Decimal(row.count_e6) / _ONE),
        "taker": row.taker_side or "-",
        "late": row.late,
    }


def yes_entry(position: Position) -> tuple[int, str]:
    """A position's entry as a YES price and its chart label (a NO entry at 30¢ is YES 70¢)."""
    if position.side == "YES":
        return position.entry_micros, f"YES entry #{position.index}"
    return _ONE - position.entry_micros, f"NO entry #{position.index} (as YES)"


def controls_json(state: ControlState, *, tz: tzinfo, now_ms: int) -> dict[str, Any]:
    """What is silenced (``GET /api/controls``, the ``health`` event's ``controls``, the
    overview's Silenced section): the mutes in force at ``now_ms``, soonest end first, and the
    pause, with their times in Unix ms and as text in the rules' time zone (the day named
    unless it is today's)."""
    paused = state.paused
    return {
        "mutes": [
            {
                "target": mute.target,
                "what": mute.target or "everything",
                "until_ms": mute.until_ms,
                "until": when_text(mute.until_ms, tz, now_ms),
                "by": mute.by,
                "created_ms": mute.created_ms,
            }
            for mute in state.at(now_ms).mutes
        ],
        "paused": None
        if paused is None
        else {
            "by": paused.by,
            "since_ms": paused.since_ms,
            "since": when_text(paused.since_ms, tz, now_ms),
        },
    }


def health_json(health: Health, now_ms: int, *, tz: tzinfo) -> dict[str, Any]:
    """The health strip (``GET /api/health``, the ``health`` event): the running service's
    counters, else what it last recorded, and what is silenced (:func:`controls_json`);
    ``items`` holds each one's label, text and level (``ok``, ``warn``, ``bad``) as the page
    shows them."""
    live, feed = health.live, health.feed
    mode: str | None
    if live is not None:
        mode, connected, age_ms = live.mode, live.connected, _age_ms(live.last_message_age_s)
        state = "connected" if live.connected else "disconnected"
    else:
        running = feed.is_running(now_ms)
        mode, connected = feed.mode, None
        age_ms = None if feed.last_message_ms is None else max(0, now_ms - feed.last_message_ms)
        state = (feed.status or "running") if running else "not running"
    data: dict[str, Any] = {
        "role": health.role,
        "mode": mode,
        "state": state,
        "connected": connected,
        "last_message_age_ms": age_ms,
        "reconnects": live.reconnects if live else None,
        "sequence_gaps": live.sequence_gaps if live else None,
        "store_queue": live.store_queue if live else None,
        "outbox_pending": health.outbox_open,
        "outbox_failed": health.outbox_failed,
        "instance": (live.instance if live else None) or feed.active,
        "standby": feed.standing_by(now_ms),
        "database": health.database,
        "controls": controls_json(health.controls, tz=tz, now_ms=now_ms),
    }
    data["items"] = _health_items(data)
    return data


# Private functions


def _age_ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _health_items(data: dict[str, Any]) -> list[dict[str, str]]:
    """The strip's cells: key, label, text and level."""
    age = data["last_message_age_ms"]

    def level(bad: bool, warn: bool = False) -> str:
        return "bad" if bad else "warn" if warn else "ok"

    def count(value: int | None) -> str:
        return "-" if value is None else str(value)

    cells = [
        ("role", "role", data["role"], "ok"),
        ("mode", "feed", data["mode"] or "-", "ok"),
        ("state", "state", data["state"], level(data["state"] in ("disconnected", "not running"))),
        (
            "age",
            "last data",
            "-" if age is None else f"{span_text(age)} ago",
            level(False, (age or 0) > 60_000),
        ),
        ("reconnects", "reconnects", count(data["reconnects"]), "ok"),
        (
            "gaps",
            "seq gaps",
            count(data["sequence_gaps"]),
            level(False, bool(data["sequence_gaps"])),
        ),
        ("queue", "store queue", count(data["store_queue"]), "ok"),
        ("pending", "outbox pending", count(data["outbox_pending"]), "ok"),
        (
            "failed",
            "failed",
            count(data["outbox_failed"]),
            level(False, bool(data["outbox_failed"])),
        ),
        ("silenced", "silenced", *_silenced_text(data["controls"])),
    ]
    return [{"key": k, "label": label, "text": text, "level": lvl} for k, label, text, lvl in cells]


def _silenced_text(controls: dict[str, Any]) -> tuple[str, str]:
    """The strip's ``silenced`` cell: ``muted 2 / paused``, ``muted 1``, ``paused`` or ``-``."""
    parts = [f"muted {len(controls['mutes'])}"] if controls["mutes"] else []
    if controls["paused"] is not None:
        parts.append("paused")
    return (" / ".join(parts), "warn") if parts else ("-", "ok")


def _prices(view: PositionView) -> dict[str, Any]:
    return {
        "bid": cents_text(view.bid),
        "ask": cents_text(view.ask),
        "last": cents_text(view.last),
        "mark": cents_text(view.mark),
        "pnl": "-" if view.pnl is None else signed_dollars(view.pnl),
        "sign": pnl_sign(view.pnl),
    }


def _alert_text(alert: tuple[int, str], tz: ZoneInfo) -> str:
    created, rule = alert
    return f"{time_text(created, tz, '%m-%d %H:%M')} {rule}"


def _delivery(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "target": d.target,
        "status": d.status,
        "attempts": d.attempts,
        "error": d.last_error or "",
        "retryable": d.status in RETRYABLE,
    }
