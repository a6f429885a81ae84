"""Alert delivery: the durable outbox, the Apprise sender and target validation.

The app records alerts with :meth:`Outbox.record` (one transaction with the rule state), then
calls :meth:`Sender.wake`; the sender delivers through Apprise and writes each result back.
``watcher check`` uses :func:`validate_targets`, ``watcher notify-test`` :func:`send_test`, and
``watcher alerts`` :meth:`Outbox.recent`. URLs are only ever shown through :func:`mask_url`.

The names below are loaded on first use: the outbox and the sender import ``sqlite3`` (through
:mod:`watcher.store.sqlite_alerts`), and importing :mod:`watcher.notify.ports` runs this module
first, so eager re-exports would make every user of the port load SQLite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watcher.notify.apprise_targets import (
        SendStatus,
        TargetResult,
        mask_url,
        normalize_targets,
        send_test,
        validate_targets,
    )
    from watcher.notify.outbox import (
        AlertRecord,
        AlertStatus,
        DeliveryRecord,
        DeliveryStatus,
        Outbox,
        PendingDelivery,
    )
    from watcher.notify.sender import Sender, SenderStats, retry_delay

__all__ = [
    "AlertRecord",
    "AlertStatus",
    "DeliveryRecord",
    "DeliveryStatus",
    "Outbox",
    "PendingDelivery",
    "SendStatus",
    "Sender",
    "SenderStats",
    "TargetResult",
    "mask_url",
    "normalize_targets",
    "retry_delay",
    "send_test",
    "validate_targets",
]

_LAZY = {
    **dict.fromkeys(
        (
            "SendStatus",
            "TargetResult",
            "mask_url",
            "normalize_targets",
            "send_test",
            "validate_targets",
        ),
        "apprise_targets",
    ),
    **dict.fromkeys(
        (
            "AlertRecord",
            "AlertStatus",
            "DeliveryRecord",
            "DeliveryStatus",
            "Outbox",
            "PendingDelivery",
        ),
        "outbox",
    ),
    **dict.fromkeys(("Sender", "SenderStats", "retry_delay"), "sender"),
}


def __getattr__(name: str) -> Any:
    """Load a re-exported name on first use (see the module docstring)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
