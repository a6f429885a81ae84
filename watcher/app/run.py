"""``watcher start``'s outer loop: load the config, open the endpoint, take the lead (or stand
by), run a :class:`~watcher.app.service.Service` while active, and serve the faces that were
switched on (the dashboard stays up across standby and takeover).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from watcher.app.service import Service
from watcher.domain.trades_file import load_positions
from watcher.faces import FaceHost, open_faces
from watcher.ops.server import open_standby_server, serve_standby
from watcher.rules import load_rules
from watcher.service.endpoint import Endpoint, open_endpoint
from watcher.service.leadership import Leadership, Role, open_leadership
from watcher.service.process import collector_tuned, stop_on_signals
from watcher.settings import Settings

__all__ = ["run_service"]

logger = logging.getLogger("watcher.app")


async def run_service(
    settings: Settings, *, stop: asyncio.Event | None = None, **options: Any
) -> str:
    """Load config, connect, and run until SIGINT/SIGTERM (or ``stop``). Returns the summary."""
    portfolio = load_positions(settings.trades_path)
    rules = load_rules(settings.rules_path, env=settings.env)
    for warning in rules.warnings:
        logger.warning("%s", warning)
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(collector_tuned())
        leadership = await stack.enter_async_context(open_leadership(settings.db_path))
        endpoint = await _open_endpoint(stack, settings)
        async with stop_on_signals(stop):
            server = await open_standby_server(stack, settings.metrics_port, leadership)
            host = FaceHost(settings, rules)
            await open_faces(stack, host)  # served while active and while standing by
            summary = "stopped: standing by, never active"
            while await leadership.wait_active(stop):
                service = Service(
                    settings,
                    portfolio=portfolio,
                    rules=rules,
                    endpoint=endpoint,
                    client_options=options or None,
                    instance=leadership.lock.me if leadership.shared else None,
                )
                host.service = service
                stepping_down = asyncio.create_task(_step_down(host, leadership))
                try:
                    summary = await service.run(stop, leadership=leadership, server=server)
                finally:
                    host.service = None
                    stepping_down.cancel()
                if leadership.role is Role.ACTIVE or stop.is_set():
                    break  # stopped (SIGTERM): leaving the stack releases the lock at once
                portfolio, rules = service.pipeline.portfolio, service.pipeline.rules
                serve_standby(server, leadership)
    logger.info("%s", summary)
    return summary


async def _step_down(host: FaceHost, leadership: Leadership) -> None:
    """The faces let go of the service as soon as the lock is lost, not after its shutdown:
    the new active's bot may start polling before this one has finished flushing."""
    await leadership.lost.wait()
    host.service = None


async def _open_endpoint(stack: contextlib.AsyncExitStack, settings: Settings) -> Endpoint:
    return await open_endpoint(
        stack,
        simulate=settings.simulate,
        ws_url=settings.ws_url,
        api_url=settings.api_url,
        api_key_id=settings.api_key_id,
        private_key_path=settings.private_key_path,
        private_key_password=settings.private_key_password,
        poll_interval=settings.poll_interval,
    )
