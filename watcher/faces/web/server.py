"""Serving the dashboard with uvicorn, as a task in the service's own event loop.

uvicorn normally takes over SIGINT and SIGTERM while it serves; here it must not: the
service's handlers (:func:`watcher.service.process.stop_on_signals`) stop the service first,
which flushes the store, and only then is the dashboard stopped, when the faces close
(:func:`serve_web` puts the stop on the caller's exit stack). :class:`QuietServer` is uvicorn's
server without its signal handling.

The socket is bound here rather than by uvicorn (which exits the process when a port is busy):
a busy port falls back to a free one, with a warning naming both.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from watcher.faces.host import FaceHost
from watcher.faces.web.app import close_app, create_app
from watcher.settings import SettingsError

__all__ = ["QuietServer", "WebServer", "bind", "serve_web"]

logger = logging.getLogger("watcher.web")

#: Seconds the server waits for open connections when it stops (event streams end first).
STOP_GRACE = 3.0


class QuietServer(uvicorn.Server):
    """uvicorn's server, leaving SIGINT and SIGTERM to the service (see the module)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """The dashboard being served: its URL, and how to stop it."""

    def __init__(
        self, app: Starlette, server: QuietServer, task: asyncio.Task[None], url: str
    ) -> None:
        self.app = app
        self.server = server
        self.task = task
        self.url = url

    def __repr__(self) -> str:
        return f"<WebServer {self.url} {'stopped' if self.task.done() else 'serving'}>"

    async def stop(self) -> None:
        """End the event streams, stop accepting, let answers in flight finish, close."""
        await close_app(self.app)
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), STOP_GRACE + 2)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def bind(host: str, port: int) -> tuple[socket.socket, int]:
    """A listening-ready socket on ``host:port``, or on a free port when that one is busy
    (with a warning naming both); returns it and the port it got.

    Raises:
        SettingsError: the address cannot be bound (no such address here, not allowed).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
            sock.bind((host, 0))
            got = sock.getsockname()[1]
            logger.warning(
                "dashboard port %d on %s is busy: using port %d instead", port, host, got
            )
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise SettingsError(f"cannot serve the dashboard on {host}:{port}: {reason}") from exc
    return sock, int(sock.getsockname()[1])


async def serve_web(
    stack: contextlib.AsyncExitStack, host: FaceHost, *, read_only: bool = False
) -> WebServer:
    """Serve the dashboard on ``host.settings.web`` until ``stack`` closes; log its URL.

    Raises:
        SettingsError: the address cannot be bound at all (not merely a busy port).
    """
    assert host.settings.web is not None
    address, port = host.settings.web
    sock, port = bind(address, port)
    app = create_app(host, read_only=read_only)
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(STOP_GRACE),
    )
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="web")
    shown = f"[{address}]" if ":" in address else address
    web = WebServer(app, server, task, f"http://{shown}:{port}/")
    stack.push_async_callback(web.stop)
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn sets a flag
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # the error that stopped it
    logger.info("dashboard: %s", web.url)
    return web
