"""Helpers shared by the tests that run `watcher start` or read its database from outside."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.alert import Alert

from .conftest import MS

__all__ = ["HttpRecorder", "Request", "alert_for", "count", "env_without_kalshi", "poll"]

WAIT = 10_000 * MS


def env_without_kalshi(**extra: str) -> dict[str, str]:
    """This process's environment minus every KALSHI_* and WATCHER_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "WATCHER_"))}
    return {**env, **extra}


def count(db: Path, sql: str) -> int:
    """The number ``sql`` selects from ``db`` (read-only); 0 before the DB or table exists."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


async def poll(predicate: Callable[[], object], within: float = WAIT) -> None:
    """Wait until ``predicate()`` is true; for conditions in another process or thread."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the condition lives in another task/process
            await asyncio.sleep(0.02)


def alert_for(n: int, targets: tuple[str, ...], *, now: int, **kw: Any) -> Alert:
    """Alert number ``n`` of a "tight spread" rule on market KXTEST-n, fired at ``now + n``."""
    fields: dict[str, Any] = {
        "key": f"tight spread|KXTEST-{n}|{now + n}",
        "rule": "tight spread",
        "market_ticker": f"KXTEST-{n}",
        "severity": "warning",
        "title": f"KXTEST-{n} spread 1c",
        "body": f"spread is 1c on KXTEST-{n}",
        "targets": targets,
        "at_ms": now + n,
    }
    fields.update(kw)
    return Alert(**fields)


@dataclass
class Request:
    status: int
    path: str
    headers: dict[str, str]
    payload: dict[str, Any]


@dataclass
class HttpRecorder:
    """A tiny HTTP server on 127.0.0.1:0 that answers scripted statuses, then 200."""

    statuses: list[int] = field(default_factory=list)  # 0: hold the answer until release
    requests: list[Request] = field(default_factory=list)
    server: asyncio.Server | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    @property
    def delivered(self) -> list[Request]:
        return [r for r in self.requests if r.status == 200]

    async def __aenter__(self) -> HttpRecorder:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.release.set()
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
            headers = {k.lower(): v for k, v in headers.items()}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.statuses.pop(0) if self.statuses else 200
            path = head[0].split(" ")[1]
            self.requests.append(Request(status, path, headers, json.loads(body or b"{}")))
            if status == 0:
                await self.release.wait()
                status = 200
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
