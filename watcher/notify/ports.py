"""The notification port: what the sender needs to put one message on one target's URLs.

:class:`Notifier` is the whole interface between the outbox sender and a delivery service.
Implementations: :class:`~watcher.notify.apprise_notifier.AppriseNotifier` (the default; Apprise
is imported on first use) and :class:`~watcher.notify.fake.FakeNotifier` (in-memory, scripted
outcomes, for tests). The outcome values are :class:`~watcher.notify.apprise_targets.UrlOutcome`
with a :class:`~watcher.notify.apprise_targets.SendStatus`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from watcher.notify.apprise_targets import SendStatus, UrlOutcome

__all__ = ["Notifier", "SendStatus", "UrlOutcome"]


class Notifier(Protocol):
    """Sends messages to notification URLs; never raises for a delivery problem."""

    async def load(self, url: str) -> bool:
        """Make ``url`` ready to send to (parsed once, then cached); ``False`` if it cannot be.

        A URL that cannot be loaded is a configuration error: the sender never sends to it.
        """
        ...

    async def send(
        self, urls: Sequence[str], *, title: str, body: str, notify_type: str
    ) -> list[UrlOutcome]:
        """Send one message to each of ``urls`` (loaded before), concurrently.

        Returns:
            One outcome per URL, in the order of ``urls``: ``DELIVERED``, ``FAILED`` (worth
            retrying) or ``CONFIG_ERROR`` (never retried). Outcome URLs are masked.
        """
        ...

    def retain(self, urls: Collection[str]) -> None:
        """Forget every loaded URL not in ``urls`` (the configuration was reloaded)."""
        ...
