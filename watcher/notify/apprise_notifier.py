"""The :class:`~watcher.notify.ports.Notifier` that sends through Apprise.

Apprise is imported when the first URL is loaded (:func:`~watcher.notify.apprise_targets.
build_service`), never with this module, so a console-only service does not pay for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from typing import Any

from watcher.notify.apprise_targets import (
    SendStatus,
    UrlOutcome,
    build_service,
    mask_url,
    send_url,
)
from watcher.notify.redact import MASK

__all__ = ["AppriseNotifier"]

logger = logging.getLogger("watcher.notify")


class AppriseNotifier:
    """Send through one cached ``Apprise`` object per URL.

    Args:
        timeout: the longest one send may take before it counts as TIMEOUT.
    """

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._services: dict[str, Any | None] = {}  # url → Apprise object, None if unloadable

    def __repr__(self) -> str:
        return f"<AppriseNotifier timeout={self._timeout:g}s urls={len(self._services)}>"

    # Public methods

    async def load(self, url: str) -> bool:
        """Parse ``url`` into an ``Apprise`` object once (in a thread); ``False`` if it cannot."""
        if url not in self._services:
            service = await asyncio.to_thread(build_service, url, timeout=self._timeout)
            if service is not None:
                logger.debug("loaded notify url %s", mask_url(url))
            self._services[url] = service
        return self._services[url] is not None

    async def send(
        self, urls: Sequence[str], *, title: str, body: str, notify_type: str
    ) -> list[UrlOutcome]:
        """Send one message to each URL concurrently; one outcome per URL, in order."""
        return list(
            await asyncio.gather(
                *(
                    self._send_one(url, title=title, body=body, notify_type=notify_type)
                    for url in urls
                )
            )
        )

    def retain(self, urls: Collection[str]) -> None:
        """Forget every loaded URL not in ``urls``."""
        self._services = {url: one for url, one in self._services.items() if url in urls}

    # Private methods

    async def _send_one(self, url: str, *, title: str, body: str, notify_type: str) -> UrlOutcome:
        service = self._services.get(url)
        if service is None:
            return UrlOutcome(MASK, "", SendStatus.CONFIG_ERROR, "url was not loaded")
        return await send_url(service, title=title, body=body, notify_type=notify_type)
