"""The open WebSocket connections of a simulated exchange, and how each one is served.

:class:`Connections` accepts a connection (counting it, or closing it at once by fault
injection), runs its :class:`~watcher.kalshi.sim.session.SimSession` until it closes, and fans
market updates out to every open session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from watcher.kalshi import messages as m
from watcher.kalshi.sim.http import header
from watcher.kalshi.sim.market import MarketUpdate
from watcher.kalshi.sim.session import SimSession
from watcher.kalshi.sim.state import ExchangeState
from watcher.kalshi.sim.wire import DATA_CHANNELS

__all__ = ["FLUSH_TIMEOUT", "Connections"]

logger = logging.getLogger("watcher.sim")

#: Seconds :meth:`Connections.flush` waits for the outboxes to be written.
FLUSH_TIMEOUT = 2.0


class Connections:
    """The open connections of one simulated exchange.

    Args:
        state: what the connections share (markets, sids, scripted gaps, counters).
    """

    def __init__(self, state: ExchangeState) -> None:
        self.state = state
        self.sessions: list[SimSession] = []
        self.accept_then_close = 0  # fault injection: close this many accepted handshakes

    def __repr__(self) -> str:
        return f"<Connections open={len(self.sessions)} closing={self.accept_then_close}>"

    # Public methods

    async def serve(self, ws: ServerConnection, *, heartbeat_interval: float) -> None:
        """Serve one accepted connection until it closes."""
        commands: list[m.Command] = []
        stats = self.state.stats
        stats.connections_accepted += 1
        stats.commands.append(commands)
        if ws.request is not None and (
            stamp := header(ws.request.headers, "KALSHI-ACCESS-TIMESTAMP")
        ):
            stats.handshake_timestamps.append(stamp)
        self.state.notify()
        if self.accept_then_close > 0:
            self.accept_then_close -= 1
            logger.info("closing accepted connection by fault injection")
            await ws.close(1001, "going away")
            return
        session = SimSession(self.state, ws, commands, heartbeat_interval=heartbeat_interval)
        self.sessions.append(session)
        sender = asyncio.create_task(session.run_sender(), name="watcher.sim sender")
        try:
            async for message in ws:
                session.receive(message)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.remove(session)
            session.closed()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self.state.notify()

    def deliver(self, updates: Sequence[MarketUpdate]) -> None:
        """Queue the frames these updates mean on every open connection."""
        for session in self.sessions:
            session.deliver(updates)

    async def flush(self) -> None:
        """Wait (at most :data:`FLUSH_TIMEOUT`) until every outbox is written."""
        waits = [session.drained() for session in self.sessions]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                await asyncio.gather(*waits)

    def wanted(self) -> set[str]:
        """The tickers some data subscription (ticker, trade, order book) wants."""
        wanted: set[str] = set()
        for session in self.sessions:
            for sub in session.subs.values():
                if sub.channel in DATA_CHANNELS:
                    wanted |= set(self.state.markets) if sub.tickers is None else sub.tickers
        return wanted
