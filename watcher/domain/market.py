"""The live view of each watched market: quote, last price, metadata and recent price history.

The app owns one :class:`Markets` registry and feeds it decoded events (``apply_*``); the rule
engine only reads it. Prices are YES prices in integer micro-dollars (45¢ = ``450_000``), None
until known; the engine turns them into the position's side with
:func:`watcher.domain.positions.side_quote`.

A market's history keeps just enough ``(ts_ms, yes_bid, yes_ask, yes_last)`` points for the
longest ``velocity`` window (``history_ms``): the newest points within the window plus the
last point before it, so "the price ``within`` ago" is always answerable once data has flowed
that long.

Markets a ``volume_spike`` rule covers also keep :class:`~watcher.domain.volume.VolumeSeries`
of the volume or open interest the ticks carry (:meth:`Markets.set_volume_plan` says which);
other markets keep none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from watcher.domain.volume import VolumeKey, VolumeSeries

__all__ = [
    "LIFECYCLE_STATUS",
    "MAX_HISTORY",
    "MarketState",
    "Markets",
    "PricePoint",
    "VolumePlan",
]

#: Hard cap on history points per market, whatever the window (a flood of ticks stays bounded).
MAX_HISTORY = 20_000

#: Market status after a ``market_lifecycle_v2`` event (REST's status words).
LIFECYCLE_STATUS = {
    "created": "initialized",
    "activated": "active",
    "deactivated": "inactive",
    "determined": "determined",
    "settled": "finalized",
}

#: Which volume series a market keeps: ticker → the keys of the rules covering it.
VolumePlan = Callable[[str], frozenset[VolumeKey]]


@dataclass(frozen=True, slots=True)
class PricePoint:
    """The YES quote and last price of a market at one moment."""

    ts_ms: int
    yes_bid: int | None
    yes_ask: int | None
    yes_last: int | None


@dataclass(slots=True)
class MarketState:
    """What is known about one market. Mutable: only :class:`Markets` changes it.

    Attributes:
        ticker: the market ticker.
        yes_bid, yes_ask, yes_last: YES best bid, best ask and last trade price, micro-dollars.
        last_tick_ms: time of the newest ticker update applied (None before the first).
        last_trade_ms: time of the newest trade seen.
        watched_since_ms: when the app started watching the market (for ``stale``).
        title, status, close_time_ms, result: metadata from REST or the lifecycle channel.
        settlement_value_micros: the YES payout once determined (1_000_000 if YES won).
        history: recent price points, oldest first (see the module docstring).
        volumes: the volume series by key, for markets a ``volume_spike`` rule covers (else
            None).
        yes_bid_size, yes_ask_size: contracts displayed at the YES bid and ask, micro-contracts
            (the ``ticker`` channel's ``yes_bid_size_fp`` / ``yes_ask_size_fp``); None when
            not given. The YES bid's size is also the depth at the NO ask (= $1 − YES bid).
    """

    ticker: str
    yes_bid: int | None = None
    yes_ask: int | None = None
    yes_last: int | None = None
    last_tick_ms: int | None = None
    last_trade_ms: int | None = None
    watched_since_ms: int | None = None
    title: str | None = None
    status: str | None = None
    close_time_ms: int | None = None
    result: str | None = None
    settlement_value_micros: int | None = None
    history: deque[PricePoint] = field(default_factory=lambda: deque(maxlen=MAX_HISTORY))
    volumes: dict[VolumeKey, VolumeSeries] | None = None
    yes_bid_size: int | None = None
    yes_ask_size: int | None = None

    def price_at(self, ts_ms: int) -> PricePoint | None:
        """The newest point at or before ``ts_ms``; the oldest point if all are newer; None if
        there is no history."""
        found = None
        for point in self.history:
            if point.ts_ms > ts_ms:
                break
            found = point
        if found is None and self.history:
            return self.history[0]
        return found

    def __repr__(self) -> str:
        return (
            f"MarketState({self.ticker!r}, yes_bid={self.yes_bid}, yes_ask={self.yes_ask}, "
            f"yes_last={self.yes_last}, last_tick_ms={self.last_tick_ms}, status={self.status!r})"
        )


class Markets:
    """Every watched market's :class:`MarketState`, by ticker.

    Args:
        history_ms: how much price history to keep per market (the longest ``velocity``
            window; see :attr:`watcher.rules.RulesConfig.history_ms`). 0 keeps none.
    """

    def __init__(self, *, history_ms: int = 0) -> None:
        self.history_ms = history_ms
        self.volume_plan: VolumePlan | None = None
        self._states: dict[str, MarketState] = {}

    # Public methods

    def get(self, ticker: str) -> MarketState | None:
        """The market's state, or None if nothing is known about it."""
        return self._states.get(ticker)

    def __getitem__(self, ticker: str) -> MarketState:
        return self._states[ticker]

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._states

    def __iter__(self) -> Iterator[MarketState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def tickers(self) -> list[str]:
        """Every ticker known, in the order first seen."""
        return list(self._states)

    def watch(self, ticker: str, now_ms: int) -> MarketState:
        """Start watching ``ticker`` (idempotent): ``stale`` counts silence from ``now_ms``."""
        state = self._state(ticker)
        if state.watched_since_ms is None:
            state.watched_since_ms = now_ms
        return state

    def forget(self, ticker: str) -> None:
        """Drop a market no longer watched."""
        self._states.pop(ticker, None)

    def apply_ticker(
        self,
        ticker: str,
        ts_ms: int,
        yes_bid: int | None,
        yes_ask: int | None,
        yes_last: int | None,
        volume: int | None = None,
        open_interest: int | None = None,
        yes_bid_size: int | None = None,
        yes_ask_size: int | None = None,
    ) -> MarketState:
        """Apply a ticker update. None leaves a price as it was.

        An update older than the newest one applied is ignored (ticker frames have no ``seq``).
        ``volume`` and ``open_interest`` (cumulative, micro-units) feed the market's volume
        series, if it keeps any. A size (micro-contracts) belongs to its price: an update that
        gives the price or the size sets the size (None then means not known).
        """
        state = self._state(ticker)
        if state.last_tick_ms is not None and ts_ms < state.last_tick_ms:
            return state
        state.last_tick_ms = ts_ms
        if yes_bid is not None:
            state.yes_bid = yes_bid
        if yes_ask is not None:
            state.yes_ask = yes_ask
        if yes_bid is not None or yes_bid_size is not None:
            state.yes_bid_size = yes_bid_size
        if yes_ask is not None or yes_ask_size is not None:
            state.yes_ask_size = yes_ask_size
        if yes_last is not None:
            state.yes_last = yes_last
        self._record(state, ts_ms)
        if state.volumes is not None:
            _observe(state.volumes, ts_ms, volume, open_interest)
        return state

    def set_volume_plan(self, plan: VolumePlan | None) -> None:
        """Say which volume series each market keeps (None: none). Series whose key is still
        planned are kept; others are dropped, new ones start empty."""
        self.volume_plan = plan
        for state in self._states.values():
            state.volumes = _planned(plan, state.ticker, state.volumes)

    def seed_volume(
        self, ticker: str, ts_ms: int, volume: int | None, open_interest: int | None
    ) -> None:
        """Feed a stored tick to the market's volume series only (oldest first, before the
        live ticks): the baseline survives a restart without touching prices or times."""
        state = self._state(ticker)
        if state.volumes is not None:
            _observe(state.volumes, ts_ms, volume, open_interest)

    def apply_trade(
        self, ticker: str, ts_ms: int, yes_price: int, *, late: bool = False
    ) -> MarketState:
        """Apply a trade: it is the new last price unless it is ``late`` or older than the
        newest update already applied."""
        state = self._state(ticker)
        seen = [t for t in (state.last_tick_ms, state.last_trade_ms) if t is not None]
        if late or (seen and ts_ms < max(seen)):
            return state
        state.last_trade_ms = ts_ms
        state.yes_last = yes_price
        self._record(state, ts_ms)
        return state

    def apply_lifecycle(
        self,
        ticker: str,
        ts_ms: int,
        event_type: str,
        *,
        result: str | None = None,
        close_time_ms: int | None = None,
        settlement_value_micros: int | None = None,
    ) -> MarketState:
        """Apply a ``market_lifecycle_v2`` event (status, result, close time, payout)."""
        state = self._state(ticker)
        status = LIFECYCLE_STATUS.get(event_type)
        if status is not None and not (state.status == "finalized" and status == "determined"):
            state.status = status
        if result:
            state.result = result
        if close_time_ms is not None:
            state.close_time_ms = close_time_ms
        if settlement_value_micros is not None:
            state.settlement_value_micros = settlement_value_micros
        return state

    def apply_metadata(
        self,
        ticker: str,
        *,
        title: str | None = None,
        status: str | None = None,
        close_time_ms: int | None = None,
        result: str | None = None,
    ) -> MarketState:
        """Apply market metadata from REST. None (or an empty result) leaves a field as it was."""
        state = self._state(ticker)
        if title is not None:
            state.title = title
        if status is not None:
            state.status = status
        if close_time_ms is not None:
            state.close_time_ms = close_time_ms
        if result:
            state.result = result
        return state

    def __repr__(self) -> str:
        return f"Markets({len(self._states)} markets, history_ms={self.history_ms})"

    # Private methods

    def _state(self, ticker: str) -> MarketState:
        state = self._states.get(ticker)
        if state is None:
            state = self._states[ticker] = MarketState(ticker)
            if self.volume_plan is not None:
                state.volumes = _planned(self.volume_plan, ticker, None)
        return state

    def _record(self, state: MarketState, ts_ms: int) -> None:
        history = state.history
        if self.history_ms <= 0:
            history.clear()
            return
        point = PricePoint(ts_ms, state.yes_bid, state.yes_ask, state.yes_last)
        if history and history[-1].ts_ms == ts_ms:
            history[-1] = point  # same moment: keep the latest view only
        else:
            history.append(point)
        horizon = ts_ms - self.history_ms
        while len(history) >= 2 and history[1].ts_ms <= horizon:
            history.popleft()


def _planned(
    plan: VolumePlan | None, ticker: str, current: dict[VolumeKey, VolumeSeries] | None
) -> dict[VolumeKey, VolumeSeries] | None:
    """The series ``plan`` gives ``ticker``, reusing those of ``current`` (None when none)."""
    keys = plan(ticker) if plan is not None else frozenset()
    if not keys:
        return None
    old = current or {}
    return {key: old.get(key) or VolumeSeries(key[1], key[2]) for key in keys}


def _observe(
    volumes: dict[VolumeKey, VolumeSeries],
    ts_ms: int,
    volume: int | None,
    open_interest: int | None,
) -> None:
    for (name, _, _), series in volumes.items():
        value = volume if name == "volume" else open_interest
        if value is not None:
            series.observe(ts_ms, value)
