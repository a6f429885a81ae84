"""The values the store's ports speak: rows, alert records, statuses, writer stats.

Plain frozen dataclasses and enums, importable without any database driver, so the ports
(:mod:`watcher.store.ports`), the read-outs and a future PostgreSQL backend share them. Money and
counts are exact integers in micro-units (``_e6``): ``price_e6 = 450000`` is $0.45.
``to_json()`` renders them with dollars and contracts as exact decimal strings, never floats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any, TypeAlias

from watcher.kalshi.fixed import MICROS_PER_UNIT
from watcher.kalshi.messages import MarketLifecycle, RestMarket
from watcher.store.fill_values import check_fill, exact_amount

__all__ = [
    "OPEN_STATUSES",
    "AlertRecord",
    "AlertStatus",
    "DeliveryRecord",
    "DeliveryRef",
    "DeliveryStatus",
    "EventKind",
    "Maintenance",
    "MarketRow",
    "PaperFill",
    "PendingDelivery",
    "ReplayEvent",
    "TickerRow",
    "TradeRow",
    "WriterState",
    "WriterStats",
    "decimal_text",
    "rollup_status",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: ``(alert_id, target)``: the primary key of one delivery row.
DeliveryRef: TypeAlias = tuple[int, str]


# Market rows


def decimal_text(micros: int | None, places: int = 2) -> str | None:
    """Render micro-units as an exact decimal string with at least ``places`` decimals.

    ``450000`` → ``"0.45"``, ``455000`` → ``"0.455"``, ``136000000`` → ``"136.00"``.
    """
    if micros is None:
        return None
    value = Decimal(micros) / MICROS_PER_UNIT
    minimum = Decimal(1).scaleb(-places)
    if value == value.quantize(minimum):
        return f"{value.quantize(minimum):f}"
    return f"{value.normalize():f}"


@dataclass(frozen=True, slots=True)
class TickerRow:
    """One stored ``ticker`` update; prices in micro-dollars, sizes in micro-contracts."""

    market_ticker: str
    ts_ms: int
    received_ms: int
    price_e6: int | None
    yes_bid_e6: int | None
    yes_ask_e6: int | None
    yes_bid_size_e6: int | None
    yes_ask_size_e6: int | None
    last_trade_size_e6: int | None
    volume_e6: int | None
    open_interest_e6: int | None
    dollar_volume: int | None
    dollar_open_interest: int | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: prices as dollar strings, sizes as contract strings."""
        return {
            "market_ticker": self.market_ticker,
            "ts_ms": self.ts_ms,
            "received_ms": self.received_ms,
            "price_dollars": decimal_text(self.price_e6),
            "yes_bid_dollars": decimal_text(self.yes_bid_e6),
            "yes_ask_dollars": decimal_text(self.yes_ask_e6),
            "yes_bid_size": decimal_text(self.yes_bid_size_e6),
            "yes_ask_size": decimal_text(self.yes_ask_size_e6),
            "last_trade_size": decimal_text(self.last_trade_size_e6),
            "volume": decimal_text(self.volume_e6),
            "open_interest": decimal_text(self.open_interest_e6),
            "dollar_volume": self.dollar_volume,
            "dollar_open_interest": self.dollar_open_interest,
        }


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One stored public trade; ``late`` marks a trade backfilled over REST after a gap."""

    trade_id: str
    market_ticker: str
    ts_ms: int
    received_ms: int
    yes_price_e6: int
    no_price_e6: int
    count_e6: int
    taker_side: str | None
    is_block_trade: bool | None
    late: bool

    @classmethod
    def from_sql(cls, row: tuple[Any, ...]) -> TradeRow:
        """Build from a ``SELECT`` of the trade columns (SQLite integers back to booleans)."""
        trade_id, market, ts_ms, received_ms, yes_e6, no_e6, count_e6, side, block, late = row
        return cls(
            trade_id=trade_id,
            market_ticker=market,
            ts_ms=ts_ms,
            received_ms=received_ms,
            yes_price_e6=yes_e6,
            no_price_e6=no_e6,
            count_e6=count_e6,
            taker_side=side,
            is_block_trade=None if block is None else bool(block),
            late=bool(late),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: prices as dollar strings, the count as a contract string."""
        return {
            "trade_id": self.trade_id,
            "market_ticker": self.market_ticker,
            "ts_ms": self.ts_ms,
            "received_ms": self.received_ms,
            "yes_price_dollars": decimal_text(self.yes_price_e6),
            "no_price_dollars": decimal_text(self.no_price_e6),
            "count": decimal_text(self.count_e6),
            "taker_side": self.taker_side,
            "is_block_trade": self.is_block_trade,
            "late": self.late,
        }


@dataclass(frozen=True, slots=True)
class MarketRow:
    """Market metadata the WebSocket does not report (from REST or lifecycle events).

    When written, ``None`` fields keep the value already stored for that market, and
    ``updated_ms`` 0 (the default) stands for the time of writing.
    """

    market_ticker: str
    title: str | None = None
    status: str | None = None
    close_time_ms: int | None = None
    result: str | None = None
    updated_ms: int = 0

    @classmethod
    def from_rest(cls, market: RestMarket, *, updated_ms: int) -> MarketRow:
        """Build from a REST ``GET /markets/{ticker}`` body; ``close_time`` is RFC 3339.

        Raises:
            ValueError: ``close_time`` is not an RFC 3339 timestamp.
        """
        close_ms = None
        if market.close_time:
            parsed = datetime.fromisoformat(market.close_time.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            close_ms = (parsed - _EPOCH) // timedelta(milliseconds=1)
        return cls(
            market_ticker=market.ticker,
            title=market.title,
            status=market.status,
            close_time_ms=close_ms,
            result=market.result or None,
            updated_ms=updated_ms,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the row."""
        return {
            "market_ticker": self.market_ticker,
            "title": self.title,
            "status": self.status,
            "close_time_ms": self.close_time_ms,
            "result": self.result,
            "updated_ms": self.updated_ms,
        }


# Paper fills


@dataclass(frozen=True, slots=True)
class PaperFill:
    """One paper fill (a buy or sell of a paper position), as ``paper_fills`` keeps it.

    ``fill_key`` is unique: a key recorded twice stores one row (a rule's close uses its alert
    key, a command-line fill a fresh uuid). Amounts are exact Decimals (an int is accepted):
    ``contracts`` has at most 6 decimals; ``price_dollars`` (per contract, 0 to 1) and
    ``fee_dollars`` (the order's fee) may have more, as a depth-walked average does.

    Raises:
        ValueError: ``side`` not YES/NO, ``action`` not buy/sell, ``source`` not
            cli/rule/web/chat, an empty key, id or ticker, contracts not positive or with
            more than 6 decimals, a price outside 0..1, a negative fee.
        TypeError: an amount that is neither a Decimal nor an int, or ``ts_ms`` not an int.
    """

    fill_key: str
    position_id: str
    ticker: str
    side: str  # YES | NO
    action: str  # buy | sell
    contracts: Decimal
    price_dollars: Decimal
    fee_dollars: Decimal
    ts_ms: int
    source: str  # cli | rule | web | chat

    def __post_init__(self) -> None:
        for name in ("contracts", "price_dollars", "fee_dollars"):
            object.__setattr__(self, name, exact_amount(name, getattr(self, name)))
        check_fill(self)

    @property
    def contracts_e6(self) -> int:
        """``contracts`` in micro-contracts (exact: checked when built)."""
        return int(self.contracts.scaleb(6))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, amounts as exact decimal strings."""
        amounts = ("contracts", "price_dollars", "fee_dollars")
        return {
            name: f"{value:f}" if name in amounts else value
            for name in self.__dataclass_fields__
            for value in (getattr(self, name),)
        }


# Alerts and deliveries


class AlertStatus(StrEnum):
    """``alerts.status``."""

    PENDING = "pending"
    DELIVERED = "delivered"
    PARTIAL = "partial"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    CONSOLE = "console"


class DeliveryStatus(StrEnum):
    """``alert_deliveries.status``."""

    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    CONFIG_ERROR = "config_error"
    FAILED = "failed"


OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """One (alert, target) delivery that is due, with the alert text it has to carry."""

    alert_id: int
    target: str
    attempts: int
    next_attempt_ms: int | None
    created_ms: int
    key: str
    rule: str
    market_ticker: str
    severity: str
    title: str
    body: str

    @property
    def ref(self) -> DeliveryRef:
        """The row's primary key, as the ``mark_*`` methods take it."""
        return (self.alert_id, self.target)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One ``alert_deliveries`` row (``last_error`` is already masked)."""

    target: str
    status: str
    attempts: int
    next_attempt_ms: int | None
    last_error: str | None
    updated_ms: int


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One ``alerts`` row with its deliveries, for ``watcher alerts`` (and why it was held)."""

    id: int
    key: str
    rule: str
    market_ticker: str
    severity: str
    title: str
    body: str
    targets: tuple[str, ...]
    status: str
    created_ms: int
    updated_ms: int
    deliveries: tuple[DeliveryRecord, ...]
    suppressed_reason: str | None = None


def rollup_status(statuses: Iterable[str]) -> AlertStatus:
    """The alert status implied by its deliveries' statuses.

    Any open delivery keeps the alert ``pending``; otherwise all delivered is ``delivered``,
    none is ``failed`` and some is ``partial``. No deliveries at all means ``console``.
    """
    listed = list(statuses)
    if not listed:
        return AlertStatus.CONSOLE
    if any(s in OPEN_STATUSES for s in listed):
        return AlertStatus.PENDING
    delivered = sum(s == DeliveryStatus.DELIVERED for s in listed)
    if delivered == len(listed):
        return AlertStatus.DELIVERED
    return AlertStatus.FAILED if delivered == 0 else AlertStatus.PARTIAL


# The tick writer and the scheduler's upkeep


class WriterState(Enum):
    """Lifecycle of a :class:`StoreWriter`."""

    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of the writer's counters.

    Attributes:
        rows_written: rows inserted (or updated) per table; duplicates ignored are not counted.
        batches: transactions committed.
        queue_depth: items waiting in the queue when the snapshot was taken.
        errors: failed write attempts (each one was retried).
        rejected: items that could not be converted to a row and were skipped.
        last_flush_ms: wall-clock time of the last commit, Unix milliseconds.
    """

    rows_written: Mapping[str, int]
    batches: int
    queue_depth: int
    errors: int
    rejected: int
    last_flush_ms: int | None


#: The kind of a recorded event in a replay stream (also the name of its counter in replay stats).
EventKind: TypeAlias = str
#: ``(ts_ms, kind, row)`` with kind ``"ticks"`` (a :class:`TickerRow`), ``"trades"`` (a
#: :class:`TradeRow`) or ``"lifecycle"`` (the decoded :class:`MarketLifecycle` frame).
ReplayEvent: TypeAlias = tuple[int, EventKind, TickerRow | TradeRow | MarketLifecycle]


@dataclass(frozen=True, slots=True)
class Maintenance:
    """What one :meth:`~watcher.store.ports.Backend.maintain` did.

    Attributes:
        deleted: rows deleted per table (SQLite deletes old rows in small batches).
        created: partitions created (PostgreSQL: today's and the next days').
        dropped: whole partitions dropped because their day is past retention (PostgreSQL).
    """

    deleted: Mapping[str, int] = field(default_factory=dict)
    created: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
