"""The process under test: watcher's :class:`~watcher.app.Service`, as ``watcher start`` runs
it, plus a sampler of its resources.

Configured from the environment like ``watcher start`` (``WATCHER_TRADES``, ``WATCHER_RULES``,
``WATCHER_DB``, ``KALSHI_*``). Every ``SOAK_SAMPLE_INTERVAL`` seconds it appends one JSON line to
the file named by ``SOAK_METRICS``: resident memory, open file descriptors, asyncio tasks,
threads and the service's counters; after a clean stop (SIGTERM) a last line with ``"final":
true``. The client's reconnect timings are shortened (:data:`CLIENT_OPTIONS`) so that a fault
heals in seconds, not minutes; everything else is the production code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from watcher.app import Endpoint, Service
from watcher.domain.trades_file import load_positions
from watcher.kalshi.auth import KalshiSigner
from watcher.kalshi.client import ClientStats
from watcher.ops.logs import setup_logging
from watcher.rules import load_rules
from watcher.settings import Settings, settings_from_env

__all__ = ["CLIENT_OPTIONS", "open_fds", "rss_kb", "sample"]

#: Production defaults are 0.5 s / 60 s / 30 s / 30 s; a soak needs faults to heal quickly.
CLIENT_OPTIONS: dict[str, Any] = {
    "min_reconnect_delay": 0.1,
    "max_reconnect_delay": 2.0,
    "watchdog_timeout": 3.0,
    "rate_limit_delay": 2.0,
}
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kb() -> int:
    """Resident set size of this process in KiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE_KB


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def sample(svc: Service) -> dict[str, Any]:
    """One metrics record of the running service."""
    client = svc.client.stats if svc.client is not None else ClientStats()
    store = svc.store.stats
    sender = svc.pipeline.sender
    return {
        "t": time.time(),
        "rss_kb": rss_kb(),
        "fds": open_fds(),
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "received": client.by_type.get("ticker", 0),
        "stored": store.rows_written.get("tickers", 0),
        "trades_received": client.by_type.get("trade", 0),
        "late_trades": client.backfilled_trades,
        "reconnects": client.reconnects,
        "decode_errors": client.decode_errors,
        "unknown": client.unknown,
        "alerts_fired": svc.pipeline.alerts_fired,
        "alerts_sent": sender.stats.sent if sender is not None else 0,
        "write_errors": store.errors,
    }


async def _sampler(svc: Service, path: Path, interval: float) -> None:
    with path.open("a") as out:
        while True:
            out.write(json.dumps(sample(svc)) + "\n")
            out.flush()
            await asyncio.sleep(interval)


def _service(settings: Settings) -> Service:
    assert settings.api_key_id and settings.private_key_path
    signer = KalshiSigner.from_file(
        settings.api_key_id, settings.private_key_path, settings.private_key_password
    )
    return Service(
        settings,
        portfolio=load_positions(settings.trades_path),
        rules=load_rules(settings.rules_path, env=settings.env),
        endpoint=Endpoint(settings.ws_url, settings.api_url, signer),
        client_options=dict(CLIENT_OPTIONS),
    )


async def serve(settings: Settings, metrics: Path, interval: float) -> str:
    """Run the service until SIGTERM/SIGINT, sampling it; return the shutdown summary."""
    svc = _service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sampler = asyncio.create_task(_sampler(svc, metrics, interval), name="soak sampler")
    try:
        summary = await svc.run(stop)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    with metrics.open("a") as out:
        out.write(json.dumps({**sample(svc), "final": True, "summary": summary}) + "\n")
    return summary


def main() -> int:
    """Entry point of ``python -m soak.child``."""
    setup_logging(verbose=0)
    settings = settings_from_env(trades=None, rules=None, db=None)
    metrics = Path(os.environ["SOAK_METRICS"])
    interval = float(os.environ.get("SOAK_SAMPLE_INTERVAL", "2"))
    print(asyncio.run(serve(settings, metrics, interval)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
