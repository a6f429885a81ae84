"""The ``/metrics`` + ``/healthz`` server of ``--metrics-port``, and what makes the feed healthy.

A minimal asyncio HTTP/1.1 server, one request per connection, loopback by default; the
service's own event loop runs it, so answering a scrape reads the counters without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watcher.errors import ConfigError
from watcher.ops.metrics import Metrics, bind_service
from watcher.service.leadership import Leadership
from watcher.store.records import WriterStats

__all__ = [
    "DEFAULT_PORT",
    "STORE_MAX_LAG_MS",
    "Health",
    "MetricsServer",
    "feed_health",
    "open_standby_server",
    "serve_standby",
    "store_health",
]

logger = logging.getLogger("watcher.metrics")

DEFAULT_PORT = 9464
#: Rows queued and no commit for this long: ``/healthz`` reports the store behind.
STORE_MAX_LAG_MS = 10_000
_MAX_REQUEST_LINE = 8192
_MAX_HEADERS = 100


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of ``/healthz``: 200 with ``reason`` when ``ok``, else 503 with it (a
    standby answers 200 ``standby: <host> pid <pid> is active``)."""

    ok: bool
    reason: str = "ok"


def feed_health(
    *, connected: bool, last_message_at: float | None, now: float, max_silence: float | None = None
) -> Health:
    """Decide whether the feed is live (a pure function; times are ``time.monotonic()``).

    Args:
        connected: the WebSocket is open (the client's ping watchdog closes a dead one).
        last_message_at: when the last frame arrived, or None if none has.
        now: the current monotonic time.
        max_silence: seconds without a frame after which the feed counts as stale; None never.

    Returns:
        ``Health(True)`` or ``Health(False, reason)``.
    """
    if not connected:
        return Health(False, "feed not connected")
    if max_silence is not None and last_message_at is not None:
        silent = now - last_message_at
        if silent > max_silence:
            return Health(False, f"no frame for {silent:.0f} s (limit {max_silence:g} s)")
    return Health(True)


def store_health(
    stats: WriterStats, *, now_ms: int, feed: Health, max_lag_ms: int = STORE_MAX_LAG_MS
) -> Health:
    """The feed's health, unless the store is behind (a pure function).

    The store is behind when rows wait in its queue and nothing was committed for
    ``max_lag_ms`` (a dropped database connection being retried, a full disk): the service keeps
    streaming meanwhile, and ``/healthz`` says so rather than reporting ok.
    """
    last = stats.last_flush_ms
    if not feed.ok or stats.queue_depth == 0 or last is None or now_ms - last <= max_lag_ms:
        return feed  # (before the first commit the writer is starting, not behind)
    return Health(
        False,
        f"store behind: {stats.queue_depth} rows queued, last write {(now_ms - last) // 1000} s"
        f" ago, {stats.errors} failed attempts",
    )


class MetricsServer:
    """A minimal asyncio HTTP server for ``/metrics`` and ``/healthz``; an async context manager.

    ``GET``/``HEAD /metrics`` answers the Prometheus text format; ``/healthz`` answers 200 ``ok``
    while ``is_healthy()`` is true (or a healthy :class:`Health`), else 503 with the reason.
    Anything else is 404 (405 for other methods). One request per connection.

    Args:
        metrics: what ``/metrics`` serves.
        host: the address to listen on; loopback by default (metrics are not secret, but not
            public either).
        port: the TCP port; 0 picks a free one (see :attr:`port`).
        is_healthy: the liveness test, called per request on the event loop.
        read_timeout: seconds a client has to send its request.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, no permission).
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        is_healthy: Callable[[], bool | Health],
        read_timeout: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self.is_healthy = is_healthy
        self.read_timeout = read_timeout
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return f"<MetricsServer http://{self.host}:{self.port} {state}>"

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Public methods

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the OS when 0 was asked for)."""
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen; log where."""
        # Import prometheus_client now rather than on the event loop during the first scrape.
        self.metrics.registry  # noqa: B018
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self._requested_port, limit=_MAX_REQUEST_LINE
            )
        except OSError as exc:
            where = f"{self.host}:{self._requested_port}"
            raise ConfigError(
                f"cannot serve metrics on {where}: {exc.strerror or exc}", file="--metrics-port"
            ) from exc
        logger.info("metrics on %s/metrics, health on %s/healthz", self.url, self.url)

    async def close(self) -> None:
        """Stop listening and end open connections (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    # Private methods

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                async with asyncio.timeout(self.read_timeout):
                    method, path = await _read_request(reader)
            except ValueError as exc:
                method, reply = "GET", _text(400, f"bad request: {exc}")
            else:
                reply = await self._route(method, path)
            writer.write(_response(*reply, head=method == "HEAD"))
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client went away or never sent a request
        except Exception:
            logger.exception("metrics server failed to answer a request")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if path not in ("/metrics", "/healthz"):
            return _text(404, f"not found: {path[:100]}")
        if method not in ("GET", "HEAD"):
            return _text(405, f"method not allowed: {method[:20]}")
        if path == "/healthz":
            return self._health()
        await self.metrics.refresh()
        from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

        try:
            return 200, CONTENT_TYPE_PLAIN_0_0_4, self.metrics.render()
        except Exception as exc:
            logger.exception("metrics collection failed: %s", exc)
            return _text(500, f"metrics collection failed: {exc}")

    def _health(self) -> tuple[int, str, bytes]:
        try:
            answer = self.is_healthy()
        except Exception as exc:
            logger.warning("health check raised: %r", exc)
            return _text(503, f"health check failed: {exc!r}")
        health = answer if isinstance(answer, Health) else Health(bool(answer), "unhealthy")
        return _text(200 if health.ok else 503, health.reason)


async def open_standby_server(
    stack: contextlib.AsyncExitStack, port: int | None, leadership: Leadership
) -> MetricsServer | None:
    """On a shared database, one metrics server for the whole process, serving the standby's
    role and health until an active run points it at its own (None: each run has its own).

    Raises:
        ConfigError: the port cannot be bound.
    """
    if port is None or not leadership.shared:
        return None
    server = MetricsServer(Metrics(), port=port, is_healthy=lambda: Health(True))
    serve_standby(server, leadership)
    return await stack.enter_async_context(server)


def serve_standby(server: MetricsServer | None, leadership: Leadership) -> None:
    """Point ``server`` at the standby's metrics (``watcher_role``) and health."""
    if server is None:
        return
    metrics = Metrics()
    bind_service(metrics, role=lambda: str(leadership.role))
    server.metrics = metrics
    server.is_healthy = lambda: Health(*leadership.health())


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Parse ``METHOD TARGET HTTP/x.y`` and skip the headers; return ``(method, path)``."""
    line = (await reader.readline()).decode("latin-1").strip()  # ValueError if too long
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"malformed request line {line[:100]!r}")
    for _ in range(_MAX_HEADERS):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            return parts[0], parts[1].split("?", 1)[0]
    raise ValueError(f"more than {_MAX_HEADERS} headers")


def _text(status: int, text: str) -> tuple[int, str, bytes]:
    return status, "text/plain; charset=utf-8", f"{text}\n".encode()


def _response(status: int, content_type: str, body: bytes, *, head: bool = False) -> bytes:
    lines = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    )
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (b"" if head else body)
