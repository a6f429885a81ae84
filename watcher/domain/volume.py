"""A market's recent volume (or open interest) additions in time buckets, for ``volume_spike``.

Kalshi's ``ticker`` frames carry the market's *cumulative* volume and open interest. A
:class:`VolumeSeries` turns the rise between consecutive ticks into amounts added per bucket,
in a fixed-size ring: a bucket is a quarter of the rule's ``within`` window (:data:`SLICES`
buckets make one window, so "the last ``within``" slides in quarter-window steps), and the ring
holds the ``baseline`` before the last window plus the window itself. A fall (open interest
going down, a corrected volume) adds nothing. Memory is one 8-byte integer per bucket,
whatever the tick rate: ``4 × (baseline / within + 1)`` integers (1d over 5m: 1,156 × 8 bytes).

Only markets a ``volume_spike`` rule covers keep series
(:meth:`watcher.domain.market.Markets.set_volume_plan`);
other markets pay one ``None`` field. Amounts are integer micro-units, as the feed gives them.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = ["SLICES", "VolumeField", "VolumeKey", "VolumeSeries", "VolumeWindow"]

#: Buckets per ``within`` window.
SLICES = 4

VolumeField: TypeAlias = Literal["volume", "open_interest"]
#: What a series is for: (field, within ms, baseline ms). Rules that agree share one series.
VolumeKey: TypeAlias = tuple[VolumeField, int, int]


@dataclass(frozen=True, slots=True)
class VolumeWindow:
    """The last window against its baseline, as :meth:`VolumeSeries.window` measured them.

    Attributes:
        recent: the amount added in the last window (its :data:`SLICES` newest buckets).
        baseline: the amount added over the baseline buckets before it.
        buckets: how many baseline buckets there are (fewer than the ring holds while the
            market's history is short); the average per window is
            ``baseline × SLICES / buckets``.
    """

    recent: int
    baseline: int
    buckets: int


class VolumeSeries:
    """Amounts added per bucket over a bounded span; fed the cumulative value at each tick."""

    __slots__ = ("_first", "_last", "_ring", "_size", "_total", "_value", "width_ms")

    def __init__(self, within_ms: int, baseline_ms: int) -> None:
        self.width_ms = max(1, within_ms // SLICES)
        self._size = -(-baseline_ms // self.width_ms) + SLICES
        self._ring = array("q", bytes(8 * self._size))
        self._total = 0  # the sum of the ring
        self._first: int | None = None  # the bucket of the first value seen
        self._last = 0  # the newest bucket
        self._value = 0  # the newest cumulative value

    def __repr__(self) -> str:
        return f"<VolumeSeries {self._size} buckets of {self.width_ms} ms, total {self._total}>"

    def observe(self, ts_ms: int, value: int) -> None:
        """Take the cumulative ``value`` at ``ts_ms``; its rise since the last one is added to
        the bucket of ``ts_ms`` (an older ``ts_ms`` counts in the newest bucket)."""
        bucket = ts_ms // self.width_ms
        if self._first is None:
            self._first = self._last = bucket
            self._value = value
            return
        if bucket > self._last:
            self._advance(bucket)
        added = value - self._value
        self._value = value
        if added > 0:
            self._ring[self._last % self._size] += added
            self._total += added

    def window(self) -> VolumeWindow | None:
        """The last window (ending in the newest bucket) and the baseline before it; None
        until a value was seen."""
        first = self._first
        if first is None:
            return None
        ring, size, last = self._ring, self._size, self._last
        recent = 0
        for back in range(SLICES):
            recent += ring[(last - back) % size]
        buckets = min(size - SLICES, last - SLICES - first + 1)
        return VolumeWindow(recent, self._total - recent, max(buckets, 0))

    def _advance(self, bucket: int) -> None:
        """Make ``bucket`` the newest, emptying the buckets it reuses."""
        size, ring = self._size, self._ring
        if bucket - self._last >= size:
            ring[:] = array("q", bytes(8 * size))
            self._total = 0
        else:
            for passed in range(self._last + 1, bucket + 1):
                index = passed % size
                self._total -= ring[index]
                ring[index] = 0
        self._last = bucket
