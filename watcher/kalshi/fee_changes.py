"""Event-level fee overrides: the body of ``GET /events/fee_changes`` (kalshi-protocol.md §14).

Sans-I/O. Kalshi layers an event's fee override on top of its series' ``fee_type`` and
``fee_multiplier``; each change takes effect at ``scheduled_ts`` and a change whose
``fee_type_override`` and ``fee_multiplier_override`` are both null clears the override (the
event falls back to its series). The answer, as published at
docs.kalshi.com/api-reference/events/get-event-fee-changes (OpenAPI 3.29.0)::

    {"event_fee_changes": [{"id": "…", "event_ticker": "KXBTCD-26MAY2018",
      "series_ticker": "KXBTCD", "fee_type_override": "quadratic",
      "fee_multiplier_override": 0.5, "scheduled_ts": "2026-05-01T00:00:00Z"}],
     "cursor": ""}

``cursor`` is empty on the last page. The multiplier, a JSON number, decodes exactly into a
:class:`~decimal.Decimal`; every field may be absent (a missing one reads as None).
The same override also arrives live as ``event_fee_update`` on the ``market_lifecycle_v2``
channel (:class:`watcher.kalshi.messages.EventFeeUpdate`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from watcher.kalshi.payloads import KalshiStruct

__all__ = [
    "MAX_FEE_CHANGES_LIMIT",
    "RestEventFeeChange",
    "RestEventFeeChangesResponse",
    "exact_number",
    "rfc3339_ms",
]

#: The largest ``limit`` Kalshi accepts on ``GET /events/fee_changes`` (its default is 100).
MAX_FEE_CHANGES_LIMIT = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RestEventFeeChange(KalshiStruct, kw_only=True, frozen=True):
    """One fee change of an event: the override it sets (both None: cleared) and when."""

    id: str | None = None
    event_ticker: str | None = None
    series_ticker: str | None = None
    fee_type_override: str | None = None
    fee_multiplier_override: Decimal | None = None
    #: When the change takes effect (RFC 3339), or None if Kalshi did not say.
    scheduled_ts: str | None = None

    @property
    def cleared(self) -> bool:
        """Whether this change clears the override (both fields null)."""
        return self.fee_type_override is None and self.fee_multiplier_override is None

    @property
    def scheduled_ms(self) -> int | None:
        """:attr:`scheduled_ts` in Unix milliseconds; None when absent or unreadable."""
        return rfc3339_ms(self.scheduled_ts)


class RestEventFeeChangesResponse(KalshiStruct, kw_only=True, frozen=True):
    """One page of ``GET /events/fee_changes``; ``cursor`` is empty on the last page."""

    event_fee_changes: list[RestEventFeeChange] = []  # noqa: RUF012 (msgspec copies defaults)
    cursor: str | None = None


def rfc3339_ms(text: str | None) -> int | None:
    """An RFC 3339 time (``2026-05-01T00:00:00Z``, fractions allowed) in Unix milliseconds;
    None when ``text`` is empty or not a time. A time without an offset is taken as UTC."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


def exact_number(value: Decimal | int | float | None) -> Decimal | None:
    """A JSON number as an exact Decimal. A float that was already decoded (``0.1``) becomes
    the shortest decimal that reads back as it (``Decimal("0.1")``), never its binary value."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
