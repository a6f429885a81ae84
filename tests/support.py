"""Helpers shared by the tests that run `watcher start` or read its database from outside."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.domain.alert import Alert
from watcher.kalshi.messages import Trade, TradeMsg

from .conftest import MS

if TYPE_CHECKING:
    from watcher.kalshi.sim.exchange import SimulatedExchange

__all__ = [
    "KEY_ID",
    "RULES",
    "T1",
    "T2",
    "TRADES",
    "WAIT",
    "HttpRecorder",
    "Request",
    "alert_for",
    "atomic_write",
    "count",
    "env_without_kalshi",
    "finish",
    "poll",
    "rows",
    "spawn",
    "watcher_env",
    "write_key",
]

WAIT = 10_000 * MS

# A user's files: two positions (one NO) and one spread rule whose alerts go to ${HOOK_URL}.

#: The key id the tests' simulators know the tests' keys by.
KEY_ID = "faults-key"
T1, T2 = "KXCPI-26JAN-T0.3", "KXFED-26DEC-H0"
TRADES: dict[str, Any] = {
    "trades": [
        {"ticker": T1, "side": "YES", "entry_price": 40, "contracts": 10},
        {"ticker": T2, "side": "no", "entry_cents": 30, "quantity": 5},
    ]
}
RULES = """\
version: 1
timezone: UTC
notify:
  hook: ${HOOK_URL}
defaults:
  notify: [hook]
  cooldown: 1h
rules:
  - {name: wide or tight, type: spread, max_cents: 10}
"""


def env_without_kalshi(**extra: str) -> dict[str, str]:
    """This process's environment minus every KALSHI_* and WATCHER_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "WATCHER_"))}
    return {**env, **extra}


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a query on a read-only connection of its own (nothing if the table is not there)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []


def count(db: Path, sql: str, *params: Any) -> int:
    """The number ``sql`` selects from ``db`` (read-only); 0 before the DB or table exists."""
    found = rows(db, sql, *params)
    return int(found[0][0]) if found else 0


def atomic_write(path: Path, text: str) -> None:
    """Write like an editor: a temp file in the same folder, then rename over the original."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


# `watcher start` as a subprocess


def write_key(path: Path, key: ed25519.Ed25519PrivateKey, password: str | None = None) -> Path:
    """Save ``key`` as a PKCS#8 PEM (encrypted with ``password`` if given), mode 0600."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def watcher_env(sim: SimulatedExchange, key_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who points watcher at the test's simulator with their key."""
    return env_without_kalshi(
        KALSHI_API_KEY_ID=KEY_ID,
        KALSHI_PRIVATE_KEY_PATH=str(key_path),
        KALSHI_WS_URL=sim.ws_url,
        KALSHI_API_URL=sim.api_url,
        **extra,
    )


async def spawn(
    workdir: Path,
    env: dict[str, str],
    *args: str,
    db: Path | None = None,
    preexec: Callable[[], None] | None = None,
) -> asyncio.subprocess.Process:
    """``python -m watcher.cli start ARGS`` on the workdir's trades.json and rules.yaml and on
    ``db`` (``workdir/w.db`` by default), its output piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "watcher.cli",
        "start",
        "--trades",
        str(workdir / "trades.json"),
        "--rules",
        str(workdir / "rules.yaml"),
        "--db",
        str(db or workdir / "w.db"),
        *args,
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=preexec,
    )


async def finish(proc: asyncio.subprocess.Process, sig: int | None = None) -> tuple[str, str]:
    """Send ``sig`` (if any), wait for the exit, return (stdout, stderr)."""
    if sig is not None and proc.returncode is None:
        proc.send_signal(sig)
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    return out.decode(), err.decode()


def trade_frame(trade_id: str, *, market: str, ts_ms: int) -> Trade:
    """A public trade frame: 136 contracts at YES 36¢, NO taker."""
    return Trade(
        sid=2,
        seq=1,
        msg=TradeMsg(
            trade_id=trade_id,
            market_ticker=market,
            yes_price_dollars=Decimal("0.36"),
            no_price_dollars=Decimal("0.64"),
            count_fp=Decimal("136.00"),
            taker_side="no",
            ts_ms=ts_ms,
        ),
    )


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_on(
    workdir: Path,
    sim: Any,
    key: Any,
    *,
    key_id: str = "k",
    environ: dict[str, str] | None = None,
    client_options: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """An in-process ``Service`` on ``workdir``'s trades.json, rules.yaml and w.db, signed with
    ``key`` (as ``key_id``) against the simulator ``sim``; ``options`` are settings options."""
    from watcher.app import Endpoint, Service
    from watcher.domain.trades_file import load_positions
    from watcher.kalshi.auth import KalshiSigner
    from watcher.rules import load_rules
    from watcher.settings import settings_from_env

    settings = settings_from_env(
        trades=str(workdir / "trades.json"),
        rules=str(workdir / "rules.yaml"),
        db=str(workdir / "w.db"),
        environ=environ or {},
        **options,
    )
    return Service(
        settings,
        portfolio=load_positions(settings.trades_path),
        rules=load_rules(settings.rules_path, env=settings.env),
        endpoint=Endpoint(sim.ws_url, sim.api_url, KalshiSigner(key_id, key)),
        client_options=client_options,
    )
