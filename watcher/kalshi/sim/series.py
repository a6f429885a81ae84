"""Events and series of the simulated exchange: ``GET /events/{t}`` and ``GET /series/{t}`` (§14).

Sans-I/O. A simulated market's event is its ticker without the last dash-separated part and its
series is the first part (Kalshi's convention: ``KXCPI-26JAN-T0.3`` is in event ``KXCPI-26JAN``
of series ``KXCPI``). A series exists once one of its markets does or once it is configured.
Each series has a ``fee_multiplier`` (1 unless configured) and a ``fee_type`` (``quadratic``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from watcher.kalshi.sim.market import SimMarket

__all__ = ["SeriesBook", "error_body", "rest_event", "series_of"]


def series_of(event_ticker: str) -> str:
    """The series of an event: its first dash-separated part."""
    return event_ticker.split("-", 1)[0]


class SeriesBook:
    """The fee settings of the simulated series, and scripted failures of their lookups.

    Args:
        fee_multipliers: series ticker → ``fee_multiplier`` (a dollar-free decimal, e.g. "0.5").
    """

    def __init__(self, fee_multipliers: Mapping[str, Decimal | str] | None = None) -> None:
        self.multipliers: dict[str, Decimal | None] = {
            ticker: Decimal(value) for ticker, value in (fee_multipliers or {}).items()
        }
        self.fee_types: dict[str, str] = {}
        self.failures: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<SeriesBook configured={sorted(self.multipliers)} failing={sorted(self.failures)}>"

    # Public methods

    def configure(
        self, ticker: str, *, fee_multiplier: Decimal | str | None, fee_type: str = "quadratic"
    ) -> None:
        """Set a series' fee; ``fee_multiplier=None`` leaves the field out of the body."""
        self.multipliers[ticker] = None if fee_multiplier is None else Decimal(fee_multiplier)
        self.fee_types[ticker] = fee_type

    def rest_series(self, ticker: str, markets: Iterable[SimMarket]) -> tuple[int, Any]:
        """``(status, body)`` of ``GET /series/{ticker}``."""
        if ticker in self.failures:
            return self.failures[ticker], error_body("internal", f"series lookup failed: {ticker}")
        known = ticker in self.multipliers or any(
            series_of(m.event_ticker) == ticker for m in markets if not m.unknown
        )
        if not known:
            return 404, error_body("not_found", f"series not found: {ticker}")
        body: dict[str, Any] = {
            "ticker": ticker,
            "frequency": "custom",
            "title": f"Simulated series {ticker}",
            "category": "Simulated",
            "tags": [],
            "settlement_sources": [],
            "contract_url": "",
            "contract_terms_url": "",
            "fee_type": self.fee_types.get(ticker, "quadratic"),
            "additional_prohibitions": [],
            "product_metadata": {},
        }
        multiplier = self.multipliers.get(ticker, Decimal(1))
        if multiplier is not None:
            whole = multiplier == multiplier.to_integral_value()
            body["fee_multiplier"] = int(multiplier) if whole else float(multiplier)  # a number
        return 200, {"series": body}


def rest_event(event_ticker: str, markets: Iterable[SimMarket], now_ms: int) -> tuple[int, Any]:
    """``(status, body)`` of ``GET /events/{event_ticker}`` (markets beside the event)."""
    members = [m for m in markets if m.event_ticker == event_ticker and not m.unknown]
    if not members:
        return 404, error_body("not_found", f"event not found: {event_ticker}")
    event = {
        "event_ticker": event_ticker,
        "series_ticker": series_of(event_ticker),
        "title": f"Simulated event {event_ticker}",
        "sub_title": "",
        "category": "Simulated",
        "mutually_exclusive": False,
        "collateral_return_type": "",
        "strike_period": "",
        "available_on_brokers": False,
    }
    return 200, {"event": event, "markets": [m.rest_market(now_ms) for m in members]}


def error_body(code: str, message: str) -> dict[str, Any]:
    """Kalshi's error body: ``{"error": {"code": …, "message": …}}``."""
    return {"error": {"code": code, "message": message}}
