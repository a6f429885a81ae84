"""The JSON of an :class:`~watcher.domain.event.EventInfo` as the ``events`` table keeps it.

Both backends store the same text. Strikes are exact decimal strings (``"52.5"``), never
floats, so an event read back equals the one written.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from watcher.domain.event import EventInfo, EventMarket

__all__ = ["EVENTS_SQL", "event_from_json", "event_to_json"]

#: Every stored event's ``info``, by event ticker (the same text on both backends).
EVENTS_SQL = "SELECT info FROM events ORDER BY event_ticker"


def event_to_json(info: EventInfo) -> str:
    """The ``info`` column for ``info``: compact JSON, strikes as exact decimal strings."""
    body = {
        "event_ticker": info.event_ticker,
        "series_ticker": info.series_ticker,
        "title": info.title,
        "mutually_exclusive": info.mutually_exclusive,
        "fee_multiplier": str(info.fee_multiplier),
        "markets": [
            {
                "ticker": m.ticker,
                "strike_type": m.strike_type,
                "floor_strike": _text(m.floor_strike),
                "cap_strike": _text(m.cap_strike),
                "close_time_ms": m.close_time_ms,
                "status": m.status,
            }
            for m in info.markets
        ],
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def event_from_json(text: str) -> EventInfo:
    """The event stored as ``text`` by :func:`event_to_json`."""
    body = json.loads(text)
    return EventInfo(
        event_ticker=str(body["event_ticker"]),
        series_ticker=body.get("series_ticker"),
        title=body.get("title"),
        mutually_exclusive=bool(body.get("mutually_exclusive")),
        markets=tuple(_market(m) for m in body.get("markets", ())),
        fee_multiplier=Decimal(str(body.get("fee_multiplier", "1"))),
    )


def _market(body: dict[str, Any]) -> EventMarket:
    close = body.get("close_time_ms")
    return EventMarket(
        ticker=str(body["ticker"]),
        strike_type=body.get("strike_type"),
        floor_strike=_decimal(body.get("floor_strike")),
        cap_strike=_decimal(body.get("cap_strike")),
        close_time_ms=None if close is None else int(close),
        status=body.get("status"),
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))
