"""Processes the benchmark starts: the firehose and ``watcher start``, plus their inputs.

Everything runs on loopback. A throwaway Ed25519 key signs the watcher's handshakes and the
firehose verifies them, as Kalshi would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.frames import market_tickers
from watcher.kalshi.auth import KalshiSigner

__all__ = [
    "KEY_ID",
    "ROOT",
    "Firehose",
    "Keys",
    "Watcher",
    "clean_env",
    "peak_rss_mb",
    "persisted_rows",
    "watcher_command",
    "watcher_env",
    "write_trades",
]

ROOT = Path(__file__).resolve().parents[1]
KEY_ID = "bench-key"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
_SUMMARY = re.compile(
    r"stopped: (\d+) messages \((\d+) ticker, (\d+) trade\), (\d+) ticks and (\d+) trades stored"
)


@dataclass(frozen=True)
class Keys:
    """A throwaway Ed25519 key pair written as PEM files."""

    private_path: Path
    public_path: Path
    signer: KalshiSigner = field(repr=False)

    @classmethod
    def create(cls, folder: Path) -> Keys:
        key = ed25519.Ed25519PrivateKey.generate()
        private_path, public_path = folder / "bench-key.pem", folder / "bench-key.pub.pem"
        private_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        private_path.chmod(0o600)
        public_path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(private_path, public_path, KalshiSigner(KEY_ID, key))


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without KALSHI_*/WATCHER_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "WATCHER_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, **extra}


def watcher_env(firehose: Firehose, keys: Keys) -> dict[str, str]:
    """The environment of ``watcher start`` against ``firehose``, signing with ``keys``."""
    return clean_env(
        KALSHI_WS_URL=firehose.ws_url,
        KALSHI_API_URL=firehose.api_url,
        KALSHI_API_KEY_ID=KEY_ID,
        KALSHI_PRIVATE_KEY_PATH=str(keys.private_path),
    )


def watcher_command(trades: Path, db: str, *extra: str) -> list[str]:
    """``python -m watcher.cli start`` on ``trades``, the default rules and ``db``."""
    rules = str(ROOT / "rules" / "rules.yaml")
    start = [sys.executable, "-m", "watcher.cli", "start", "--trades", str(trades)]
    return [*start, "--rules", rules, "--db", db, *extra]


def write_trades(path: Path, positions: int) -> Path:
    """A trades.json watching the first ``positions`` firehose markets (YES, 10 at 50¢)."""
    trades = [
        {"id": f"b{i}", "ticker": t, "side": "YES", "entry_price": 50, "contracts": 10}
        for i, t in enumerate(market_tickers(positions))
    ]
    path.write_text(json.dumps({"trades": trades}))
    return path


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size of a live process (``VmHWM``), in MiB (Linux only)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def persisted_rows(db: Path) -> int:
    """Rows in ``tickers`` plus ``trades`` (max rowid: cheap, and rows are never deleted)."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute(
                "SELECT (SELECT coalesce(max(id), 0) FROM tickers)"
                " + (SELECT coalesce(max(id), 0) FROM trades)"
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


class Firehose:
    """``python -m bench.firehose`` as a child process; its JSON events are collected."""

    def __init__(
        self,
        markets: int,
        keys: Keys,
        *,
        rate: float = 0,
        probe: float = 0,
        probe_markets: int = 0,
    ) -> None:
        self.markets = markets
        self.args = [
            "--probe-markets",
            str(probe_markets),
            "--markets",
            str(markets),
            "--rate",
            str(rate),
            "--probe-interval",
            str(probe),
            "--public-key",
            f"{KEY_ID}={keys.public_path}",
        ]
        self.events: list[dict[str, Any]] = []
        self.ws_url = self.api_url = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Firehose:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.firehose",
            *self.args,
            cwd=ROOT,
            env=clean_env(),
            stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        listening = await self.wait_for("listening", timeout=STARTUP_TIMEOUT)
        self.ws_url, self.api_url = listening["ws_url"], listening["api_url"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            await self._proc.wait()
        if self._reader is not None:
            await self._reader

    def drop(self) -> None:
        """Make the firehose abort every connection (SIGUSR1)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGUSR1)

    async def wait_for(
        self,
        event: str,
        *,
        after: int = 0,
        timeout: float = STARTUP_TIMEOUT,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """The first ``event`` at index ``after`` or later, waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                for item in self.events[after:]:
                    if item["event"] == event:
                        return item
                if self._reader is not None and self._reader.done():
                    raise RuntimeError(f"firehose exited before a {event!r} event")
                self._changed.clear()
                await self._changed.wait()

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))
            self._changed.set()
        self._changed.set()


class Watcher:
    """``watcher start`` as a child process against a firehose, writing to ``folder/data/w.db``
    or to ``db`` (a ``postgresql://`` URL), whose stored rows ``rows`` counts."""

    def __init__(
        self,
        folder: Path,
        firehose: Firehose,
        keys: Keys,
        *,
        trades: Path,
        db: str | None = None,
        rows: Callable[[], Awaitable[int]] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.folder = folder
        self.db = folder / "data" / "w.db"
        self.db_arg = db or str(self.db)
        self._rows = rows
        self._startup_timeout = startup_timeout
        self.env = watcher_env(firehose, keys)
        self.trades = trades
        self.extra = extra  # more `watcher start` options (e.g. --web)
        self.summary: dict[str, int] = {}
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Watcher]:
        """Start it, wait for the first persisted row, and stop it (SIGTERM) on exit."""
        out, err = self.folder / "watcher.out", self.folder / "watcher.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self._proc = await asyncio.create_subprocess_exec(
                *watcher_command(self.trades, self.db_arg, *self.extra),
                cwd=self.folder,
                env=self.env,
                stdout=stdout,
                stderr=stderr,
            )
            try:
                await self._first_row()
                yield self
            finally:
                await self._stop()
        match = _SUMMARY.search(out.read_text())
        if match:
            keys = ("messages", "ticker", "trade", "ticks_stored", "trades_stored")
            self.summary = dict(zip(keys, map(int, match.groups()), strict=True))

    async def rows(self) -> int:
        """Rows stored so far (``tickers`` + ``trades``)."""
        return await self._rows() if self._rows is not None else persisted_rows(self.db)

    async def _first_row(self) -> None:
        assert self._proc is not None
        async with asyncio.timeout(self._startup_timeout):
            while await self.rows() == 0:
                if self._proc.returncode is not None:
                    err = (self.folder / "watcher.err").read_text()[-2000:]
                    raise RuntimeError(f"watcher start exited with {self._proc.returncode}: {err}")
                await asyncio.sleep(0.05)

    async def _stop(self) -> None:
        assert self._proc is not None
        if self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                self.returncode = await self._proc.wait()
        except TimeoutError:
            self._proc.kill()
            self.returncode = await self._proc.wait()
