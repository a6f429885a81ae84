"""Positions marked to market, and the daily digest built from them (pure functions).

:func:`view_position` is the one place a position gets its mark and paper P&L for people: the
daily digest and ``watcher status`` both use it. The mark is the side's last price, or the
mid of its bid and ask while nothing has traded; a NO position is marked at NO prices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from watcher.domain.positions import Position, mark_price, pnl_dollars, side_quote
from watcher.kalshi.fixed import format_cents
from watcher.rules.quiet import local_time
from watcher.rules.wording import contracts_text, signed_dollars

__all__ = [
    "DIGEST_ALERTS_MAX",
    "AlertLike",
    "PositionView",
    "build_digest",
    "local_day_start_ms",
    "view_position",
]

#: At most this many alerts are listed in a digest (the count is always given).
DIGEST_ALERTS_MAX = 20


class AlertLike(Protocol):
    """What the digest needs of an alert record (:class:`watcher.notify.outbox.AlertRecord`)."""

    @property
    def created_ms(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def rule(self) -> str: ...


@dataclass(frozen=True, slots=True)
class PositionView:
    """A position with its market's prices seen from its side (micro-dollars, None if unknown).

    Attributes:
        position: the position.
        bid, ask, last: the side's quote.
        mark: the price the position is marked at (last, else mid), or None.
        pnl: paper P&L in dollars at ``mark``, or None without a mark.
    """

    position: Position
    bid: int | None
    ask: int | None
    last: int | None
    mark: int | None
    pnl: Decimal | None

    def line(self) -> str:
        """``"KXCPI-26JAN-T0.3 YES 50 @ 42¢ · mark 45¢ · +$1.50"``."""
        p = self.position
        head = f"{p.ticker} {p.side} {contracts_text(p.contracts)} @ {format_cents(p.entry_micros)}"
        if self.mark is None or self.pnl is None:
            return f"{head} · no price yet"
        return f"{head} · mark {format_cents(self.mark)} · {signed_dollars(self.pnl)}"


def view_position(
    position: Position, *, yes_bid: int | None, yes_ask: int | None, yes_last: int | None
) -> PositionView:
    """Mark ``position`` at its side's last price (or mid while nothing traded)."""
    quote = side_quote(position.side, yes_bid=yes_bid, yes_ask=yes_ask, yes_last=yes_last)
    mark = mark_price(quote, "last")
    if mark is None:
        mark = mark_price(quote, "mid")
    pnl = None if mark is None else pnl_dollars(position, mark)
    return PositionView(position, quote.bid, quote.ask, quote.last, mark, pnl)


def local_day_start_ms(now_ms: int, tz: ZoneInfo) -> int:
    """Unix ms of the last local midnight in ``tz`` at or before ``now_ms``."""
    midnight = datetime.combine(local_time(now_ms, tz).date(), time(0), tzinfo=tz)
    return (midnight - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))) // timedelta(milliseconds=1)


def build_digest(
    views: Sequence[PositionView],
    alerts: Iterable[AlertLike],
    *,
    now_ms: int,
    tz: ZoneInfo,
    positions_path: str | None = None,
) -> tuple[str, str]:
    """The daily digest: ``(title, body)``.

    Args:
        views: the watched positions, marked (see :func:`view_position`).
        alerts: the alerts recorded today (digests are left out), oldest first.
        now_ms: the time of the digest.
        tz: the time zone of the times shown.
        positions_path: the positions file, named in an empty digest.
    """
    day = local_time(now_ms, tz).strftime("%a %Y-%m-%d")
    lines: list[str] = []
    marked = [v.pnl for v in views if v.pnl is not None]
    if views:
        total = signed_dollars(sum(marked, Decimal(0))) if marked else "n/a"
        lines.append(f"positions ({len(views)}), paper P&L {total}:")
        lines += [f"  {view.line()}" for view in views]
    else:
        where = f" in {positions_path}" if positions_path is not None else ""
        lines.append(f"no watched positions{where}")
    todays = [a for a in alerts if a.rule != "digest"]
    lines.append(f"alerts today: {len(todays)}" + (":" if todays else ""))
    for alert in todays[:DIGEST_ALERTS_MAX]:
        lines.append(f"  {local_time(alert.created_ms, tz).strftime('%H:%M')} {alert.title}")
    if len(todays) > DIGEST_ALERTS_MAX:
        lines.append(f"  … and {len(todays) - DIGEST_ALERTS_MAX} more (watcher alerts --since 1d)")
    total_text = f", P&L {signed_dollars(sum(marked, Decimal(0)))}" if marked else ""
    title = f"daily digest {day}: {len(views)} positions{total_text}"
    return title, "\n".join(lines)
