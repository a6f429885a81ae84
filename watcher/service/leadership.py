"""Active or standby: which of several instances on one database streams, decides and sends.

A :class:`LeaderLock` says who may be active. On SQLite there is one instance per file and
:class:`AlwaysActive` says yes at once, so nothing changes there. On PostgreSQL the lock is
a session-level advisory lock on a dedicated connection
(:class:`watcher.store.pg.leader.AdvisoryLeader`): whoever holds it is active; the others stand
by, connect to no exchange, poll the lock every ``poll_interval`` and take over when it comes
free (the holder's session ended: SIGKILL, lost network, or a clean hand-over at SIGTERM).

:class:`Leadership` is the state machine over a lock, without the service in it:
:meth:`Leadership.wait_active` stands by until this instance is active (or stop);
:meth:`Leadership.watch` runs while active and sets :attr:`Leadership.lost` when the lock's
session stops answering, so the service stops acting before another instance can take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Protocol

from watcher.errors import StorageError

__all__ = ["AlwaysActive", "LeaderLock", "Leadership", "Role", "instance_name", "open_leadership"]

logger = logging.getLogger("watcher.leadership")

#: ``service_state`` keys a standby refreshes for ``watcher status``.
STANDBY_KEY, STANDBY_HEARTBEAT_KEY = "standby.instance", "standby.heartbeat_ms"


class Role(StrEnum):
    """What this instance does now."""

    ACTIVE = "active"
    STANDBY = "standby"


def instance_name() -> str:
    """This process as other instances name it: ``"<host> pid <pid>"``."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class LeaderLock(Protocol):
    """Who may be active; ``shared`` is False for a database only one instance uses."""

    shared: bool
    me: str

    async def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this instance holds it now."""
        ...

    async def holder(self) -> str | None:
        """Who holds the lock, or None."""
        ...

    async def check(self) -> bool:
        """True while this instance still holds the lock."""
        ...

    async def note(self, key: str, value: str, *, now_ms: int) -> None:
        """Record a ``service_state`` value (a standby has no tick sink)."""
        ...

    async def release(self) -> None:
        """Give the lock up now."""
        ...

    async def close(self) -> None:
        """Release the lock and its connection."""
        ...


class AlwaysActive:
    """The lock of a database only this instance uses (SQLite): always held."""

    shared = False

    def __init__(self, me: str | None = None) -> None:
        self.me = me or instance_name()

    def __repr__(self) -> str:
        return f"<AlwaysActive {self.me!r}>"

    async def try_acquire(self) -> bool:
        return True

    async def holder(self) -> str | None:
        return self.me

    async def check(self) -> bool:
        return True

    async def note(self, key: str, value: str, *, now_ms: int) -> None:
        return None

    async def release(self) -> None:
        return None

    async def close(self) -> None:
        return None


class Leadership:
    """Active/standby over a :class:`LeaderLock` (see the module); an async context manager
    that closes the lock (a clean hand-over) on exit.

    Args:
        lock: who may be active.
        poll_interval: seconds between two attempts of a standby to take the lock.
        check_interval: seconds between two checks of an active's lock session.
        note_interval: seconds between two standby heartbeats in ``service_state``.
        monotonic: the clock of intervals (tests patch it).
    """

    def __init__(
        self,
        lock: LeaderLock,
        *,
        poll_interval: float = 1.0,
        check_interval: float = 1.0,
        note_interval: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = lock
        self.poll_interval = poll_interval
        self.check_interval = check_interval
        self.note_interval = note_interval
        self._monotonic = monotonic
        self.role = Role.STANDBY
        self.active: str | None = None  # who is active, as a standby last saw it
        self.problem: str | None = None  # why a standby cannot read the lock
        self.lost = asyncio.Event()
        self._seen_at: float | None = None  # when the standby last saw ``active`` holding
        self._noted_at: float | None = None

    def __repr__(self) -> str:
        return f"<Leadership {self.role} me={self.lock.me!r} active={self.active!r}>"

    async def __aenter__(self) -> Leadership:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.role = Role.STANDBY
        await self.lock.close()

    # Public methods

    @property
    def shared(self) -> bool:
        """True when other instances may share the database (roles matter)."""
        return self.lock.shared

    def health(self) -> tuple[bool, str]:
        """``(ok, text)`` for ``/healthz`` while standing by (or starting to be active)."""
        if self.role is Role.ACTIVE:
            return True, "active: starting"
        if self.problem is not None:
            return False, f"standby: {self.problem}"
        if self.active is None:
            return True, "standby: no instance is active"
        return True, f"standby: {self.active} is active"

    async def wait_active(self, stop: asyncio.Event) -> bool:
        """Stand by until this instance holds the lock (True) or ``stop`` is set (False).

        After losing the lock, wait two polls first: another standby gets it if it can."""
        if self.lost.is_set():
            self.lost.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * self.poll_interval):
                    await stop.wait()
        while not stop.is_set():
            try:
                if await self.lock.try_acquire():
                    self._became_active()
                    return True
                await self._stand_by()
            except StorageError as exc:
                if str(exc) != self.problem:
                    logger.error("standby: cannot use the database, retrying: %s", exc)
                self.problem = str(exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await stop.wait()
        return False

    async def watch(self) -> None:
        """While active: check the lock's session; on losing it set :attr:`lost` and return."""
        if not self.shared:
            return
        while self.role is Role.ACTIVE:
            await asyncio.sleep(self.check_interval)
            if self.role is Role.ACTIVE and not await self.lock.check():
                self.role = Role.STANDBY
                self.lost.set()
                logger.error(
                    "active: lost the lock's database session; stopping the feed and the"
                    " sender and standing by"
                )

    async def step_down(self) -> None:
        """Release the lock now (SIGTERM: another instance may take over at once)."""
        self.role = Role.STANDBY
        await self.lock.release()
        if self.shared:
            logger.info("active: released the lock to another instance")

    # Private methods

    def _became_active(self) -> None:
        self.role, self.problem = Role.ACTIVE, None
        if not self.shared:
            return
        me = self.lock.me
        if self.active is not None and self._seen_at is not None:
            gap = self._monotonic() - self._seen_at
            logger.info("active: took over from %s after %.1f s (%s)", self.active, gap, me)
        else:
            logger.info("active: %s holds the lock, no other instance was active", me)
        self.active, self._seen_at = None, None

    async def _stand_by(self) -> None:
        holder = await self.lock.holder()
        if holder is not None:
            if holder != self.active:
                logger.info("standby: %s is active", holder)
            self.active, self._seen_at = holder, self._monotonic()
        self.problem = None
        now = self._monotonic()
        if self._noted_at is None or now - self._noted_at >= self.note_interval:
            now_ms = int(time.time() * 1000)
            await self.lock.note(STANDBY_KEY, self.lock.me, now_ms=now_ms)
            await self.lock.note(STANDBY_HEARTBEAT_KEY, str(now_ms), now_ms=now_ms)
            self._noted_at = now


def open_leadership(location: str | os.PathLike[str], *, poll_interval: float = 1.0) -> Leadership:
    """The leadership of ``--db``: an advisory lock on PostgreSQL, always active otherwise."""
    from watcher.store.pg.dsn import is_postgres

    if not is_postgres(location):
        return Leadership(AlwaysActive(), poll_interval=poll_interval)
    from watcher.store.pg.leader import AdvisoryLeader

    lock = AdvisoryLeader(os.fspath(location), me=instance_name())
    return Leadership(lock, poll_interval=poll_interval)
