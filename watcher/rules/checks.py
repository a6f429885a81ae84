"""The conditions of the level rules (spread, move_from_entry, pnl, price_cross, velocity).

Each check looks at one :class:`Subject` (a market seen from one side, with the position when
there is one) and says whether the condition holds (``active``), whether the value is back past
the threshold by the rearm distance (``clear``), which condition it is (``tag``) and the default
alert text. Thresholds are inclusive: ``max_cents: 2`` holds at a 2¢ spread. A check returns
None when the prices it needs are not known yet.

Prices are always those of the subject's side: NO bid = 1 − YES ask, and so on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from watcher.kalshi.fixed import DOLLAR, cents_to_micros, format_cents
from watcher.market import MarketState, PricePoint
from watcher.positions import (
    Position,
    PriceBasis,
    Side,
    SideQuote,
    mark_price,
    move_micros,
    pnl_dollars,
    side_quote,
)
from watcher.rules.model import (
    LevelRule,
    MoveFromEntryRule,
    PnlRule,
    PriceCrossRule,
    SpreadRule,
    VelocityRule,
)
from watcher.rules.wording import (
    contracts_text,
    dollars_text,
    signed_cents,
    signed_dollars,
    span_text,
)

__all__ = [
    "LEVEL_CHECKS",
    "Check",
    "Subject",
    "check_level",
    "settlement_text",
    "subject_values",
    "to_count",
]


@dataclass(frozen=True, slots=True)
class Subject:
    """One thing a rule is evaluated for: a market seen from ``side``, maybe one position.

    Attributes:
        scope: the state key: the ticker, or ``TICKER#id`` for a position-scoped rule.
        market: the market's live state.
        side: the side whose prices are used and shown.
        position: the position (always set for position-scoped rules).
        basis: which price marks it: ``last``, ``bid`` or ``mid``.
    """

    scope: str
    market: MarketState
    side: Side
    position: Position | None = None
    basis: PriceBasis = "last"

    @property
    def quote(self) -> SideQuote:
        """The market's quote on this side."""
        market = self.market
        return side_quote(
            self.side, yes_bid=market.yes_bid, yes_ask=market.yes_ask, yes_last=market.yes_last
        )

    @property
    def mark(self) -> int | None:
        """The price on this side by ``basis``, micro-dollars."""
        return mark_price(self.quote, self.basis)

    def mark_at(self, point: PricePoint) -> int | None:
        """The price on this side by ``basis`` at a history point."""
        quote = side_quote(
            self.side, yes_bid=point.yes_bid, yes_ask=point.yes_ask, yes_last=point.yes_last
        )
        return mark_price(quote, self.basis)


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of a level rule's condition for one subject."""

    active: bool
    clear: bool
    tag: str
    body: str


def subject_values(subject: Subject) -> dict[str, str]:
    """Template values known from the subject alone (market, title, side, prices, P&L)."""
    market, quote, position = subject.market, subject.quote, subject.position
    values = {"market": market.ticker, "side": subject.side}
    title = market.title or (position.title if position else None)
    values["title"] = title or market.ticker
    for name, micros in (("bid", quote.bid), ("ask", quote.ask), ("price", subject.mark)):
        if micros is not None:
            values[name] = format_cents(micros)
    if quote.bid is not None and quote.ask is not None:
        values["spread"] = format_cents(quote.ask - quote.bid)
    if position is not None:
        values["entry"] = format_cents(position.entry_micros)
        values["contracts"] = contracts_text(position.contracts)
        mark = subject.mark
        if mark is not None:
            values["move"] = signed_cents(move_micros(position, mark))
            values["pnl"] = signed_dollars(pnl_dollars(position, mark))
    return values


def check_level(rule: LevelRule, subject: Subject, ts_ms: int) -> Check | None:
    """Evaluate any level rule (dispatch on its type)."""
    return LEVEL_CHECKS[type(rule)](rule, subject, ts_ms)


def _spread(rule: SpreadRule, subject: Subject, ts_ms: int) -> Check | None:
    quote = subject.quote
    if quote.bid is None or quote.ask is None:
        return None
    spread = quote.ask - quote.bid
    rearm = rule.rearm_micros
    quoted = f"{subject.side} bid {format_cents(quote.bid)} / ask {format_cents(quote.ask)}"
    if rule.max_cents is not None:
        limit = cents_to_micros(rule.max_cents)
        active, clear, bound = spread <= limit, spread >= limit + rearm, "at most"
    else:
        assert rule.min_cents is not None  # the model requires exactly one
        limit = cents_to_micros(rule.min_cents)
        active, clear, bound = spread >= limit, spread <= limit - rearm, "at least"
    body = f"spread {format_cents(spread)} ({bound} {format_cents(limit)}): {quoted}"
    return Check(active, clear, "", body)


def _move(rule: MoveFromEntryRule, subject: Subject, ts_ms: int) -> Check | None:
    position, mark = subject.position, subject.mark
    if position is None or mark is None:
        return None
    move = move_micros(position, mark)
    tag, active, clear = _directional(move, cents_to_micros(rule.cents), rule, rule.direction)
    way = "up" if move >= 0 else "down"
    body = (
        f"{subject.side} {format_cents(mark)}, {way} {format_cents(abs(move))} from entry "
        f"{format_cents(position.entry_micros)} (P&L {signed_dollars(pnl_dollars(position, mark))})"
    )
    return Check(active, clear, tag, body)


def _directional(
    change: int, limit: int, rule: LevelRule, direction: str
) -> tuple[str, bool, bool]:
    """(tag, active, clear) for a signed change against ±limit in a direction."""
    rearm = rule.rearm_micros
    up, down = change >= limit, change <= -limit
    if direction == "up":
        return "up", up, change <= limit - rearm
    if direction == "down":
        return "down", down, change >= -limit + rearm
    return ("up" if change >= 0 else "down"), up or down, abs(change) <= limit - rearm


def _pnl(rule: PnlRule, subject: Subject, ts_ms: int) -> Check | None:
    position, mark = subject.position, subject.mark
    if position is None or mark is None:
        return None
    pnl = pnl_dollars(position, mark)
    rearm = Decimal(rule.rearm_micros) / 1_000_000
    above, below = rule.above_dollars, rule.below_dollars
    tag, active, bound = "", False, ""
    if above is not None and pnl >= above:
        tag, active, bound = "above", True, f"at or above {dollars_text(above)}"
    elif below is not None and pnl <= below:
        tag, active, bound = "below", True, f"at or below {dollars_text(below)}"
    clear = (above is None or pnl <= above - rearm) and (below is None or pnl >= below + rearm)
    body = (
        f"paper P&L {signed_dollars(pnl)}{f' ({bound})' if bound else ''}: "
        f"{contracts_text(position.contracts)} {subject.side} from "
        f"{format_cents(position.entry_micros)}, now {subject.side} {format_cents(mark)}"
    )
    return Check(active, clear, tag, body)


def _cross(rule: PriceCrossRule, subject: Subject, ts_ms: int) -> Check | None:
    mark = subject.mark
    if mark is None:
        return None
    level, rearm = cents_to_micros(rule.cents), rule.rearm_micros
    if rule.direction == "up":
        active, clear = mark >= level, mark <= level - rearm
    else:
        active, clear = mark <= level, mark >= level + rearm
    body = (
        f"{subject.side} {format_cents(mark)}, crossed {format_cents(level)} going {rule.direction}"
    )
    return Check(active, clear, rule.direction, body)


def _velocity(rule: VelocityRule, subject: Subject, ts_ms: int) -> Check | None:
    mark = subject.mark
    window = rule.within // timedelta(milliseconds=1)
    point = subject.market.price_at(ts_ms - window)
    then = subject.mark_at(point) if point is not None else None
    if mark is None or then is None or point is None:
        return None
    change = mark - then
    limit = cents_to_micros(rule.cents)
    tag, active, clear = _directional(change, limit, rule, rule.direction)
    way = "up" if change >= 0 else "down"
    body = (
        f"{subject.side} {format_cents(mark)}, {way} {format_cents(abs(change))} in "
        f"{span_text(ts_ms - point.ts_ms)} (from {format_cents(then)})"
    )
    return Check(active, clear, tag, body)


#: The check of each level rule type.
LEVEL_CHECKS: dict[type[Any], Callable[[Any, Subject, int], Check | None]] = {
    SpreadRule: _spread,
    MoveFromEntryRule: _move,
    PnlRule: _pnl,
    PriceCrossRule: _cross,
    VelocityRule: _velocity,
}


def to_count(count_micros: int) -> Decimal:
    """Contracts × 1,000,000 back to an exact Decimal count."""
    return Decimal(count_micros) / 1_000_000


def settlement_text(
    market: MarketState, positions: tuple[Position, ...]
) -> tuple[str, dict[str, str]]:
    """The settled alert's text: the result and each position's realized paper P&L."""
    result = (market.result or "").upper() or "unknown"
    yes_payout = market.settlement_value_micros
    if yes_payout is None and market.result in ("yes", "no"):
        yes_payout = DOLLAR if market.result == "yes" else 0
    extra = {"result": result}
    if yes_payout is None:
        return f"result {result} (payout not known yet)", extra
    parts: list[str] = []
    total = Decimal(0)
    for position in positions:
        payout = yes_payout if position.side == "YES" else DOLLAR - yes_payout
        pnl = pnl_dollars(position, payout)
        total += pnl
        parts.append(
            f"{contracts_text(position.contracts)} {position.side} from "
            f"{format_cents(position.entry_micros)} → {signed_dollars(pnl)}"
        )
    if parts:
        extra["pnl"] = signed_dollars(total)
    body = f"result {result}" + (f": {'; '.join(parts)}" if parts else "")
    return body, extra
