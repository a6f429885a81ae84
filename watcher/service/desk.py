"""The paper desk as the running service uses it: the rules' ``action: close`` goes through it.

:func:`open_desk` opens the backend's ``paper_fills`` (the exactly-once guard of a rule's close)
and builds a :class:`~watcher.service.paper.PaperDesk` on the positions file, Kalshi's REST API
and the rules' fee rate; the fills are closed when the service stops. Only the active instance
runs a service, so only it closes positions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from watcher.rules import RulesConfig
from watcher.service.paper import PaperDesk
from watcher.service.paper_fees import PaperSource, SeriesFees
from watcher.store.ports import Backend

__all__ = ["open_desk"]


@asynccontextmanager
async def open_desk(
    backend: Backend,
    rest: PaperSource,
    trades_path: str | Path,
    *,
    rules: RulesConfig,
    clock: Callable[[], float] = time.time,
    fees: SeriesFees | None = None,
) -> AsyncIterator[PaperDesk]:
    """The paper desk on ``backend``'s fills, at ``rules``' taker fee rate (kept current by
    :meth:`watcher.service.pipeline.Pipeline.set_rules`), with the series and event fee
    multipliers of ``fees`` (the watchlist's, so a live ``event_fee_update`` reaches orders at
    once), else its own."""
    fills = await backend.paper_fills()
    try:
        yield PaperDesk(
            trades_path=trades_path,
            rest=rest,
            fills=fills,
            fee_rate=rules.fees.taker_rate,
            clock=clock,
            series_fees=fees,
        )
    finally:
        await fills.close()
