"""The running service's live health, as the faces show it (the dashboard's health strip, the
chat bot's ``/status``): one snapshot of counters that only the running process knows.

What the service also records in ``service_state`` (feed status, heartbeat, active instance)
is read through :func:`watcher.ops.status.read_status`, which works without a running service.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LiveHealth"]


@dataclass(frozen=True, slots=True)
class LiveHealth:
    """A snapshot of the running service.

    Attributes:
        mode: how it gets data: ``stream`` (signed WebSocket), ``keyless`` (REST polls) or
            ``simulate``.
        connected: the WebSocket is open (keyless: the last REST poll succeeded).
        last_message_age_s: seconds since the last frame or successful poll (None: none yet).
        messages: frames received since start.
        reconnects: WebSocket reconnections since start.
        sequence_gaps: sequence gaps detected (each one recovered by a resubscribe).
        store_queue: rows waiting for the store writer.
        store_errors: failed (retried) store writes.
        alerts_fired: alerts recorded since start.
        alerts_suppressed: of those, suppressed (quiet hours, mutes).
        role: ``active`` on a shared database, ``single`` on SQLite.
        instance: this instance's name on a shared database.
    """

    mode: str
    connected: bool
    last_message_age_s: float | None
    messages: int
    reconnects: int
    sequence_gaps: int
    store_queue: int
    store_errors: int
    alerts_fired: int
    alerts_suppressed: int
    role: str
    instance: str | None = None
