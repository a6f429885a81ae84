"""Who the bot listens to, and how often: the allowed chats and a per-chat rate limit.

Pure: time is passed in. A chat not in ``control.telegram.chats`` gets no answer and changes
nothing; it is logged once per chat (its id only: the token never reaches a log line). An
allowed chat may send :data:`RATE_LIMIT` commands and button presses per :data:`RATE_WINDOW`
seconds; the first one over the limit is answered "slow down", the rest are dropped until the
window has room again.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Collection

__all__ = ["RATE_LIMIT", "RATE_WINDOW", "ChatGuard", "Verdict"]

logger = logging.getLogger("watcher.telegram")

#: Commands and presses a chat may send per :data:`RATE_WINDOW` seconds.
RATE_LIMIT = 20
RATE_WINDOW = 60.0
#: Strangers remembered (logged once each); beyond this the memory starts over.
_MAX_STRANGERS = 10_000


class Verdict(enum.Enum):
    """What to do with one update."""

    OBEY = "obey"
    SLOW_DOWN = "slow down"  # answer "slow down" once, do nothing else
    DROP = "ignore"  # no answer at all (a stranger, or a chat still over the limit)


class ChatGuard:
    """Decides per update: obey, ask to slow down, or drop.

    Args:
        limit: commands per ``window`` seconds per chat.
        window: the length of the sliding window, in seconds.
    """

    def __init__(self, *, limit: int = RATE_LIMIT, window: float = RATE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[int, deque[float]] = {}
        self._warned: set[int] = set()
        self._strangers: set[int | None] = set()

    def __repr__(self) -> str:
        return f"<ChatGuard {self.limit}/{self.window:g}s strangers={len(self._strangers)}>"

    # Public methods

    def check(self, chat_id: int | None, allowed: Collection[int], now: float) -> Verdict:
        """The verdict on an update from ``chat_id`` at ``now`` (monotonic seconds)."""
        if chat_id is None or chat_id not in allowed:
            self._stranger(chat_id)
            return Verdict.DROP
        times = self._seen.setdefault(chat_id, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) < self.limit:
            times.append(now)
            self._warned.discard(chat_id)
            return Verdict.OBEY
        if chat_id in self._warned:
            return Verdict.DROP
        self._warned.add(chat_id)
        logger.warning(
            "telegram chat %s sent over %d commands in %gs, slowed",
            chat_id,
            self.limit,
            self.window,
        )
        return Verdict.SLOW_DOWN

    # Private methods

    def _stranger(self, chat_id: int | None) -> None:
        if chat_id in self._strangers:
            return
        if len(self._strangers) >= _MAX_STRANGERS:
            self._strangers.clear()
        self._strangers.add(chat_id)
        logger.warning(
            "telegram: ignoring chat %s, which is not in control.telegram.chats (logged once)",
            chat_id,
        )
