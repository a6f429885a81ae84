"""Orders waiting for a Confirm or Cancel press: each expires after :data:`CONFIRM_TTL` seconds
and can be pressed once.

A paper order asked for in the chat (``/buy``, ``/close``, an alert's Close button) is not
placed at once: the bot answers with what it would do and two buttons whose callback data name
a random, single-use id (``ok:<id>``, ``no:<id>``). :meth:`Confirmations.take` hands the order
back once, to the chat that asked, within the time limit; a late, repeated or foreign press gets
nothing (the bot answers the press "expired"). Pure: time is passed in.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["CANCEL", "CONFIRM", "CONFIRM_TTL", "Confirmations", "Pending"]

#: Seconds a Confirm/Cancel pair stays usable.
CONFIRM_TTL = 60.0
#: Callback data prefixes of the two buttons.
CONFIRM, CANCEL = "ok", "no"
#: Pending orders kept at most (the oldest are dropped first).
_MAX_PENDING = 1_000


@dataclass(frozen=True, slots=True)
class Pending:
    """One order waiting for its Confirm press.

    Attributes:
        chat_id: the chat that asked (only it may confirm).
        what: the order as the question showed it (``buy 10 YES KXCPI-... at the ask``).
        act: places the order and returns the reply (the paper desk's own wording).
        created: when it was asked (monotonic seconds).
    """

    chat_id: int
    what: str
    act: Callable[[], Awaitable[str]]
    created: float


class Confirmations:
    """The orders waiting for a press, by single-use id."""

    def __init__(self, *, ttl: float = CONFIRM_TTL) -> None:
        self.ttl = ttl
        self._pending: dict[str, Pending] = {}

    def __repr__(self) -> str:
        return f"<Confirmations pending={len(self._pending)} ttl={self.ttl:g}s>"

    def __len__(self) -> int:
        return len(self._pending)

    # Public methods

    def ask(self, pending: Pending) -> str:
        """Keep ``pending`` and return its id (for the buttons' callback data)."""
        self._drop_expired(pending.created)
        while len(self._pending) >= _MAX_PENDING:
            del self._pending[next(iter(self._pending))]
        token = secrets.token_urlsafe(9)
        self._pending[token] = pending
        return token

    def take(self, token: str, chat_id: int, now: float) -> Pending | None:
        """The order ``token`` names, once, if ``chat_id`` asked for it less than ``ttl``
        seconds before ``now``; else None (expired, already pressed, or another chat's)."""
        pending = self._pending.get(token)
        if pending is None or pending.chat_id != chat_id:
            return None
        del self._pending[token]
        return pending if now - pending.created < self.ttl else None

    # Private methods

    def _drop_expired(self, now: float) -> None:
        for token in [t for t, p in self._pending.items() if now - p.created >= self.ttl]:
            del self._pending[token]
