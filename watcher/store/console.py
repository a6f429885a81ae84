"""The console delivery: alerts that no target takes are logged on ``watcher.alerts``.

Every :class:`~watcher.store.ports.AlertStore` logs an alert recorded without targets here once
it is committed, and the sender logs alerts whose target cannot work as configured.
"""

from __future__ import annotations

import logging

__all__ = ["CONSOLE_LOGGER", "log_console_alert"]

#: Alerts without targets (and alerts no target could take) are logged here at WARNING.
CONSOLE_LOGGER = logging.getLogger("watcher.alerts")


def log_console_alert(severity: str, title: str, body: str) -> None:
    """Log an alert on the console logger: ``ALERT [severity] title: body``."""
    CONSOLE_LOGGER.warning("ALERT [%s] %s: %s", severity, title, body)
