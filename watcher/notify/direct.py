"""Alerts that cannot go through the outbox: sent straight through Apprise, best effort.

Used when the database itself cannot be written (disk full, read-only), so the durable outbox
cannot record anything: the user still has to hear about it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from watcher.notify.apprise_targets import (
    SendStatus,
    build_service,
    normalize_targets,
    send_url,
)

__all__ = ["send_direct"]

logger = logging.getLogger("watcher.alerts")


async def send_direct(
    targets: Mapping[str, Sequence[str] | str],
    names: Sequence[str],
    *,
    title: str,
    body: str,
    severity: str = "warning",
) -> int:
    """Send one message to the named targets without the outbox; never raises.

    Returns:
        How many URLs accepted it. Always logged to the console too.
    """
    logger.warning("ALERT [%s] %s: %s", severity, title, body)
    urls = [url for name in names for url in normalize_targets(targets).get(name, ())]
    delivered = 0
    for url in urls:
        service = await asyncio.to_thread(build_service, url)
        if service is None:
            continue
        kind = severity if severity in ("info", "warning") else "failure"
        outcome = await send_url(service, title=title, body=body, notify_type=kind)
        delivered += outcome.status is SendStatus.DELIVERED
    return delivered
