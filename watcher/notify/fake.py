"""An in-memory :class:`~watcher.notify.ports.Notifier` for tests: records, scripted outcomes.

Example::

    notifier = FakeNotifier({"json://a": [SendStatus.FAILED, SendStatus.DELIVERED]})
    # the first send to json://a fails, every later one is delivered
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from watcher.notify.apprise_targets import SendStatus, UrlOutcome
from watcher.notify.redact import MASK

__all__ = ["FakeNotifier", "SentMessage"]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message a :class:`FakeNotifier` was asked to send to one URL."""

    url: str
    title: str
    body: str
    notify_type: str
    status: SendStatus


class FakeNotifier:
    """Answer sends from a script, per URL, and record every message.

    Args:
        outcomes: URL → statuses answered to its successive sends; the last one repeats
            once the script runs out. URLs not listed are always delivered.
        unloadable: URLs that :meth:`load` refuses (configuration errors).
    """

    def __init__(
        self,
        outcomes: Mapping[str, Sequence[SendStatus]] | None = None,
        *,
        unloadable: Iterable[str] = (),
    ) -> None:
        self._script = {url: list(statuses) for url, statuses in (outcomes or {}).items()}
        self._unloadable = set(unloadable)
        self.loaded: list[str] = []
        self.sent: list[SentMessage] = []

    def __repr__(self) -> str:
        return f"<FakeNotifier loaded={len(self.loaded)} sent={len(self.sent)}>"

    # Public methods

    async def load(self, url: str) -> bool:
        """Record the URL; ``False`` for the URLs given as ``unloadable``."""
        if url not in self.loaded:
            self.loaded.append(url)
        return url not in self._unloadable

    async def send(
        self, urls: Sequence[str], *, title: str, body: str, notify_type: str
    ) -> list[UrlOutcome]:
        """Answer each URL from its script and record the message."""
        outcomes = []
        for url in urls:
            status = self._next_status(url)
            self.sent.append(SentMessage(url, title, body, notify_type, status))
            detail = "" if status is SendStatus.DELIVERED else f"scripted {status.value}"
            outcomes.append(UrlOutcome(_masked(url), "fake", status, detail))
        return outcomes

    def retain(self, urls: Collection[str]) -> None:
        """Forget loaded URLs not in ``urls``."""
        self.loaded = [url for url in self.loaded if url in urls]

    def messages_to(self, url: str) -> list[SentMessage]:
        """The messages sent to one URL, in order."""
        return [message for message in self.sent if message.url == url]

    # Private methods

    def _next_status(self, url: str) -> SendStatus:
        script = self._script.get(url)
        if not script:
            return SendStatus.DELIVERED
        return script.pop(0) if len(script) > 1 else script[0]


def _masked(url: str) -> str:
    """``scheme://***``: the fake never parses URLs (that would import Apprise)."""
    return f"{url.split('://', 1)[0]}://{MASK}" if "://" in url else MASK
