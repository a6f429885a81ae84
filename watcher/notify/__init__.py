"""Alert delivery: the durable outbox, the Apprise sender and target validation.

The app records alerts with :meth:`Outbox.record` (one transaction with the rule state), then
calls :meth:`Sender.wake`; the sender delivers through Apprise and writes each result back.
``watcher check`` uses :func:`validate_targets`, ``watcher notify-test`` :func:`send_test`, and
``watcher alerts`` :meth:`Outbox.recent`. URLs are only ever shown through :func:`mask_url`.
"""

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
