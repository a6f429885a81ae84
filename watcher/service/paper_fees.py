"""The one fee lookup: each market's and event's fee multiplier, for paper fees (issue 12,
"Fees") and the event rules (issue 14).

Kalshi's taker fee is ``fee_multiplier × rate × C × P × (1 − P)`` rounded up to the cent
(:mod:`watcher.domain.fees`). The multiplier is the series' ``fee_multiplier`` unless the
event overrides it (kalshi-protocol.md §14): ``GET /markets/{ticker}`` names the
``event_ticker``, ``GET /events/{event_ticker}`` the ``series_ticker``, ``GET /series/{t}`` the
``fee_type`` and ``fee_multiplier``, and ``GET /events/fee_changes?event_ticker=…`` the event's
overrides, each set or cleared from its ``scheduled_ts`` on. :func:`effective_multiplier` is
the rule: the newest change scheduled at or before now, unless it clears the override; else
the series'. A live ``event_fee_update`` frame adds a change from now on
(:meth:`SeriesFees.apply_update`).

:class:`SeriesFees` asks once per market and once per series and keeps the answer for the
process. When the answer lacks the field (or holds a negative number), the multiplier is 1 and
that is kept; when Kalshi cannot be asked (an outage), the multiplier is 1 for this fee and
Kalshi is asked again for the next one. Each reason is logged once at INFO. A ``fee_type``
other than ``quadratic`` and ``quadratic_with_maker_fees`` (``flat``, or one we do not know)
still gets the quadratic formula times the multiplier, logged once: the flat table is not
modelled. An event's fee changes are kept for ``max_age`` seconds (asked again after, or at
once with ``fresh``); when they cannot be asked, a WARNING says so once per event and the
event keeps the changes last known, else pays its series' multiplier.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Protocol

from watcher.errors import KalshiError
from watcher.kalshi.fee_changes import RestEventFeeChange
from watcher.kalshi.rest_bodies import RestEvent, RestMarket, RestSeries
from watcher.service.paper_quotes import MarketSource

__all__ = [
    "QUADRATIC_FEE_TYPES",
    "FeeChange",
    "PaperSource",
    "SeriesFees",
    "SeriesSource",
    "effective_multiplier",
]

logger = logging.getLogger("watcher.paper")

#: The fee types the quadratic formula describes (makers' fees are not modelled: paper takes).
QUADRATIC_FEE_TYPES: Final = ("quadratic", "quadratic_with_maker_fees")
_ONE: Final = Decimal(1)
#: How long an event's fee changes are kept before Kalshi is asked again, in seconds.
CHANGES_MAX_AGE: Final = 300.0


class SeriesSource(Protocol):
    """What the fee lookup needs of Kalshi's REST API (a ``KalshiRestClient``)."""

    async def get_market(self, ticker: str) -> RestMarket: ...

    async def get_event(self, event_ticker: str) -> RestEvent: ...

    async def get_series(self, series_ticker: str) -> RestSeries: ...

    async def get_event_fee_changes(self, event_ticker: str) -> list[RestEventFeeChange]: ...


class PaperSource(MarketSource, SeriesSource, Protocol):
    """Everything the paper desk asks of Kalshi's REST API: quotes, books and fees."""


@dataclass(frozen=True, slots=True)
class FeeChange:
    """One override of an event's fee: set (``multiplier``) or cleared (None) from ``at_ms``
    (Unix milliseconds; None: Kalshi gave no time, so in force since ever)."""

    at_ms: int | None
    multiplier: Decimal | None
    fee_type: str | None = None


def effective_multiplier(changes: Iterable[FeeChange], series: Decimal, now_ms: int) -> Decimal:
    """The fee multiplier in force at ``now_ms``: that of the newest change scheduled at or
    before it (the later one on a tie), unless that change clears the override; else
    ``series``, the series' ``fee_multiplier``."""
    in_force = [c for c in changes if c.at_ms is None or c.at_ms <= now_ms]
    in_force.sort(key=lambda change: -1 if change.at_ms is None else change.at_ms)  # stable
    if not in_force or in_force[-1].multiplier is None:
        return series
    return in_force[-1].multiplier


class SeriesFees:
    """Each market's and event's fee multiplier, asked of Kalshi and kept.

    Args:
        rest: Kalshi's REST API (or the simulator's).
        purpose: what the fees are for, in the log lines (``paper fees``, ``event rule fees``).
        max_age: seconds an event's fee changes are kept before they are asked again.
        clock: Unix time in seconds (tests pass their own).
    """

    def __init__(
        self,
        rest: SeriesSource,
        *,
        purpose: str = "paper fees",
        max_age: float = CHANGES_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rest, self.purpose, self.clock = rest, purpose, clock
        self.max_age_ms = int(max_age * 1000)
        self._event_of: dict[str, tuple[str, str | None] | None] = {}
        self._multipliers: dict[str, Decimal] = {}
        self._changes: dict[str, tuple[int, tuple[FeeChange, ...]]] = {}  # (asked at, changes)
        self._said: set[str] = set()

    def __repr__(self) -> str:
        return f"<SeriesFees {len(self._multipliers)} series {len(self._changes)} events>"

    # Public methods

    async def multiplier(self, ticker: str) -> Decimal:
        """The fee multiplier of the market ``ticker``: its event's override in force, else
        its series' ``fee_multiplier``; 1 when neither can be known."""
        try:
            if ticker not in self._event_of:
                self._event_of[ticker] = await self._event(ticker)
        except KalshiError as exc:  # not kept: asked again for the next fee
            self._fallback(ticker, f"its series could not be looked up: {exc}")
            return _ONE
        found = self._event_of[ticker]
        if found is None:
            return _ONE
        return await self.event_multiplier(*found)

    async def series_multiplier(self, series: str) -> Decimal:
        """The ``fee_multiplier`` of the series ``series``; 1 when it cannot be known."""
        if series not in self._multipliers:
            try:
                self._multipliers[series] = await self._ask_multiplier(series)
            except KalshiError as exc:  # not kept either
                self._fallback(f"series {series}", f"GET /series failed: {exc}")
                return _ONE
        return self._multipliers[series]

    async def event_multiplier(
        self, event: str, series: str | None, *, fresh: bool = False
    ) -> Decimal:
        """The fee multiplier of the event ``event`` of series ``series`` now (what the event
        rules use: :mod:`watcher.service.watchlist`); ``fresh`` asks its fee changes again."""
        if series is not None:
            await self.series_multiplier(series)
        await self._event_changes(event, fresh=fresh)
        return self.resolve(event, series)

    def resolve(self, event: str, series: str | None) -> Decimal:
        """:meth:`event_multiplier` from what is known already, without asking Kalshi."""
        base = _ONE if series is None else self._multipliers.get(series, _ONE)
        changes = self._changes.get(event, (0, ()))[1]
        found = effective_multiplier(changes, base, self._now_ms())
        if found != base:
            self._say(
                f"{event} {found}",
                f"{self.purpose} of event {event} use its fee override: multiplier {found}"
                f" (its series': {base})",
            )
        return found

    def apply_update(
        self, event: str, multiplier: Decimal | None, fee_type: str | None = None
    ) -> None:
        """An ``event_fee_update`` frame: ``event``'s override set (or cleared, None) now."""
        asked, changes = self._changes.get(event, (self._now_ms(), ()))
        update = self._checked(event, FeeChange(self._now_ms(), multiplier, fee_type))
        self._changes[event] = (asked, (*changes, update))

    # Private methods

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _event(self, ticker: str) -> tuple[str, str | None] | None:
        """The event and series tickers of a market, or None (logged) when Kalshi names no
        event; a series of None (logged) when the event names none."""
        market = await self.rest.get_market(ticker)
        if not market.event_ticker:
            self._fallback(ticker, "the market names no event_ticker")
            return None
        event = await self.rest.get_event(market.event_ticker)
        if not event.series_ticker:
            self._fallback(ticker, f"event {event.event_ticker} names no series_ticker")
        return market.event_ticker, event.series_ticker or None

    async def _event_changes(self, event: str, *, fresh: bool) -> None:
        """Ask Kalshi for ``event``'s fee changes unless those kept are recent enough."""
        now, kept = self._now_ms(), self._changes.get(event)
        if kept is not None and not fresh and now - kept[0] < self.max_age_ms:
            return
        try:
            found = await self.rest.get_event_fee_changes(event)
        except KalshiError as exc:  # the watch goes on: last known changes, else the series'
            if f"changes {event}" not in self._said:
                self._said.add(f"changes {event}")
                keeps = "the fee changes last known" if kept else "its series' fee multiplier"
                logger.warning(
                    "%s of event %s use %s: GET /events/fee_changes failed: %s",
                    self.purpose,
                    event,
                    keeps,
                    exc,
                )
            return
        changes = (_change(c) for c in found if c.event_ticker in (None, event))
        self._changes[event] = (now, tuple(self._checked(event, c) for c in changes))

    def _checked(self, event: str, change: FeeChange) -> FeeChange:
        """``change``, or a clearing in its place when its multiplier is unusable (logged)."""
        value = change.multiplier
        if value is not None and (not value.is_finite() or value < 0):
            self._say(f"bad {event} {value}", f"event {event}: fee_multiplier_override {value}")
            return FeeChange(change.at_ms, None)
        if value is not None and change.fee_type not in (None, *QUADRATIC_FEE_TYPES):
            self._say(
                f"type {event} {change.fee_type}",
                f"event {event} has fee_type {change.fee_type!r}: {self.purpose} use the"
                f" quadratic formula × {value}",
            )
        return change

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

    def _say(self, key: str, text: str) -> None:
        """Log ``text`` at INFO the first time ``key`` comes up."""
        if key not in self._said:
            self._said.add(key)
            logger.info("%s", text)


def _change(rest: RestEventFeeChange) -> FeeChange:
    """A REST fee change; a null multiplier clears the override (the series' applies)."""
    return FeeChange(rest.scheduled_ms, rest.fee_multiplier_override, rest.fee_type_override)
