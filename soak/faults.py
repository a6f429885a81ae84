"""The faults a soak injects at random, taken from the fault matrix in RELIABILITY.md.

Each fault is a coroutine function taking a :class:`Context` and returning a short description
for the report. Faults that break a config file schedule their own repair, so that the run
keeps a usable configuration; :meth:`Context.settle` waits for the repairs.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from soak.hook import Hook
from watcher.kalshi.sim.exchange import SimulatedExchange

__all__ = ["FAULTS", "Context", "Fault", "live_sid"]

#: How long a broken config file stays broken before the soak repairs it, in seconds.
REPAIR_AFTER = 1.5
BAD_FRAMES = (
    b'{"type": "ticker", "msg": {',
    b"[1, 2, 3]",
    b'{"type": "ticker", "sid": 1, "msg": {"market_ticker": "X"}}',
    b'{"type": "ticker_v3", "sid": 1, "msg": {}}',
    b"",
)
BAD_UTF8 = (
    b'{"type": "ticker", "msg": "\xff\xfe"}',
    b'{"type": "tick\xffer", "sid": 1, "msg": {}}',  # in the tag the typed decoder reads
)


@dataclass
class Context:
    """What faults act on."""

    sim: SimulatedExchange
    hook: Hook
    rules_path: Path
    trades_path: Path
    rng: random.Random
    repairs: set[asyncio.Task[None]] = field(default_factory=set)
    serial: itertools.count[int] = field(default_factory=itertools.count)

    async def settle(self) -> None:
        """Wait until every broken file has been repaired."""
        if self.repairs:
            await asyncio.gather(*self.repairs)

    def break_file(self, path: Path, text: str) -> None:
        good = path.read_text()
        _replace(path, text)
        task = asyncio.create_task(self._repair(path, good))
        self.repairs.add(task)
        task.add_done_callback(self.repairs.discard)

    async def _repair(self, path: Path, good: str) -> None:
        await asyncio.sleep(REPAIR_AFTER)
        _replace(path, good)


Fault = Callable[[Context], Awaitable[str]]


def _replace(path: Path, text: str) -> None:
    """Write like an editor does: a temporary file, renamed over the original."""
    tmp = path.with_name(f".{path.name}.soak")
    tmp.write_text(text)
    tmp.replace(path)


def live_sid(sim: SimulatedExchange, channel: str) -> int | None:
    """The sid of an open ``channel`` subscription (the simulator has no public accessor)."""
    for session in getattr(sim, "_sessions", ()):
        for sid, sub in getattr(session, "subs", {}).items():
            if sub.channel == channel:
                return int(sid)
    return None


async def drop(ctx: Context) -> str:
    ctx.sim.drop()
    return "connection dropped (no close frame)"


async def accept_then_close(ctx: Context) -> str:
    ctx.sim.accept_then_close(2)
    ctx.sim.drop()
    return "dropped, then 2 handshakes accepted and closed at once"


async def silence(ctx: Context) -> str:
    ctx.sim.silence(None)
    return "connection silent (no frames, no pongs) until the client gives up on it"


async def trade_gap(ctx: Context) -> str:
    ctx.sim.seq_gap("trade")
    return "one trade skipped (seq gap)"


async def malformed(ctx: Context) -> str:
    payload = ctx.rng.choice(BAD_FRAMES)
    await ctx.sim.malformed(payload)
    return f"malformed frame {payload[:30]!r}"


async def invalid_utf8(ctx: Context) -> str:
    payload = ctx.rng.choice(BAD_UTF8)
    await ctx.sim.malformed(payload)
    return f"text frame with invalid UTF-8 {payload[:30]!r}"


async def terminal_error(ctx: Context) -> str:
    sid = live_sid(ctx.sim, "ticker")
    if sid is None:
        return "terminal error skipped: no ticker subscription open"
    code = ctx.rng.choice((10, 25))
    await ctx.sim.error_frame(code, sid)
    return f"error {code} on the ticker subscription (sid {sid})"


async def rate_limited(ctx: Context) -> str:
    ctx.sim.reject_handshakes(429, 1)
    ctx.sim.drop()
    return "dropped, then the next handshake answered HTTP 429"


async def notifier_down(ctx: Context) -> str:
    seconds = round(ctx.rng.uniform(3.0, 8.0), 1)
    ctx.hook.fail_for(seconds)
    await rules_garbage(ctx)  # an alert to deliver during the outage
    return f"notifier answers HTTP 500 for {seconds} s, while a config alert is due"


async def rules_garbage(ctx: Context) -> str:
    n = next(ctx.serial)
    ctx.break_file(ctx.rules_path, f"version: 1\nrules: [{{name: broken {n}\n")
    return f"rules.yaml half-written (edit #{n}), repaired after {REPAIR_AFTER} s"


async def trades_garbage(ctx: Context) -> str:
    n = next(ctx.serial)
    ctx.break_file(ctx.trades_path, f'{{"trades": [{{"ticker": "BROKEN-{n}", ')
    return f"trades.json half-written (edit #{n}), repaired after {REPAIR_AFTER} s"


FAULTS: dict[str, Fault] = {
    "drop": drop,
    "accept-then-close": accept_then_close,
    "silence": silence,
    "trade-gap": trade_gap,
    "malformed": malformed,
    "invalid-utf8": invalid_utf8,
    "terminal-error": terminal_error,
    "rate-limited": rate_limited,
    "notifier-down": notifier_down,
    "rules-garbage": rules_garbage,
    "trades-garbage": trades_garbage,
}
