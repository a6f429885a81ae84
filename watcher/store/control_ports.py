"""The port of the faces' controls: :class:`ControlStore`, the stored mutes and pause.

What a face silences (:mod:`watcher.domain.controls`) is stored, so a restart keeps it and
every instance on a shared database sees it: ``mutes``, one row per target (its case-folded
text, :func:`~watcher.domain.controls.mute_key`), and ``paused``, one row while alerts are
paused. :class:`watcher.service.controls.Controls` is the one way in; it keeps a copy in memory
for the per-alert check and re-reads it from here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from watcher.domain.controls import ControlState, Mute, Pause

__all__ = ["ControlStore"]


class ControlStore(Protocol):
    """``mutes`` and ``paused`` of one database (SQLite or PostgreSQL).

    Raises:
        StorageError: the database cannot be read or written (from any method).
    """

    async def load(self) -> ControlState:
        """Every stored mute (soonest end first, ended ones too until purged) and the pause."""
        ...

    async def put_mute(self, mute: Mute) -> None:
        """Store ``mute``, replacing the mute of the same key (target regardless of case)."""
        ...

    async def delete_mutes(self, keys: Collection[str] | None = None) -> int:
        """Remove the mutes of ``keys`` (:attr:`Mute.key`; None: every mute); how many went."""
        ...

    async def purge_mutes(self, now_ms: int) -> int:
        """Remove the mutes that ended at or before ``now_ms``; how many went."""
        ...

    async def pause(self, pause: Pause) -> bool:
        """Store ``pause`` unless alerts are paused already (that pause stays); True if new."""
        ...

    async def resume(self) -> bool:
        """Remove the pause; True when there was one."""
        ...

    async def close(self) -> None:
        """Release the database (idempotent)."""
        ...
