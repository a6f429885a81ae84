"""The score of paper trading: each position's entry, exit, fees and P&L, and the totals. Pure.

What ``watcher paper list`` shows. Every position of ``trades.json`` is a paper position; the
fields a paper order writes (:mod:`watcher.service.paper_book`) are read back from its raw entry:

* open (``PENDING``/``OPEN``): unrealized P&L at the side's bid now, after the entry fee and the
  fee selling would cost (what closing now would realize); unknown without a bid;
* ``CLOSED``: ``realized_pnl_dollars`` as written at the close;
* ``SETTLED``: the settlement write-back's ``pnl_dollars`` less the entry fee (settling is free);
* ``CANCELLED``: listed, counted nowhere.

Win rate = closed or settled positions with realized P&L above 0, over all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from watcher.domain.fees import TAKER_RATE, taker_fee
from watcher.domain.positions import Position
from watcher.kalshi.fixed import micros_to_decimal

__all__ = ["LedgerLine", "PaperBook", "entry_fee", "raw_decimal", "score"]

_DONE = ("CLOSED", "SETTLED")


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """One position as ``paper list`` shows it (amounts in dollars; None when unknown)."""

    id: str | None
    index: int
    ticker: str
    side: str
    status: str
    contracts: Decimal
    entry_price: Decimal
    entry_fee: Decimal
    exit_price: Decimal | None = None
    exit_fee: Decimal | None = None
    realized: Decimal | None = None
    mark: Decimal | None = None
    unrealized: Decimal | None = None

    @property
    def fees(self) -> Decimal:
        return self.entry_fee + (self.exit_fee or 0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; amounts as exact decimal strings (or null)."""
        return {
            name: f"{value:f}" if isinstance(value, Decimal) else value
            for name in self.__dataclass_fields__
            for value in (getattr(self, name),)
        }


@dataclass(frozen=True, slots=True)
class PaperBook:
    """Every position's line and the totals."""

    lines: tuple[LedgerLine, ...]
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    wins: int
    done: int
    unpriced: int

    @property
    def win_rate(self) -> Decimal | None:
        """Wins over closed and settled positions, 0–1; None before the first."""
        return None if not self.done else Decimal(self.wins) / self.done

    def to_json(self) -> dict[str, Any]:
        rate = self.win_rate
        return {
            "positions": [line.to_json() for line in self.lines],
            "realized": f"{self.realized:f}",
            "unrealized": f"{self.unrealized:f}",
            "fees": f"{self.fees:f}",
            "wins": self.wins,
            "closed": self.done,
            "win_rate": None if rate is None else f"{rate.quantize(Decimal('0.0001')):f}",
            "unpriced": self.unpriced,
        }


def score(
    positions: Iterable[Position],
    bids: Mapping[str, Decimal | None],
    *,
    rate: Decimal = TAKER_RATE,
    multipliers: Mapping[str, Decimal] | None = None,
) -> PaperBook:
    """Score ``positions``.

    Args:
        positions: every position of the file.
        bids: ``"TICKER YES"``/``"TICKER NO"`` → that side's bid now in dollars (None or
            missing: unknown, the position's unrealized P&L is then unknown).
        rate: the taker fee rate (for the fee closing would cost).
        multipliers: ticker → its series' ``fee_multiplier`` (missing: 1).
    """
    known = multipliers or {}
    lines = tuple(
        _line(p, bids.get(f"{p.ticker} {p.side}"), rate * known.get(p.ticker, Decimal(1)))
        for p in positions
    )
    done = [line for line in lines if line.status in _DONE and line.realized is not None]
    return PaperBook(
        lines=lines,
        realized=sum((line.realized or Decimal(0) for line in done), Decimal("0.00")),
        unrealized=sum((line.unrealized or Decimal(0) for line in lines), Decimal("0.00")),
        fees=sum((line.fees for line in lines if line.status != "CANCELLED"), Decimal("0.00")),
        wins=sum(1 for line in done if (line.realized or 0) > 0),
        done=len(done),
        unpriced=sum(1 for line in lines if line.status not in _FINISHED and line.mark is None),
    )


def entry_fee(position: Position) -> Decimal:
    """The entry fee an entry carries (``fees_dollars``; 0 when it has none)."""
    return raw_decimal(position.raw, "fees_dollars") or Decimal(0)


def raw_decimal(raw: Mapping[str, Any], key: str) -> Decimal | None:
    """A finite number or decimal string of an entry, or None."""
    value = raw.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return number if number.is_finite() else None


# Private functions

_FINISHED = ("CLOSED", "SETTLED", "CANCELLED")


def _line(position: Position, bid: Decimal | None, rate: Decimal) -> LedgerLine:
    entry = micros_to_decimal(position.entry_micros)
    fee = entry_fee(position)
    base = LedgerLine(
        id=position.id,
        index=position.index,
        ticker=position.ticker,
        side=position.side,
        status=position.status,
        contracts=position.contracts,
        entry_price=entry,
        entry_fee=fee,
    )
    raw = position.raw
    if position.status == "CLOSED":
        return replace(
            base,
            exit_price=raw_decimal(raw, "exit_price_dollars"),
            exit_fee=raw_decimal(raw, "exit_fees_dollars") or Decimal(0),
            realized=raw_decimal(raw, "realized_pnl_dollars"),
        )
    if position.status == "SETTLED":
        pnl = raw_decimal(raw, "pnl_dollars")
        return replace(base, realized=None if pnl is None else pnl - fee)
    if not position.is_watched or bid is None or not 0 <= bid <= 1:
        return base
    exit_fee = taker_fee(position.contracts, bid, rate=rate) if bid > 0 else Decimal(0)
    unrealized = (bid - entry) * position.contracts - fee - exit_fee
    return replace(base, mark=bid, unrealized=unrealized)
