"""Event fee overrides of the simulated exchange: ``GET /events/fee_changes`` (§14).

Sans-I/O. An :class:`EventFeeChanges` holds the fee changes tests (or a demo) configure, in
the order they were added, and answers with Kalshi's envelope: ``{"event_fee_changes": [...],
"cursor": "…"}`` (``cursor`` empty on the last page), each change carrying ``id``,
``event_ticker``, ``series_ticker``, ``fee_type_override``, ``fee_multiplier_override`` (a JSON
number; both null: the override is cleared) and ``scheduled_ts`` (RFC 3339). Nothing is
configured by default: every event pays its series' ``fee_multiplier``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from watcher.kalshi.sim.series import error_body, series_of

__all__ = ["EventFeeChanges"]

#: The largest ``limit`` Kalshi accepts on ``GET /events/fee_changes``.
_MAX_LIMIT = 1000


class EventFeeChanges:
    """The configured event fee changes, and scripted failures of their lookup.

    Args:
        page_size: changes per page when the request's ``limit`` is larger or absent (a small
            one lets tests see several pages).
    """

    def __init__(self, *, page_size: int = 100) -> None:
        self.changes: list[dict[str, Any]] = []
        self.page_size = page_size
        #: Scripted failures: event ticker → the HTTP status its lookup answers.
        self.failures: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<EventFeeChanges {len(self.changes)} changes page_size={self.page_size}>"

    # Public methods

    def add(
        self,
        event_ticker: str,
        fee_multiplier: Decimal | str | None,
        *,
        fee_type: str | None = "quadratic",
        at: datetime | None = None,
    ) -> None:
        """Schedule an override of ``event_ticker``'s fee from ``at`` (default: now); a
        ``fee_multiplier`` of None clears the override (``fee_type`` is then null too)."""
        value = None if fee_multiplier is None else _number(Decimal(fee_multiplier))
        when = (at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        self.changes.append(
            {
                "id": f"sim-fee-{len(self.changes) + 1}",
                "event_ticker": event_ticker,
                "series_ticker": series_of(event_ticker),
                "fee_type_override": None if value is None else fee_type,
                "fee_multiplier_override": value,
                "scheduled_ts": when.isoformat().replace("+00:00", "Z"),
            }
        )

    def clear(self, event_ticker: str, *, at: datetime | None = None) -> None:
        """Schedule the clearing of ``event_ticker``'s override from ``at`` (default: now)."""
        self.add(event_ticker, None, at=at)

    def rest_fee_changes(self, query: Mapping[str, list[str]]) -> tuple[int, Any]:
        """``(status, body)`` of ``GET /events/fee_changes``: filtered by ``event_ticker``
        (none: every event), paginated by ``limit`` and ``cursor``."""
        event = query.get("event_ticker", [""])[0]
        if event in self.failures:
            return self.failures[event], error_body("internal", f"fee changes failed: {event}")
        limit = int(query.get("limit", [""])[0] or self.page_size)
        if not 1 <= limit <= _MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {_MAX_LIMIT}, but got {limit}")
        limit = min(limit, self.page_size)
        chosen = [c for c in self.changes if not event or c["event_ticker"] == event]
        start = int(query.get("cursor", [""])[0] or 0)
        end = start + limit
        page = chosen[start:end]
        return 200, {"event_fee_changes": page, "cursor": str(end) if end < len(chosen) else ""}


def _number(value: Decimal) -> int | float:
    """A multiplier as Kalshi sends it: a JSON number."""
    return int(value) if value == value.to_integral_value() else float(value)
