"""The takeover phase of ``make bench``: how long a standby takes to replace a SIGKILLed active.

Two ``watcher start --db postgresql://... --metrics-port P`` processes share a fresh database on
the server of the PostgreSQL phase (:func:`bench.pgphase.server_dsn`) and stream the same
full-speed firehose, signing with the same key. Once one answers ``/healthz`` with
``active: ok`` and the other with ``standby: <host> pid <pid> is active`` (the first one), and
after the warm-up, the active is SIGKILLed. The takeover time runs from the kill until the
standby's ``/healthz`` says ``active: ok``; the second time until ticker rows that the new
active received after the kill are in the database. For the next repetition a new standby is
started beside the new active. Without a server, or when the processes do not reach those
states in time, the phase is skipped and ``takeover_skipped`` says why.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.pgphase import fresh_database, server_dsn, unreachable
from bench.procs import Firehose, watcher_command, watcher_env

__all__ = ["KEYS", "takeover"]

#: The keys this phase writes (null when skipped).
KEYS = (
    "takeover_s",
    "takeover_s_median",
    "takeover_s_max",
    "takeover_rows_s",
    "takeover_rows_s_median",
    "takeover_rows_s_max",
    "takeover_skipped",
)
#: Seconds for a pair to reach "one active, one standby naming it".
STARTUP_TIMEOUT = 30.0
#: Seconds a takeover may take before the phase is given up (the issue's bar is 10 s).
TAKEOVER_TIMEOUT = 30.0
#: Seconds between two polls of ``/healthz`` or of the database while timing.
POLL = 0.02
STOP_TIMEOUT = 30.0
HEALTHY = "active: ok"


@dataclass
class Instance:
    """One ``watcher start`` process with its metrics port and its folder (watcher.out/.err)."""

    proc: asyncio.subprocess.Process
    port: int
    folder: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def failure(self) -> str | None:
        """Why it exited (its last stderr lines), or None while it runs."""
        if self.proc.returncode is None:
            return None
        lines = (self.folder / "watcher.err").read_text(errors="replace").strip().splitlines()
        return f"watcher start exited with {self.proc.returncode}: {' / '.join(lines[-2:])}"


class Pair:
    """``watcher start`` processes on one PostgreSQL database; started, timed and stopped."""

    def __init__(self, folder: Path, env: dict[str, str], trades: Path, dsn: str) -> None:
        self.folder, self.env, self.trades, self.dsn = folder, env, trades, dsn
        self.instances: list[Instance] = []
        self.started = 0
        self.http = httpx.AsyncClient(timeout=2.0)

    async def start(self) -> Instance:
        self.started += 1
        folder = self.folder / f"w{self.started}"
        folder.mkdir()
        port = _free_port()
        command = watcher_command(self.trades, self.dsn, "--metrics-port", str(port))
        with (folder / "watcher.out").open("wb") as out, (folder / "watcher.err").open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *command, cwd=folder, env=self.env, stdout=out, stderr=err
            )
        self.instances.append(Instance(proc, port, folder))
        return self.instances[-1]

    async def health(self, instance: Instance) -> str:
        """The body of its ``/healthz`` when it answers 200, else ``""``."""
        try:
            answer = await self.http.get(f"http://127.0.0.1:{instance.port}/healthz")
        except httpx.HTTPError:
            return ""
        return answer.text.strip() if answer.status_code == 200 else ""

    async def roles(self, a: Instance, b: Instance) -> tuple[Instance, Instance]:
        """``(active, standby)`` once one is active and the other stands by naming it."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            for active, standby in ((a, b), (b, a)):
                if await self.health(active) == HEALTHY:
                    named = rf"standby: \S+ pid {active.pid} is active"
                    if re.fullmatch(named, await self.health(standby)):
                        return active, standby
            for instance in (a, b):
                if (reason := instance.failure()) is not None:
                    raise RuntimeError(reason)
            await asyncio.sleep(5 * POLL)
        raise RuntimeError(f"no active and standby pair within {STARTUP_TIMEOUT:g} s")

    async def kill(self, active: Instance, standby: Instance, conn: Any) -> tuple[float, float]:
        """SIGKILL ``active``; seconds until ``standby`` is healthy and until its rows are in."""
        since_id = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM tickers"))
        killed_ms = time.time_ns() // 1_000_000
        killed = time.perf_counter()
        active.proc.kill()
        waits = [
            asyncio.ensure_future(self._until_healthy(standby)),
            asyncio.ensure_future(_until_rows(conn, since_id, killed_ms)),
        ]
        try:
            async with asyncio.timeout(TAKEOVER_TIMEOUT):
                healthy, stored = await asyncio.gather(*waits)
        finally:  # one failed or timed out: the other stops too (conn is free again)
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        await active.proc.wait()
        return healthy - killed, stored - killed

    async def close(self) -> None:
        """SIGTERM whoever still runs (SIGKILL after STOP_TIMEOUT)."""
        await self.http.aclose()
        for instance in self.instances:
            if instance.proc.returncode is None:
                instance.proc.send_signal(signal.SIGTERM)
        for instance in self.instances:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await instance.proc.wait()
            except TimeoutError:
                instance.proc.kill()
                await instance.proc.wait()

    async def _until_healthy(self, instance: Instance) -> float:
        while await self.health(instance) != HEALTHY:
            if (reason := instance.failure()) is not None:
                raise RuntimeError(reason)
            await asyncio.sleep(POLL)
        return time.perf_counter()


async def takeover(plan: Any, firehose: Firehose) -> dict[str, Any]:
    """Time ``plan.takeovers`` SIGKILL takeovers of ``watcher start`` on PostgreSQL."""
    import asyncpg

    from watcher.store.pg.dsn import mask_dsn

    admin = server_dsn()
    reason = await unreachable(admin)
    if reason is not None:
        return _skipped(f"no PostgreSQL server at {mask_dsn(admin)}: {reason}")
    folder = plan.folder / "takeover"
    folder.mkdir()
    env, trades = watcher_env(firehose, plan.keys), plan.trades(firehose.markets)
    async with fresh_database(admin) as dsn:
        pair = Pair(folder, env, trades, dsn)
        conn = await asyncpg.connect(dsn)
        try:
            times = await _repeat(plan, pair, conn)
        except (RuntimeError, asyncpg.PostgresError) as exc:
            return _skipped(str(exc)[-300:])
        except TimeoutError:
            return _skipped(f"the standby did not take over within {TAKEOVER_TIMEOUT:g} s")
        finally:
            await conn.close()
            await pair.close()
    return _summary(times)


async def _repeat(plan: Any, pair: Pair, conn: Any) -> list[tuple[float, float]]:
    """Start a pair, then kill the active ``plan.takeovers`` times (a new standby each time)."""
    first, second = await asyncio.gather(pair.start(), pair.start())
    active, standby = await pair.roles(first, second)
    times = []
    for repetition in range(plan.takeovers):
        if repetition:  # the survivor is active; a new standby joins it
            active, standby = await pair.roles(standby, await pair.start())
        await asyncio.sleep(plan.warmup)
        times.append(await pair.kill(active, standby, conn))
    return times


async def _until_rows(conn: Any, since_id: int, after_ms: int) -> float:
    """When a ticker row received after ``after_ms`` (so not by the killed one) is stored."""
    query = "SELECT EXISTS (SELECT 1 FROM tickers WHERE id > $1 AND received_ms > $2)"
    while not await conn.fetchval(query, since_id, after_ms):  # noqa: ASYNC110 - another process
        await asyncio.sleep(POLL)
    return time.perf_counter()


def _summary(times: list[tuple[float, float]]) -> dict[str, Any]:
    healthy = [round(h, 3) for h, _ in times]
    stored = [round(s, 3) for _, s in times]
    return {
        "takeover_s": healthy,
        "takeover_s_median": statistics.median(healthy),
        "takeover_s_max": max(healthy),
        "takeover_rows_s": stored,
        "takeover_rows_s_median": statistics.median(stored),
        "takeover_rows_s_max": max(stored),
        "takeover_skipped": None,
    }


def _skipped(reason: str) -> dict[str, Any]:
    print(f" skipped: {reason}", end="", file=sys.stderr, flush=True)
    return {**dict.fromkeys(KEYS), "takeover_skipped": reason}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
