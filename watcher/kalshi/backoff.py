"""Reconnect delays as a pure generator (websockets ``client.py: backoff`` is the model)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

__all__ = ["backoff"]


def backoff(
    *,
    min_delay: float = 0.5,
    max_delay: float = 60.0,
    factor: float = 2.0,
    jitter: float = 0.5,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield jittered, exponentially growing delays in seconds.

    The n-th delay lies in ``[d·(1 − jitter), d]`` with ``d = min(min_delay·factorⁿ, max_delay)``,
    so the first retry never waits longer than ``min_delay`` and many clients do not retry in
    lock-step. The generator is endless; the caller makes a new one to reset it.

    Args:
        min_delay: the first (un-jittered) delay.
        max_delay: the cap.
        factor: growth per attempt.
        jitter: fraction of each delay that is randomised away (0 disables jitter).
        rand: source of randomness in [0, 1); tests patch it.
    """
    if min_delay <= 0 or max_delay < min_delay or factor < 1 or not 0 <= jitter < 1:
        raise ValueError(
            f"invalid backoff: min_delay={min_delay}, max_delay={max_delay},"
            f" factor={factor}, jitter={jitter}"
        )
    delay = min_delay
    while True:
        yield delay * (1 - jitter * rand())
        delay = min(delay * factor, max_delay)
