"""The durable alert outbox, as the notify side names it (re-exports; no SQL here).

The outbox is the :class:`~watcher.store.ports.AlertStore` port; its SQLite implementation is
:mod:`watcher.store.sqlite_alerts` (:class:`Outbox`, synchronous, and :class:`SQLiteAlertStore`,
its async adapter), and the values and statuses it speaks are in :mod:`watcher.store.records`.
These names are kept here for the code and tests that import them from ``watcher.notify``.
"""

from __future__ import annotations

from watcher.store.console import CONSOLE_LOGGER, log_console_alert
from watcher.store.records import (
    OPEN_STATUSES,
    AlertRecord,
    AlertStatus,
    DeliveryRecord,
    DeliveryRef,
    DeliveryStatus,
    PendingDelivery,
    rollup_status,
)
from watcher.store.sqlite_alerts import Outbox, SQLiteAlertStore

__all__ = [
    "CONSOLE_LOGGER",
    "OPEN_STATUSES",
    "AlertRecord",
    "AlertStatus",
    "DeliveryRecord",
    "DeliveryRef",
    "DeliveryStatus",
    "Outbox",
    "PendingDelivery",
    "SQLiteAlertStore",
    "log_console_alert",
    "rollup_status",
]
