"""Seed ``volume_spike``'s history from the stored ticks at start, so a restart keeps the baseline.

The rules (:mod:`watcher.rules.volume`) build each covered market's volume series from the ticks
they see; a fresh process would start with none and stay silent for three windows, judging the
market against a few minutes instead of its ``baseline``. :func:`seed_volume_history` feeds the
stored ticks of the covered markets over the longest ``baseline + within`` into the series
(:meth:`watcher.domain.market.Markets.seed_volume`: prices and times are left alone), before
the feed starts. A replay needs none of this: it builds the series from the recorded ticks.

Markets watched later (an event's new market) start empty and speak once they have history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from watcher.errors import StorageError
from watcher.rules.session import Session
from watcher.store.ports import Backend, ReadModel
from watcher.store.records import TickerRow

__all__ = ["seed_from_backend", "seed_volume_history"]

logger = logging.getLogger("watcher.volume")


async def seed_volume_history(
    read_model: ReadModel, session: Session, tickers: Iterable[str], now_ms: int
) -> int:
    """Feed the stored ticks of the ``tickers`` a ``volume_spike`` rule covers into their
    volume series, oldest first; return how many ticks were fed.

    Raises:
        StorageError: the store cannot be read.
    """
    markets = session.markets
    plan = markets.volume_plan
    if plan is None:
        return 0
    spans = {t: max(k[1] + k[2] for k in keys) for t in tickers if (keys := plan(t))}
    if not spans:
        return 0
    fed = 0
    since = now_ms - max(spans.values())
    events = read_model.replay_events(since_ms=since, until_ms=now_ms + 1, markets=list(spans))
    async for ts, _, row in events:
        if isinstance(row, TickerRow) and ts >= now_ms - spans[row.market_ticker]:
            markets.seed_volume(row.market_ticker, ts, row.volume_e6, row.open_interest_e6)
            fed += 1
    return fed


async def seed_from_backend(
    backend: Backend, session: Session, tickers: Iterable[str], now_ms: int
) -> None:
    """:func:`seed_volume_history` from ``backend``'s read model (opened only when a
    ``volume_spike`` rule exists); a store that cannot be read is logged, not fatal."""
    if session.markets.volume_plan is None:
        return
    read_model = await backend.read_model()
    try:
        fed = await seed_volume_history(read_model, session, tickers, now_ms)
        logger.info("volume_spike: seeded the baseline from %d stored ticks", fed)
    except StorageError as exc:
        logger.warning("volume_spike: could not seed the baseline from the store: %s", exc)
    finally:
        await read_model.close()
