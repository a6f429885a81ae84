"""What the bot's handlers share while this instance is active: the running service, a read
model on its database, the pending confirmations and the alerts' button targets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from watcher.faces.host import FaceHost, ServiceView
from watcher.faces.telegram.confirm import Confirmations
from watcher.faces.telegram.guard import ChatGuard
from watcher.faces.telegram.notifier import AlertRefs
from watcher.store.ports import ReadModel

__all__ = ["STANDING_BY", "BotSession"]

#: The answer when the service stopped while a command was on its way.
STANDING_BY = "this watcher is starting, stopping or standing by; ask again in a moment"


@dataclass
class BotSession:
    """The bot's state; :attr:`service` and :attr:`read_model` follow the active service.

    Attributes:
        host: where the running service is found.
        guard: the allowed chats and the rate limit.
        confirmations: orders waiting for Confirm.
        refs: the targets of the alerts' buttons.
        clock: monotonic seconds (the rate limit and the confirmations' time limit).
        read_model: a read model on the running service's database (None while standing by).
    """

    host: FaceHost
    guard: ChatGuard = field(default_factory=ChatGuard)
    confirmations: Confirmations = field(default_factory=Confirmations)
    refs: AlertRefs = field(default_factory=AlertRefs)
    clock: Callable[[], float] = time.monotonic
    read_model: ReadModel | None = None

    def __repr__(self) -> str:
        state = "active" if self.host.service is not None else "standing by"
        return f"<BotSession {state} {self.guard!r} {self.confirmations!r}>"

    # Public methods

    def chats(self) -> tuple[int, ...]:
        """The chats obeyed now (a reloaded rules.yaml may change them)."""
        telegram = self.host.current_rules.control.telegram
        return telegram.chats if telegram is not None else ()

    @property
    def tz(self) -> ZoneInfo:
        """The rules' time zone: replies show times in it, as the command line does."""
        return self.host.current_rules.tz

    def active(self) -> tuple[ServiceView, ReadModel] | None:
        """The running service and the read model on its database; None while this instance
        starts, stops or stands by (answer :data:`STANDING_BY`)."""
        service = self.host.service
        if service is None or self.read_model is None:
            return None
        return service, self.read_model

    def now_ms(self) -> int:
        """Unix time in ms (for times shown to people)."""
        return int(time.time() * 1000)
