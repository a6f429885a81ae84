"""``watcher alerts``: recent alerts with their delivery status per target, and why a suppressed
one was held back (quiet hours, a mute, the pause)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from watcher.ops.readout import time_text
from watcher.store.records import AlertRecord

__all__ = ["alert_json", "alert_line"]


def alert_line(record: AlertRecord, tz: ZoneInfo) -> str:
    """One line: when (in ``tz``, labelled), status, severity, title, each delivery, and why
    a suppressed alert was held back."""
    deliveries = ", ".join(
        f"{d.target}={d.status}" + (f" ({d.attempts} tries)" if d.attempts > 1 else "")
        for d in record.deliveries
    )
    when = time_text(record.created_ms, tz)
    line = f"{when}  {record.status:<10} [{record.severity}] {record.title}" + (
        f"  -> {deliveries}" if deliveries else ""
    )
    return f"{line}  ({record.suppressed_reason})" if record.suppressed_reason else line


def alert_json(record: AlertRecord) -> dict[str, Any]:
    """One JSON object of ``watcher alerts --json`` (errors are stored masked)."""
    return {
        "id": record.id,
        "created_ms": record.created_ms,
        "rule": record.rule,
        "market_ticker": record.market_ticker,
        "severity": record.severity,
        "title": record.title,
        "body": record.body,
        "status": record.status,
        "suppressed_reason": record.suppressed_reason,
        "deliveries": [
            {
                "target": d.target,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
            }
            for d in record.deliveries
        ],
    }
