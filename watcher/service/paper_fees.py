"""The fee multiplier of each market's series, for paper fees (issue 12, "Fees").

Kalshi's taker fee is ``fee_multiplier × rate × C × P × (1 − P)`` rounded up to the cent
(:mod:`watcher.domain.fees`), where the series' ``fee_multiplier`` comes from REST:
``GET /markets/{ticker}`` names the ``event_ticker``, ``GET /events/{event_ticker}`` the
``series_ticker``, and ``GET /series/{series_ticker}`` the ``fee_type`` and ``fee_multiplier``.

:class:`SeriesFees` asks once per market and once per series and keeps the answer for the
process. When the answer lacks the field (or holds a negative number), the multiplier is 1 and
that is kept; when Kalshi cannot be asked (an outage), the multiplier is 1 for this fee and
Kalshi is asked again for the next one. Each reason is logged once at INFO. A ``fee_type``
other than ``quadratic`` and ``quadratic_with_maker_fees`` (``flat``, or one we do not know)
still gets the quadratic formula times the multiplier, logged once: the flat table is not
modelled.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Final, Protocol

from watcher.errors import KalshiError
from watcher.kalshi.rest_bodies import RestEvent, RestMarket, RestSeries
from watcher.service.paper_quotes import MarketSource

__all__ = ["QUADRATIC_FEE_TYPES", "PaperSource", "SeriesFees", "SeriesSource"]

logger = logging.getLogger("watcher.paper")

#: The fee types the quadratic formula describes (makers' fees are not modelled: paper takes).
QUADRATIC_FEE_TYPES: Final = ("quadratic", "quadratic_with_maker_fees")
_ONE: Final = Decimal(1)


class SeriesSource(Protocol):
    """What the fee lookup needs of Kalshi's REST API (a ``KalshiRestClient``)."""

    async def get_market(self, ticker: str) -> RestMarket: ...

    async def get_event(self, event_ticker: str) -> RestEvent: ...

    async def get_series(self, series_ticker: str) -> RestSeries: ...


class PaperSource(MarketSource, SeriesSource, Protocol):
    """Everything the paper desk asks of Kalshi's REST API: quotes, books and series fees."""


class SeriesFees:
    """Each market's series ``fee_multiplier``, asked of Kalshi once and kept.

    Args:
        rest: Kalshi's REST API (or the simulator's).
        purpose: what the fees are for, in the log lines (``paper fees``, ``event rule fees``).
    """

    def __init__(self, rest: SeriesSource, *, purpose: str = "paper fees") -> None:
        self.rest = rest
        self.purpose = purpose
        self._series_of: dict[str, str | None] = {}
        self._multipliers: dict[str, Decimal] = {}
        self._said: set[str] = set()

    def __repr__(self) -> str:
        return f"<SeriesFees {len(self._multipliers)} series>"

    # Public methods

    async def multiplier(self, ticker: str) -> Decimal:
        """The ``fee_multiplier`` of ``ticker``'s series; 1 when it cannot be known."""
        try:
            if ticker not in self._series_of:
                self._series_of[ticker] = await self._series(ticker)
        except KalshiError as exc:  # not kept: asked again for the next fee
            self._fallback(ticker, f"its series could not be looked up: {exc}")
            return _ONE
        series = self._series_of[ticker]
        if series is None:
            return _ONE
        return await self.series_multiplier(series)

    async def series_multiplier(self, series: str) -> Decimal:
        """The ``fee_multiplier`` of the series ``series``; 1 when it cannot be known (also
        what the event rules use: :mod:`watcher.service.watchlist`)."""
        if series not in self._multipliers:
            try:
                self._multipliers[series] = await self._ask_multiplier(series)
            except KalshiError as exc:  # not kept either
                self._fallback(f"series {series}", f"GET /series failed: {exc}")
                return _ONE
        return self._multipliers[series]

    # Private methods

    async def _series(self, ticker: str) -> str | None:
        """The series ticker of a market, or None (logged) when Kalshi says none."""
        market = await self.rest.get_market(ticker)
        if not market.event_ticker:
            self._fallback(ticker, "the market names no event_ticker")
            return None
        event = await self.rest.get_event(market.event_ticker)
        if not event.series_ticker:
            self._fallback(ticker, f"event {event.event_ticker} names no series_ticker")
            return None
        return event.series_ticker

    async def _ask_multiplier(self, series: str) -> Decimal:
        found = await self.rest.get_series(series)
        value = found.fee_multiplier
        if value is None or not value.is_finite() or value < 0:
            self._fallback(f"series {series}", f"fee_multiplier is {value!r}")
            return _ONE
        if found.fee_type not in QUADRATIC_FEE_TYPES:
            logger.info(
                "series %s has fee_type %r: %s use the quadratic formula × %s",
                series,
                found.fee_type,
                self.purpose,
                value,
            )
        logger.debug("series %s: fee_type %s, fee_multiplier %s", series, found.fee_type, value)
        return value

    def _fallback(self, what: str, reason: str) -> None:
        """Say once per market or series (and kind of reason) that its fees use multiplier 1."""
        said = f"{what}: {reason.split(':', 1)[0]}"
        if said not in self._said:
            self._said.add(said)
            logger.info("%s of %s use fee multiplier 1: %s", self.purpose, what, reason)
