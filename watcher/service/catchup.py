"""Trades made while no instance was streaming, recovered over REST when one becomes active.

The WebSocket client backfills after a gap or a *re*connect, from the trades it saw itself; a
freshly started process (a standby taking over) has seen none. :func:`catch_up_trades` starts
from the store instead: for each watched market, the newest stored trade; it asks
``GET /markets/trades`` for what came since and hands on each trade not already stored as a
:class:`~watcher.kalshi.dispatch.LateTrade`, the same event the client's backfill makes (stored
with ``late = 1``, seen by the rules as late). A trade the live feed also delivers meanwhile is
stored once (the trades table is unique by trade id and time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from watcher.kalshi.dispatch import LateTrade
from watcher.kalshi.errors import KalshiError
from watcher.kalshi.rest import trade_from_rest
from watcher.store.ports import Backend, ReadModel

__all__ = ["catch_up_after_connect", "catch_up_trades"]

logger = logging.getLogger("watcher.feed")

#: Stored trades read per market to skip the ones REST lists again.
_KNOWN = 5_000


async def catch_up_trades(
    read_model: ReadModel,
    rest: Any,
    tickers: Iterable[str],
    emit: Callable[[LateTrade], Awaitable[None] | None],
) -> int:
    """Hand on, oldest first, every trade since each market's newest stored one; the count.

    Markets without a stored trade are skipped (there is no gap to speak of). A REST failure
    for one market is logged and the others still go.
    """
    recovered = 0
    for ticker in sorted(set(tickers)):
        newest = await read_model.trade_history(ticker, limit=1)
        if not newest:
            continue
        since_s = newest[0].ts_ms // 1000
        stored = await read_model.trade_history(ticker, since_ms=since_s * 1000, limit=_KNOWN)
        known = {row.trade_id for row in stored}
        try:
            trades = await rest.get_trades(ticker, min_ts=since_s)
        except KalshiError as exc:
            logger.warning("trade catch-up for %s failed: %s", ticker, exc)
            continue
        for trade in sorted(trades, key=lambda t: t.ts_ms or 0):
            if trade.trade_id in known:
                continue
            pending = emit(LateTrade(trade_from_rest(trade)))
            if pending is not None:
                await pending
            recovered += 1
    if recovered:
        logger.info("caught up %d trade(s) made while no instance was streaming", recovered)
    return recovered


async def catch_up_after_connect(
    client: Any,
    backend: Backend,
    rest: Any,
    tickers: Iterable[str],
    emit: Callable[[LateTrade], Awaitable[None] | None],
) -> None:
    """Once ``client`` is connected (and so subscribed: nothing falls between REST and the
    feed), :func:`catch_up_trades` through a read model of its own; failures are logged."""
    while not client.is_connected:  # noqa: ASYNC110 - the client has no connected event
        await asyncio.sleep(0.05)
    reader = await backend.read_model()
    try:
        await catch_up_trades(reader, rest, tickers, emit)
    except Exception as exc:
        logger.warning("trade catch-up failed: %s", exc)
    finally:
        await reader.close()
