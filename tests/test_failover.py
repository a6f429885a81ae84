"""Two `watcher start` processes on one PostgreSQL database: one active, one standing by; the
standby takes over within 10 s when the active is SIGKILLed, catches up on the trades made in
the gap, resumes its deliveries, and every alert reaches the target exactly once.

Real processes, a real PostgreSQL (a fresh database from ``postgres_db``), the simulator with
a signing key, and a local HTTP ``json://`` target.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.kalshi.sim.exchange import SimulatedExchange

from .support import (
    KEY_ID,
    RULES,
    T1,
    TRADES,
    HttpRecorder,
    free_port,
    poll,
    spawn,
    watcher_env,
    write_key,
)

#: The longest a takeover may take (the issue's bar), seconds.
TAKEOVER_LIMIT = 10.0


@dataclass
class Instance:
    """One `watcher start` process, its log lines (read as they come) and its metrics port."""

    proc: asyncio.subprocess.Process
    port: int
    lines: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def health(self) -> tuple[int, str]:
        try:
            async with httpx.AsyncClient(timeout=1.0) as http:
                answer = await http.get(f"http://127.0.0.1:{self.port}/healthz")
        except httpx.HTTPError:
            return 0, ""
        return answer.status_code, answer.text.strip()


async def start(workdir: Path, env: dict[str, str], dsn: str) -> Instance:
    port = free_port()
    proc = await spawn(workdir, env, "--metrics-port", str(port), db=dsn)  # type: ignore[arg-type]
    instance = Instance(proc, port)

    async def read(stream: asyncio.StreamReader | None) -> None:
        while stream is not None and (line := await stream.readline()):
            instance.lines.append(line.decode(errors="replace").rstrip())

    instance.readers = [
        asyncio.create_task(read(proc.stdout)),
        asyncio.create_task(read(proc.stderr)),
    ]
    return instance


async def stop(instance: Instance, sig: int) -> int:
    if instance.proc.returncode is None:
        instance.proc.send_signal(sig)
    code = await asyncio.wait_for(instance.proc.wait(), 15)
    await asyncio.gather(*instance.readers, return_exceptions=True)
    return code


async def query(dsn: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def scalar(dsn: str, sql: str) -> int:
    return int((await query(dsn, sql))[0][0] or 0)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "trades.json").write_text(json.dumps(TRADES))
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path


@pytest.fixture
async def sim() -> AsyncIterator[tuple[SimulatedExchange, ed25519.Ed25519PrivateKey]]:
    key = ed25519.Ed25519PrivateKey.generate()
    async with SimulatedExchange(
        public_keys={KEY_ID: key.public_key()}, tick_interval=0.05, seed=7
    ) as exchange:
        yield exchange, key


async def test_the_standby_takes_over_within_10_s_and_every_alert_is_delivered_once(
    workdir, sim, postgres_db
):
    """SIGKILL the active: the standby (200 on /healthz, naming the active) takes over in
    < 10 s, streams again, backfills the gap's trade, and resumes the delivery the dead one
    left retrying; each alert reaches the target exactly once and the tables stay whole."""
    exchange, key = sim
    dsn = postgres_db
    async with HttpRecorder(statuses=[500, 500]) as hook:  # the first sends fail: left retrying
        env = watcher_env(exchange, write_key(workdir / "key.pem", key), HOOK_URL=hook.url)
        first = await start(workdir, env, dsn)
        second: Instance | None = None
        try:
            await poll(lambda: "active: " in first.log, within=15)
            second = await start(workdir, env, dsn)
            who = rf"standby: \S+ pid {first.proc.pid} is active"
            await poll(lambda: re.search(who, second.log) is not None, within=15)
            status, body = await second.health()
            assert status == 200 and re.fullmatch(who, body), body
            assert (await first.health())[1] == "active: ok"
            # An alert fired, its first send failed (retrying), and ticks are being stored.
            await poll(lambda: len(hook.requests) >= 1, within=15)
            open_sql = "select count(*) from alert_deliveries where status <> 'retrying'"
            await _wait_for(lambda: scalar(dsn, open_sql), lambda n: n == 0)
            ticks = "select count(*) from tickers"
            await _wait_for(lambda: scalar(dsn, ticks), lambda n: n > 0)
            ticks_before = await scalar(dsn, ticks)

            first.proc.kill()
            killed = asyncio.get_running_loop().time()
            await first.proc.wait()
            gap_trade = exchange.push_trade(T1, yes_price="0.42", count="7")  # nobody streams
            await _wait_for(second.health, lambda h: h == (200, "active: ok"), TAKEOVER_LIMIT + 5)
            took = asyncio.get_running_loop().time() - killed  # streaming again
            assert took < TAKEOVER_LIMIT, second.log
            assert re.search(rf"active: took over from \S+ pid {first.proc.pid} after", second.log)
            print(f"takeover (standby streaming again) {took:.2f} s after the SIGKILL")

            await _wait_for(lambda: scalar(dsn, ticks), lambda n: n >= ticks_before + 20)
            late = f"select late from trades where trade_id = '{gap_trade}'"
            await _wait_for(lambda: query(dsn, late), lambda rows: rows == [(1,)] or rows)
            assert [tuple(r) for r in await query(dsn, late)] == [(1,)]
            done = "select count(*) from alert_deliveries where status <> 'delivered'"
            await _wait_for(lambda: scalar(dsn, done), lambda n: n == 0, within=20)
            await asyncio.sleep(1.0)  # anything sent twice would arrive meanwhile
        finally:
            await stop(first, signal.SIGKILL)
            if second is not None:
                code = await stop(second, signal.SIGTERM)
        assert code == 0, second.log
    await _assert_each_alert_delivered_once(dsn, hook)
    await _assert_integrity(dsn)


async def _wait_for(read: Any, ok: Any, within: float = 15) -> None:
    async with asyncio.timeout(within):
        while not ok(await read()):  # noqa: ASYNC110 - the condition is in another process
            await asyncio.sleep(0.1)


async def _assert_each_alert_delivered_once(dsn: str, hook: HttpRecorder) -> None:
    alerts = await query(dsn, "select idempotency_key, title, status from alerts")
    assert alerts and {status for _, _, status in alerts} == {"delivered"}
    for key, title, _ in alerts:
        sent = [
            r
            for r in hook.delivered
            if title in r.payload.get("title", "") + r.payload.get("message", "")
        ]
        assert len(sent) == 1, (key, [r.payload for r in hook.requests])


async def _assert_integrity(dsn: str) -> None:
    """Unique keys, no orphan deliveries, no lease left behind, no duplicate trade, constraints
    valid."""
    assert await scalar(dsn, "select count(*) - count(distinct idempotency_key) from alerts") == 0
    orphans = (
        "select count(*) from alert_deliveries d left join alerts a on a.id = d.alert_id"
        " where a.id is null"
    )
    assert await scalar(dsn, orphans) == 0
    leased = "select count(*) from alert_deliveries where leased_by is not null"
    assert await scalar(dsn, leased) == 0
    assert await scalar(dsn, "select count(*) - count(distinct (trade_id, ts_ms)) from trades") == 0
    assert await scalar(dsn, "select count(*) from pg_constraint where not convalidated") == 0


async def test_an_active_that_loses_its_lock_steps_down_and_a_sigterm_hands_over(
    workdir, sim, postgres_db
):
    """The server ends the active's lock session (what a network cut looks like from there):
    the active stops acting and goes back to standby, and the other one takes over. A SIGTERM'd
    active then hands over at once: the lock is released, not left to time out."""
    exchange, key = sim
    dsn = postgres_db
    async with HttpRecorder() as hook:
        env = watcher_env(exchange, write_key(workdir / "key.pem", key), HOOK_URL=hook.url)
        first = await start(workdir, env, dsn)
        second: Instance | None = None
        try:
            await poll(lambda: "active: " in first.log, within=15)
            second = await start(workdir, env, dsn)
            await poll(lambda: "standby: " in second.log, within=15)
            lock_session = (
                "select pg_terminate_backend(pid) from pg_stat_activity"
                f" where application_name like 'watcher % pid {first.proc.pid}'"
            )
            assert await query(dsn, lock_session)
            await _wait_for(second.health, lambda h: h == (200, "active: ok"), TAKEOVER_LIMIT + 5)
            stepped_down = rf"standby: \S+ pid {second.proc.pid} is active"
            await _wait_for(first.health, lambda h: re.fullmatch(stepped_down, h[1]) is not None)

            handed = asyncio.get_running_loop().time()
            assert await stop(second, signal.SIGTERM) == 0, second.log
            await _wait_for(first.health, lambda h: h == (200, "active: ok"), TAKEOVER_LIMIT)
            took = asyncio.get_running_loop().time() - handed
            print(f"hand-over after SIGTERM: {took:.2f} s")
        finally:
            if second is not None:
                await stop(second, signal.SIGKILL)
            code = await stop(first, signal.SIGTERM)
        assert code == 0, first.log
    await _assert_integrity(dsn)  # a SIGTERM'd instance gave its unsent claims back
