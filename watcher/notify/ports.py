"""The notification ports: what the sender needs to put one message on one target.

:class:`Notifier` is the whole interface between the outbox sender and a URL-based delivery
service. :class:`TargetNotifier` is for a target that has no URL and delivers the alerts
themselves (the Telegram bot's ``bot`` target, which adds buttons per alert): the sender hands
it the due deliveries of its target once it is attached
(:meth:`~watcher.notify.sender.Sender.attach`).

Implementations: :class:`~watcher.notify.apprise_notifier.AppriseNotifier` (the default; Apprise
is imported on first use) and :class:`~watcher.notify.fake.FakeNotifier` (in-memory, scripted
outcomes, for tests). The outcome values are :class:`~watcher.notify.apprise_targets.UrlOutcome`
with a :class:`~watcher.notify.apprise_targets.SendStatus`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from watcher.notify.apprise_targets import SendStatus, UrlOutcome

if TYPE_CHECKING:
    from watcher.store.records import PendingDelivery

__all__ = ["Notifier", "SendStatus", "TargetNotifier", "UrlOutcome"]


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


class TargetNotifier(Protocol):
    """Delivers the alerts of one named target itself (a chat bot); never raises for a
    delivery problem."""

    async def deliver(self, items: Sequence[PendingDelivery]) -> tuple[SendStatus, str]:
        """Send ``items`` (due deliveries of this target) as one message.

        Returns:
            ``DELIVERED``; ``FAILED`` (retried with backoff) or ``CONFIG_ERROR`` (never
            retried), with an error text that carries no secret.
        """
        ...
