"""The fields of ``volume_spike`` (:class:`watcher.rules.kinds.VolumeSpikeRule`) and their
limits: ``factor`` a number more than 1, ``within`` at least 4s, ``baseline`` from
:data:`MIN_WINDOWS` to :data:`MAX_WINDOWS` windows (which bounds the memory per market)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeAlias

from pydantic import PlainValidator

from watcher.rules.fields import describe, parse_duration

__all__ = ["MAX_WINDOWS", "MIN_WINDOWS", "Factor", "SpikeWindow", "check_baseline"]

#: Windows of history a market needs in its baseline before a ``volume_spike`` rule speaks.
MIN_WINDOWS = 3
#: The most windows a baseline may hold.
MAX_WINDOWS = 2016
_LEAST_WITHIN = timedelta(seconds=4)


def _factor(value: Any) -> Decimal:
    factor = None
    if isinstance(value, float):
        value = repr(value)  # Python callers only; the loader never makes floats
    if isinstance(value, int | Decimal | str) and not isinstance(value, bool):
        try:
            factor = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            factor = None
    if factor is None or not factor.is_finite() or not 1 < factor <= 1000:
        raise ValueError(
            f"expected a factor more than 1 and at most 1000 (such as 3 or 2.5), but got"
            f" {describe(value)}"
        )
    return factor


def _within(value: Any) -> timedelta:
    within = parse_duration(value)
    if within < _LEAST_WITHIN:
        raise ValueError(f"expected a window of at least 4s, but got {describe(value)}")
    return within


def check_baseline(within: timedelta, baseline: timedelta) -> None:
    """Refuse a baseline of fewer than :data:`MIN_WINDOWS` or more than :data:`MAX_WINDOWS`
    windows of ``within``.

    Raises:
        ValueError: naming the limit.
    """
    windows = baseline / within
    if windows < MIN_WINDOWS:
        raise ValueError(f"baseline must be at least {MIN_WINDOWS} × within")
    if windows > MAX_WINDOWS:
        raise ValueError(f"baseline may hold at most {MAX_WINDOWS} windows of within")


Factor: TypeAlias = Annotated[Decimal, PlainValidator(_factor)]
SpikeWindow: TypeAlias = Annotated[timedelta, PlainValidator(_within)]
