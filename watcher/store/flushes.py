"""Callers of :meth:`StoreWriter.flush <watcher.store.writer.StoreWriter.flush>` waiting for
the writer's count of finished items to reach what was queued before they called.

Items leave the writer's queue in order, so "everything queued before my call is written" is
"the count of committed or rejected items has reached the count queued at my call".
"""

from __future__ import annotations

import asyncio

from watcher.errors import StorageError

__all__ = ["FlushWaiters"]


class FlushWaiters:
    """Futures, each resolved once the done count reaches its target; false when empty."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def __repr__(self) -> str:
        return f"<FlushWaiters waiting={len(self._waiting)}>"

    def wait_for(self, target: int) -> asyncio.Future[None]:
        """A future resolved once :meth:`wake` sees ``done >= target``."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((target, waiter))
        return waiter

    def wake(self, done: int) -> None:
        """Resolve every waiter whose target ``done`` has reached (dropping cancelled ones)."""
        still_waiting = []
        for target, waiter in self._waiting:
            if waiter.done():
                continue
            if target <= done:
                waiter.set_result(None)
            else:
                still_waiting.append((target, waiter))
        self._waiting = still_waiting

    def fail(self, message: str) -> None:
        """Fail every waiter with its own :class:`StorageError` (the writer stopped)."""
        for _, waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(StorageError(message))
        self._waiting = []
