"""When the database cannot be written: tell the user directly, and never hang a shutdown.

The alert store lives in the same database as the ticks, so a failing disk cannot go through
the outbox: :class:`StoreAlarm` sends straight to the rules' default targets, at most once per
:data:`STORE_ALERT_EVERY` seconds. :func:`close_store` gives the sink a grace period at shutdown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from watcher.errors import StorageError
from watcher.notify.direct import send_direct
from watcher.rules import RulesConfig
from watcher.store.ports import TickSink

__all__ = ["STORE_ALERT_EVERY", "STORE_CLOSE_GRACE", "StoreAlarm", "close_store"]

#: At most one "cannot write the database" alert per this many seconds.
STORE_ALERT_EVERY = 900.0
#: How long a shutdown waits for the store to write what it holds.
STORE_CLOSE_GRACE = 2.0


class StoreAlarm:
    """The tick sink's ``on_error``: a critical alert sent directly, bypassing the outbox.

    Args:
        rules: the rules in force (their notify targets), read when an alert goes out.
        location: the database, named in the alert.
        monotonic: monotonic seconds (the rate limit).
    """

    def __init__(
        self,
        *,
        rules: Callable[[], RulesConfig],
        location: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.location = location
        self.monotonic = monotonic
        self._alerted_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<StoreAlarm {self.location} sending={len(self._tasks)}>"

    def __call__(self, exc: Exception) -> None:
        """The writer could not commit: tell the user (rate limited)."""
        now = self.monotonic()
        if self._alerted_at is not None and now - self._alerted_at < STORE_ALERT_EVERY:
            return
        self._alerted_at = now
        rules = self.rules()
        body = (
            f"{exc}. Ticks are kept in memory and retried; free disk space or fix the"
            f" permissions of {self.location}."
        )
        send = send_direct(
            rules.notify,
            rules.defaults.notify,
            severity="critical",
            title="watcher cannot write its database",
            body=body,
        )
        task = asyncio.ensure_future(send)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        """Stop the alerts still being sent (shutdown)."""
        for task in list(self._tasks):
            task.cancel()


async def close_store(store: TickSink, *, location: str, grace: float = STORE_CLOSE_GRACE) -> None:
    """Flush and close ``store``, but never hang a shutdown on a disk that stays full.

    Raises:
        StorageError: the store still held rows after ``grace`` seconds.
    """
    try:
        async with asyncio.timeout(grace):
            await store.close()
    except TimeoutError:
        left = store.stats.queue_depth
        raise StorageError(
            f"cannot write the last {left} rows to the database {location}"
            f" (gave up after {grace:.0f} s at shutdown)"
        ) from None
