"""The soak run: one simulator and one webhook here, the service under test in a child process.

The run has three lifetimes of the child:

1. ``faults`` — most of the time: a random fault from :data:`soak.faults.FAULTS` every few
   seconds; ended by SIGTERM. Resource bounds are checked on its samples after the warm-up.
2. ``killed`` — a short quiet run ended by SIGKILL mid-stream (then ``integrity_check``).
3. ``final`` — a restart on the same database; the outbox is drained, then SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from soak.faults import FAULTS, Context
from soak.hook import Hook
from watcher.kalshi.sim.exchange import SimulatedExchange

__all__ = ["KEY_ID", "MARKETS", "Lifetime", "SoakResult", "run_soak"]

KEY_ID = "soak-key"
MARKETS = tuple(f"KXSOAK-26DEC-T{n}" for n in range(6))
RULES = """\
version: 1
timezone: UTC
notify:
  hook: ${SOAK_HOOK_URL}
defaults:
  notify: [hook]
  cooldown: 20s
rules:
  - {name: tight spread, type: spread, max_cents: 2, rearm_cents: 1}
  - {name: big trade, type: trade_size, min_contracts: 90}
  - {name: feed stale, type: stale, after: 2s}
"""
SAMPLE_INTERVAL = 2.0
FAULT_GAP = (3.0, 8.0)  # seconds between two faults, uniformly drawn
FIRST_FAULT = 5.0
RESTART_SECONDS = 12.0  # length of the `killed` and `final` lifetimes
STOP_LIMIT = 30.0  # a child that does not exit this long after SIGTERM is killed (a failure)
DRAIN_LIMIT = 90.0  # how long the final lifetime waits for the outbox to empty
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Lifetime:
    """One run of the child process and what it did to the ticks."""

    name: str
    ended_by: str
    seconds: float
    ticks_sent: int  # ticker frames the simulator wrote to the socket meanwhile
    ticks_stored: int  # rows added to `tickers` meanwhile
    ticks_received: int | None  # as counted by the child at a clean stop
    returncode: int | None
    outcome: str  # "stopped" (by the signal), "crashed" (exited before it), "hung" (killed)
    stop_seconds: float | None  # from the signal to the exit
    integrity: str | None = None
    summary: str = ""


@dataclass
class SoakResult:
    """Everything the report needs."""

    minutes: float
    seed: int
    warmup: float
    fault_kinds: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    lifetimes: list[Lifetime] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=dict)
    trades: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class _Run:
    """The state shared by the lifetimes of one soak."""

    def __init__(
        self,
        workdir: Path,
        sim: SimulatedExchange,
        hook: Hook,
        rng: random.Random,
        faults: list[str],
    ) -> None:
        self.workdir = workdir
        self.sim = sim
        self.hook = hook
        self.rng = rng
        self.db = workdir / "watcher.db"
        self.ctx = Context(sim, hook, workdir / "rules.yaml", workdir / "trades.json", rng)
        self.started = time.monotonic()
        self.env = _child_env(workdir, sim, hook)
        self.faults = faults
        self._bag: list[str] = []

    # Counters

    def sent(self) -> int:
        return int(self.sim.stats.frames_sent["ticker"])

    def query(self, sql: str) -> int:
        if not self.db.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as conn:
            try:
                return int(conn.execute(sql).fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    def stored(self) -> int:
        return self.query("select count(*) from tickers")

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    # A lifetime

    async def lifetime(
        self, name: str, seconds: float, end: signal.Signals, result: SoakResult
    ) -> Lifetime:
        metrics = self.workdir / f"metrics-{name}.jsonl"
        sent, stored = self.sent(), self.stored()
        began = time.monotonic()
        with (self.workdir / "child.log").open("a") as log:
            proc = await self._spawn(metrics, log)
            await self._watch(proc, metrics, name, began + seconds, result)
            if name == "final":
                await self._drain()
            outcome, stop_seconds = await self._stop(proc, end)
        await self._quiet()
        final = _last_line(metrics)
        return Lifetime(
            name=name,
            ended_by=end.name,
            seconds=round(time.monotonic() - began, 1),
            ticks_sent=self.sent() - sent,
            ticks_stored=self.stored() - stored,
            ticks_received=final.get("received") if final.get("final") else None,
            returncode=proc.returncode,
            outcome=outcome,
            stop_seconds=stop_seconds,
            integrity=self._integrity() if end is signal.SIGKILL else None,
            summary=str(final.get("summary", "")),
        )

    async def _spawn(self, metrics: Path, log: IO[str]) -> asyncio.subprocess.Process:
        env = {**self.env, "SOAK_METRICS": str(metrics)}
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "soak.child", cwd=ROOT, env=env, stdout=log, stderr=log
        )

    async def _watch(
        self,
        proc: asyncio.subprocess.Process,
        metrics: Path,
        name: str,
        deadline: float,
        result: SoakResult,
    ) -> None:
        """Sample every SAMPLE_INTERVAL until the deadline; inject faults in `faults`."""
        next_fault = time.monotonic() + FIRST_FAULT
        while time.monotonic() < deadline and proc.returncode is None:
            await asyncio.sleep(min(SAMPLE_INTERVAL, max(0.0, deadline - time.monotonic())))
            result.samples.append({"t": self.elapsed(), "lifetime": name, **self._record(metrics)})
            if name == "faults" and time.monotonic() >= next_fault:
                fault = self._next_fault()
                detail = await FAULTS[fault](self.ctx)
                result.faults.append({"t": self.elapsed(), "fault": fault, "detail": detail})
                next_fault = time.monotonic() + self.rng.uniform(*FAULT_GAP)
        await self.ctx.settle()

    def _next_fault(self) -> str:
        """Faults in random order, each kind once before any repeats (a shuffled bag)."""
        if not self._bag:
            self._bag = list(self.faults)
            self.rng.shuffle(self._bag)
        return self._bag.pop()

    def _record(self, metrics: Path) -> dict[str, Any]:
        child = _last_line(metrics)
        return {
            "rss_kb": child.get("rss_kb"),
            "tasks": child.get("tasks"),
            "fds": child.get("fds"),
            "threads": child.get("threads"),
            "reconnects": child.get("reconnects"),
            "ticks_sent": self.sent(),
            "ticks_stored": self.stored(),
            "alerts_fired": self.query("select count(*) from alerts"),
            "alerts_delivered": self.query(
                "select count(*) from alerts where status = 'delivered'"
            ),
        }

    async def _drain(self) -> None:
        """Wait until no delivery is pending or retrying (or DRAIN_LIMIT passes)."""
        sql = "select count(*) from alert_deliveries where status in ('pending', 'retrying')"
        limit = time.monotonic() + DRAIN_LIMIT
        while self.query(sql) and time.monotonic() < limit:  # noqa: ASYNC110 - the DB
            await asyncio.sleep(0.5)

    async def _stop(
        self, proc: asyncio.subprocess.Process, sig: signal.Signals
    ) -> tuple[str, float | None]:
        if proc.returncode is not None:
            return "crashed", None
        began = time.monotonic()
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), STOP_LIMIT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return "hung", None
        return "stopped", round(time.monotonic() - began, 2)

    async def _quiet(self) -> None:
        """Wait until the simulator stops writing ticks (the child's connection is gone)."""
        last, limit = -1, time.monotonic() + 5.0
        while self.sent() != last and time.monotonic() < limit:
            last = self.sent()
            await asyncio.sleep(0.5)

    def _integrity(self) -> str:
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))


async def run_soak(
    minutes: float, *, seed: int, workdir: Path, faults: list[str] | None = None
) -> SoakResult:
    """Run the soak for ``minutes`` in ``workdir`` and return what happened.

    Args:
        minutes: total length, restarts included.
        seed: seeds the choice and timing of faults and the simulator's markets.
        workdir: where the database, the config files and the child's log go.
        faults: names from :data:`FAULTS` to draw from (default: all of them).
    """
    rng = random.Random(seed)
    total = minutes * 60
    faulty = max(30.0, total - 2 * RESTART_SECONDS)
    chosen = sorted(faults if faults is not None else FAULTS)
    warmup = round(max(20.0, faulty / 4), 1)
    result = SoakResult(minutes=minutes, seed=seed, warmup=warmup, fault_kinds=chosen)
    key = _prepare(workdir)
    async with (
        SimulatedExchange(public_keys={KEY_ID: key.public_key()}, tick_interval=0.05, seed=seed)
        as sim,
        Hook() as hook,
    ):  # fmt: skip
        run = _Run(workdir, sim, hook, rng, chosen)
        for name, seconds, end in (
            ("faults", faulty, signal.SIGTERM),
            ("killed", RESTART_SECONDS, signal.SIGKILL),
            ("final", RESTART_SECONDS, signal.SIGTERM),
        ):
            result.lifetimes.append(await run.lifetime(name, seconds, end, result))
        result.alerts = _alert_counts(run, hook)
        result.trades = {
            "sent": int(sim.stats.frames_sent["trade"]),
            "stored": run.query("select count(*) from trades"),
            "stored_late": run.query("select count(*) from trades where late = 1"),
        }
    return result


def _alert_counts(run: _Run, hook: Hook) -> dict[str, int]:
    counts = {
        status: run.query(f"select count(*) from alerts where status = '{status}'")
        for status in ("delivered", "pending", "partial", "failed", "suppressed", "console")
    }
    return {
        "fired": run.query("select count(*) from alerts"),
        **counts,
        "messages_received": hook.received,
        "alerts_in_messages": hook.alerts,
        "messages_refused": hook.refused,
    }


def _prepare(workdir: Path) -> ed25519.Ed25519PrivateKey:
    """Write trades.json, rules.yaml and a private key (0600); return the key."""
    trades = [
        {"ticker": ticker, "side": "YES" if n % 2 else "NO", "entry_price": 40, "contracts": 10}
        for n, ticker in enumerate(MARKETS)
    ]
    (workdir / "trades.json").write_text(json.dumps({"trades": trades}, indent=2))
    (workdir / "rules.yaml").write_text(RULES)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = workdir / "key.pem"
    path.write_bytes(pem)
    path.chmod(0o600)
    return key


def _child_env(workdir: Path, sim: SimulatedExchange, hook: Hook) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "WATCHER_"))}
    return {
        **env,
        "KALSHI_API_KEY_ID": KEY_ID,
        "KALSHI_PRIVATE_KEY_PATH": str(workdir / "key.pem"),
        "KALSHI_WS_URL": sim.ws_url,
        "KALSHI_API_URL": sim.api_url,
        "WATCHER_TRADES": str(workdir / "trades.json"),
        "WATCHER_RULES": str(workdir / "rules.yaml"),
        "WATCHER_DB": str(workdir / "watcher.db"),
        "SOAK_HOOK_URL": hook.url,
        "SOAK_SAMPLE_INTERVAL": str(SAMPLE_INTERVAL),
    }


def _last_line(path: Path) -> dict[str, Any]:
    """The last complete JSON line of a metrics file (empty before the first)."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4096))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return {}
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return {}
