"""The measured phases of ``make bench``; each returns a dict of results (see README keys).

Phases run one after the other against a firehose process they are given (each phase opens its
own connections and closes them before the next). Rates are taken over a window that starts
after a warm-up: the watcher's start (REST metadata for the watched markets, the first alerts)
is not part of the steady state being measured.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.clients import Window, bare_receive, naive_client
from bench.frames import market_tickers
from bench.inproc import AlertSink, Probe, alert_rules, running_service
from bench.procs import ROOT, Firehose, Keys, Watcher, peak_rss_mb, persisted_rows, write_trades

__all__ = [
    "LATENCY_RATE",
    "Plan",
    "alert_latency",
    "bare",
    "decision_latency",
    "naive",
    "percentiles",
    "resubscribe",
    "watcher_throughput",
]

#: The fixed feed rate of the latency phases, in frames per second.
LATENCY_RATE = 5000
#: Seconds between probe trades in the alert phase (20 alerts/s over the watched markets).
PROBE_INTERVAL = 0.05
DEFAULT_RULES = ROOT / "rules" / "rules.yaml"


@dataclass(frozen=True)
class Plan:
    """What to run: sizes and durations (seconds) shared by the phases."""

    folder: Path
    keys: Keys
    duration: float
    warmup: float
    markets: int
    positions: int
    rss_markets: tuple[int, ...]
    drops: int
    takeovers: int = 3

    def trades(self, markets: int) -> Path:
        """trades.json watching ``min(positions, markets)`` of the firehose's markets."""
        count = min(self.positions, markets)
        return write_trades(self.folder / f"trades-{count}.json", count)


def percentiles(samples_ns: list[int]) -> dict[str, float | None]:
    """p50, p99 and max in milliseconds (``None`` without samples)."""
    if not samples_ns:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {"p50": pick(0.50), "p99": pick(0.99), "max": ordered[-1] / 1e6}


async def bare(plan: Plan, firehose: Firehose) -> dict[str, Any]:
    """(1) The receive ceiling: websockets only counting frames."""
    window = Window(plan.warmup, plan.duration)
    return {"bare_msgs_per_s": await bare_receive(firehose.ws_url, plan.keys.signer, window)}


async def naive(plan: Plan, firehose: Firehose) -> dict[str, Any]:
    """(2) The naive baseline: compression, json.loads, commit per 1,000."""
    window = Window(plan.warmup, plan.duration)
    db = plan.folder / "naive.db"
    return {"naive_msgs_per_s": await naive_client(firehose.ws_url, plan.keys.signer, db, window)}


async def watcher_throughput(plan: Plan, firehose: Firehose) -> dict[str, Any]:
    """(3) ``watcher start`` at full speed: rows persisted per second, counted from the DB."""
    markets = firehose.markets
    folder = plan.folder / f"watcher-{markets}"
    folder.mkdir()
    watcher = Watcher(folder, firehose, plan.keys, trades=plan.trades(markets))
    async with watcher.running():
        await asyncio.sleep(plan.warmup)
        t0, n0 = time.perf_counter(), persisted_rows(watcher.db)
        await asyncio.sleep(plan.duration)
        t1, n1 = time.perf_counter(), persisted_rows(watcher.db)
        rss = peak_rss_mb(watcher.pid)
    summary = watcher.summary
    complete = bool(summary) and (summary["ticks_stored"], summary["trades_stored"]) == (
        summary["ticker"],
        summary["trade"],
    )
    return {
        "persisted_msgs_per_s": (n1 - n0) / (t1 - t0),
        "peak_rss_mb": rss,
        "every_message_persisted": complete,
        "exit_code": watcher.returncode,
        "summary": summary,
    }


async def record_window(plan: Plan, probe: Probe, service: Any) -> None:
    """Let the service warm up, then record ``plan.duration`` seconds of probe timings."""
    with probe.timing(service):
        await asyncio.sleep(plan.warmup)
        probe.recording = True
        await asyncio.sleep(plan.duration)
        probe.recording = False


async def decision_latency(plan: Plan, firehose: Firehose) -> dict[str, Any]:
    """Tick→rule-decision latency of the real Service at a fixed 5,000 frames/s."""
    probe = Probe()
    folder = plan.folder / "latency"
    folder.mkdir()
    async with running_service(
        folder,
        firehose,
        plan.keys,
        trades=plan.trades(firehose.markets),
        rules=DEFAULT_RULES,
        trace=probe.trace,
    ) as service:
        await record_window(plan, probe, service)
    stats = percentiles(probe.decisions_ns)
    return {
        "p50_decision_ms": stats["p50"],
        "p99_decision_ms": stats["p99"],
        "max_decision_ms": stats["max"],
        "decisions": len(probe.decisions_ns),
    }


async def alert_latency(plan: Plan, firehose: Firehose) -> dict[str, Any]:
    """Tick→alert delivered to a local HTTP target; the firehose sends probe trades."""
    probe = Probe()
    folder = plan.folder / "alerts"
    folder.mkdir()
    async with AlertSink(probe) as sink:
        rules = folder / "rules.yaml"
        watched = market_tickers(min(plan.positions, firehose.markets))
        rules.write_text(alert_rules(sink.url, watched))
        async with running_service(
            folder,
            firehose,
            plan.keys,
            trades=plan.trades(firehose.markets),
            rules=rules,
            trace=probe.trace,
        ) as service:
            await record_window(plan, probe, service)
    stats = percentiles(sink.latencies_ns)
    return {
        "p50_alert_ms": stats["p50"],
        "p99_alert_ms": stats["p99"],
        "alerts_delivered": len(sink.latencies_ns),
    }


async def resubscribe(plan: Plan, firehose: Firehose) -> dict[str, Any]:
    """Drop every connection (the server is back at once) and time until resubscribed.

    ``watcher start`` runs at 5,000 frames/s; each drop is followed by a healthy session, so
    the client's backoff starts again from its minimum (0.5 s, jittered down to 0.25 s). Its
    peak RSS here is the memory of a watcher that keeps up (queues nearly empty).
    """
    folder = plan.folder / "resubscribe"
    folder.mkdir()
    times_ms: list[float] = []
    watcher = Watcher(folder, firehose, plan.keys, trades=plan.trades(firehose.markets))
    async with watcher.running():
        await asyncio.sleep(plan.warmup)
        for drop in range(plan.drops):
            if drop:
                await asyncio.sleep(1.0)  # a healthy session resets the backoff
            mark = len(firehose.events)
            firehose.drop()
            dropped = await firehose.wait_for("dropped", after=mark)
            subscribed = await _subscribed_again(firehose, mark)
            times_ms.append((subscribed["t"] - dropped["t"]) * 1000)
        rss = peak_rss_mb(watcher.pid)
    return {
        "peak_rss_mb_paced": rss,
        "resubscribe_ms": times_ms,
        "resubscribe_max_ms": max(times_ms) if times_ms else None,
        "resubscribe_median_ms": statistics.median(times_ms) if times_ms else None,
    }


async def _subscribed_again(firehose: Firehose, after: int) -> dict[str, Any]:
    while True:
        event = await firehose.wait_for("subscribed", after=after)
        if {"ticker", "trade"} <= set(event.get("channels", ())):
            return event
        after = firehose.events.index(event) + 1
