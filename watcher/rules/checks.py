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
from decimal import Decimal
from typing import Any

from watcher.domain.market import MarketState, PricePoint
from watcher.domain.positions import (
    Position,
    PriceBasis,
    Side,
    SideQuote,
    mark_price,
    move_micros,
    pnl_dollars,
    side_quote,
)
from watcher.kalshi.fixed import DOLLAR, format_cents
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
    "Check",
    "Subject",
    "check_level",
    "level_text",
    "settlement_text",
    "subject_values",
    "to_count",
]


@dataclass(frozen=True, slots=True)
class Subject:
    """One thing a rule is evaluated for: a market seen from ``side``, maybe one position.

    Built by :meth:`of` with the quote and mark worked out once, so the checks of every rule
    that shares the subject read them for free.

    Attributes:
        scope: the state key: the ticker, or ``TICKER#id`` for a position-scoped rule.
        market: the market's live state.
        side: the side whose prices are used and shown.
        position: the position (always set for position-scoped rules).
        basis: which price marks it: ``last``, ``bid`` or ``mid``.
        quote: the market's quote on this side.
        mark: the price on this side by ``basis``, micro-dollars (None when not known yet).
    """

    scope: str
    market: MarketState
    side: Side
    position: Position | None
    basis: PriceBasis
    quote: SideQuote
    mark: int | None

    @classmethod
    def of(
        cls,
        scope: str,
        market: MarketState,
        side: Side,
        position: Position | None = None,
        basis: PriceBasis = "last",
    ) -> Subject:
        """The subject with its quote and mark taken from ``market`` now."""
        quote = side_quote(
            side, yes_bid=market.yes_bid, yes_ask=market.yes_ask, yes_last=market.yes_last
        )
        return cls(scope, market, side, position, basis, quote, mark_price(quote, basis))

    def mark_at(self, point: PricePoint) -> int | None:
        """The price on this side by ``basis`` at a history point."""
        quote = side_quote(
            self.side, yes_bid=point.yes_bid, yes_ask=point.yes_ask, yes_last=point.yes_last
        )
        return mark_price(quote, self.basis)


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of a level rule's condition for one subject (no text: see :func:`level_text`)."""

    active: bool
    clear: bool
    tag: str


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
    """Evaluate any level rule's condition (dispatch on its type).

    This runs for every tick of a watched market, so it only compares integers; the alert
    text is made by :func:`level_text` once the rule fires.
    """
    return _CONDITIONS[type(rule)](rule, subject, ts_ms)


def level_text(rule: LevelRule, subject: Subject, ts_ms: int, check: Check) -> str:
    """The default alert text of a level rule whose ``check`` fired for ``subject``."""
    return _TEXTS[type(rule)](rule, subject, ts_ms, check)


# Conditions (hot path: integers only)


def _spread(rule: SpreadRule, subject: Subject, ts_ms: int) -> Check | None:
    bid, ask = subject.quote.bid, subject.quote.ask
    if bid is None or ask is None:
        return None
    spread, limit, rearm = ask - bid, rule.limit_micros, rule.rearm_micros
    if rule.max_cents is not None:
        return Check(spread <= limit, spread >= limit + rearm, "")
    return Check(spread >= limit, spread <= limit - rearm, "")


def _move(rule: MoveFromEntryRule, subject: Subject, ts_ms: int) -> Check | None:
    position, mark = subject.position, subject.mark
    if position is None or mark is None:
        return None
    move = mark - position.entry_micros
    return _directional(move, rule.cents_micros, rule, rule.direction)


def _directional(change: int, limit: int, rule: LevelRule, direction: str) -> Check:
    """The check of a signed change against ±limit in a direction."""
    rearm = rule.rearm_micros
    up, down = change >= limit, change <= -limit
    if direction == "up":
        return Check(up, change <= limit - rearm, "up")
    if direction == "down":
        return Check(down, change >= -limit + rearm, "down")
    return Check(up or down, abs(change) <= limit - rearm, "up" if change >= 0 else "down")


def _pnl(rule: PnlRule, subject: Subject, ts_ms: int) -> Check | None:
    position, mark = subject.position, subject.mark
    if position is None or mark is None:
        return None
    # P&L in micro-dollars is contracts × move = n × move / d exactly (contracts = n / d), so
    # each bound is compared as n × move against bound × d: integers, no rounding.
    n, d = position.contracts.as_integer_ratio()
    scaled = n * (mark - position.entry_micros)
    above, below, rearm = rule.above_micros, rule.below_micros, rule.rearm_micros
    if above is not None and scaled >= above * d:
        tag, active = "above", True
    elif below is not None and scaled <= below * d:
        tag, active = "below", True
    else:
        tag, active = "", False
    clear = (above is None or scaled <= (above - rearm) * d) and (
        below is None or scaled >= (below + rearm) * d
    )
    return Check(active, clear, tag)


def _cross(rule: PriceCrossRule, subject: Subject, ts_ms: int) -> Check | None:
    mark = subject.mark
    if mark is None:
        return None
    level, rearm = rule.cents_micros, rule.rearm_micros
    if rule.direction == "up":
        return Check(mark >= level, mark <= level - rearm, "up")
    return Check(mark <= level, mark >= level + rearm, "down")


def _velocity(rule: VelocityRule, subject: Subject, ts_ms: int) -> Check | None:
    mark, then = subject.mark, _price_then(rule, subject, ts_ms)[1]
    if mark is None or then is None:
        return None
    return _directional(mark - then, rule.cents_micros, rule, rule.direction)


def _price_then(
    rule: VelocityRule, subject: Subject, ts_ms: int
) -> tuple[PricePoint | None, int | None]:
    """The history point ``within`` before ``ts_ms`` and the subject's price then."""
    point = subject.market.price_at(ts_ms - rule.within_ms)
    return point, (subject.mark_at(point) if point is not None else None)


# Texts (only when a rule fires)


def _spread_text(rule: SpreadRule, subject: Subject, ts_ms: int, check: Check) -> str:
    bid, ask = subject.quote.bid or 0, subject.quote.ask or 0
    bound = "at most" if rule.max_cents is not None else "at least"
    quoted = f"{subject.side} bid {format_cents(bid)} / ask {format_cents(ask)}"
    return f"spread {format_cents(ask - bid)} ({bound} {format_cents(rule.limit_micros)}): {quoted}"


def _move_text(rule: MoveFromEntryRule, subject: Subject, ts_ms: int, check: Check) -> str:
    position, mark = subject.position, subject.mark
    assert position is not None and mark is not None  # the rule fired: both were known
    move = move_micros(position, mark)
    way = "up" if move >= 0 else "down"
    return (
        f"{subject.side} {format_cents(mark)}, {way} {format_cents(abs(move))} from entry "
        f"{format_cents(position.entry_micros)} (P&L {signed_dollars(pnl_dollars(position, mark))})"
    )


def _pnl_text(rule: PnlRule, subject: Subject, ts_ms: int, check: Check) -> str:
    position, mark = subject.position, subject.mark
    assert position is not None and mark is not None
    pnl = pnl_dollars(position, mark)
    bound = ""  # which bound the condition found crossed (see _pnl), in words
    if check.tag == "above" and rule.above_dollars is not None:
        bound = f" (at or above {dollars_text(rule.above_dollars)})"
    elif check.tag == "below" and rule.below_dollars is not None:
        bound = f" (at or below {dollars_text(rule.below_dollars)})"
    return (
        f"paper P&L {signed_dollars(pnl)}{bound}: "
        f"{contracts_text(position.contracts)} {subject.side} from "
        f"{format_cents(position.entry_micros)}, now {subject.side} {format_cents(mark)}"
    )


def _cross_text(rule: PriceCrossRule, subject: Subject, ts_ms: int, check: Check) -> str:
    mark = subject.mark or 0
    level = format_cents(rule.cents_micros)
    return f"{subject.side} {format_cents(mark)}, crossed {level} going {rule.direction}"


def _velocity_text(rule: VelocityRule, subject: Subject, ts_ms: int, check: Check) -> str:
    point, then = _price_then(rule, subject, ts_ms)
    mark = subject.mark
    assert point is not None and then is not None and mark is not None
    change = mark - then
    way = "up" if change >= 0 else "down"
    return (
        f"{subject.side} {format_cents(mark)}, {way} {format_cents(abs(change))} in "
        f"{span_text(ts_ms - point.ts_ms)} (from {format_cents(then)})"
    )


_CONDITIONS: dict[type[Any], Callable[[Any, Subject, int], Check | None]] = {
    SpreadRule: _spread,
    MoveFromEntryRule: _move,
    PnlRule: _pnl,
    PriceCrossRule: _cross,
    VelocityRule: _velocity,
}
_TEXTS: dict[type[Any], Callable[[Any, Subject, int, Check], str]] = {
    SpreadRule: _spread_text,
    MoveFromEntryRule: _move_text,
    PnlRule: _pnl_text,
    PriceCrossRule: _cross_text,
    VelocityRule: _velocity_text,
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
