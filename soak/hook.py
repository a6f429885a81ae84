"""A local webhook for Apprise's ``json://`` URLs that can be told to fail for a while."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from types import TracebackType
from typing import Self

__all__ = ["Hook"]


class Hook:
    """An HTTP server on 127.0.0.1 that records each JSON notification.

    It answers 200, or 500 while :meth:`fail_for` is in effect (a notifier outage).
    """

    def __init__(self) -> None:
        self.received = 0  # messages answered 200
        self.alerts = 0  # alerts inside them ("3 alerts" counts 3)
        self.refused = 0  # messages answered 500
        self._failing_until = 0.0
        self._server: asyncio.Server | None = None

    def __repr__(self) -> str:
        return f"<Hook {self.url if self._server else 'closed'} received={self.received}>"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        """The Apprise URL of this hook."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"json://127.0.0.1:{port}/hook"

    def fail_for(self, seconds: float) -> None:
        """Answer 500 to every notification for ``seconds``."""
        self._failing_until = time.monotonic() + seconds

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            body = json.loads(await reader.readexactly(_content_length(head)) or b"{}")
            if time.monotonic() < self._failing_until:
                self.refused += 1
                status = "500 Internal Server Error"
            else:
                self.received += 1
                self.alerts += _alerts_in(str(body.get("title", "")))
                status = "200 OK"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _content_length(head: str) -> int:
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip() == "content-length":
            return int(value.strip() or 0)
    return 0


def _alerts_in(title: str) -> int:
    """How many alerts one message carries: the sender titles a batch "N alerts"."""
    count, _, word = title.partition(" ")
    return int(count) if word == "alerts" and count.isdigit() else 1
