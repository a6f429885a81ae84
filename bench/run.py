"""``make bench``: measure watcher against its baselines on this machine; print and save.

    python -m bench.run [--quick] [--duration S] [--markets N] [--positions P] [--output PATH]

``BENCH_DURATION`` (seconds per measured phase) is read when ``--duration`` is not given.
Results go to the terminal as a table and to ``bench/results/latest.json`` (keys documented in
``bench/README.md``). The benchmark reports; it never fails on speed (CI runs ``--quick`` only to
keep it working).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bench import pgphase, phases, takeover, webphase
from bench.procs import ROOT, Firehose, Keys

__all__ = ["TARGETS", "main", "run"]

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"
#: The issue's first targets (printed beside the results; never enforced).
TARGETS = {
    "persisted_msgs_per_s": 50_000,
    "watcher_vs_naive": 1.0,
    "p99_decision_ms": 1.0,
    "peak_rss_mb_1000": 50.0,
    "resubscribe_slack_ms": 50.0,
    "takeover_s_max": 10.0,
}
MIN_BACKOFF_MS = 500.0  # KalshiWebSocketClient's default min_reconnect_delay
#: Market counts whose peak RSS is reported (``peak_rss_mb_N``; null when not measured).
RSS_SIZES = (10, 1000, 10_000)


def _machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": os.getloadavg()[0],
        "commit": commit or None,
    }


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Run every phase in order and return the results dictionary."""
    plan = phases.Plan(
        folder=folder,
        keys=Keys.create(folder),
        duration=args.duration,
        warmup=args.warmup,
        markets=args.markets,
        positions=args.positions,
        rss_markets=() if args.quick else (10, 10_000),
        drops=1 if args.quick else 3,
        takeovers=1 if args.quick else 3,
    )
    results = _header(plan, quick=args.quick)
    keys, markets, rate = plan.keys, plan.markets, phases.LATENCY_RATE
    async with Firehose(markets, keys) as full:
        await _step("bare receive ceiling", results, phases.bare(plan, full))
        await _step("naive baseline", results, phases.naive(plan, full))
        await _step("watcher start", results, _throughput(plan, full))
        await _step("watcher start, PostgreSQL", results, pgphase.postgres_throughput(plan, full))
        await _step("takeover, PostgreSQL", results, takeover.takeover(plan, full))
    async with Firehose(markets, keys, rate=rate) as paced:
        await _step("tick→decision latency", results, phases.decision_latency(plan, paced))
        await _step("resubscribe", results, phases.resubscribe(plan, paced))
    async with Firehose(markets, keys, rate=webphase.WEB_RATE) as slow:
        await _step("dashboard open", results, webphase.dashboard_cost(plan, slow))
    async with Firehose(
        markets, keys, rate=rate, probe=phases.PROBE_INTERVAL, probe_markets=plan.positions
    ) as probing:
        await _step("tick→alert latency", results, phases.alert_latency(plan, probing))
    for size in plan.rss_markets:
        async with Firehose(size, keys) as sized:
            await _step(f"peak RSS, {size:,} markets", results, _throughput(plan, sized))
    results["watcher_vs_bare"] = _ratio(results["persisted_msgs_per_s"], results["bare_msgs_per_s"])
    results["watcher_vs_naive"] = _ratio(
        results["persisted_msgs_per_s"], results["naive_msgs_per_s"]
    )
    results["pg_vs_sqlite"] = _ratio(
        results["pg_persisted_msgs_per_s"], results["persisted_msgs_per_s"]
    )
    return results


def _header(plan: phases.Plan, *, quick: bool) -> dict[str, Any]:
    """The machine and the settings of the run; measured keys start as null."""
    return {
        **_machine(),
        "quick": quick,
        "duration_s": plan.duration,
        "warmup_s": plan.warmup,
        "markets": plan.markets,
        "positions": plan.positions,
        "latency_rate_msgs_per_s": phases.LATENCY_RATE,
        "min_backoff_ms": MIN_BACKOFF_MS,
        "web_rate_msgs_per_s": webphase.WEB_RATE,
        **{f"peak_rss_mb_{size}": None for size in RSS_SIZES},
        **{f"persisted_msgs_per_s_{size}": None for size in RSS_SIZES},
    }


async def _step(name: str, results: dict[str, Any], phase: Awaitable[dict[str, Any]]) -> None:
    started = time.perf_counter()
    print(f"  {name} ...", end="", file=sys.stderr, flush=True)
    results.update(await phase)
    print(f" {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


async def _throughput(plan: phases.Plan, firehose: Firehose) -> dict[str, Any]:
    found = await phases.watcher_throughput(plan, firehose)
    size = firehose.markets
    out: dict[str, Any] = {}
    if size in RSS_SIZES:
        out[f"peak_rss_mb_{size}"] = found["peak_rss_mb"]
        out[f"persisted_msgs_per_s_{size}"] = found["persisted_msgs_per_s"]
    if size == plan.markets:
        out |= {
            "persisted_msgs_per_s": found["persisted_msgs_per_s"],
            "peak_rss_mb": found["peak_rss_mb"],
            "every_message_persisted": found["every_message_persisted"],
            "watcher_exit_code": found["exit_code"],
        }
    return out


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def table(r: dict[str, Any]) -> str:
    """The results as the terminal table (also pasted into the README)."""
    title = (
        f"watcher bench · {r['date']} · {r['cores']} cores · Python {r['python']} · "
        f"{r['markets']:,} markets, {r['positions']} watched · {r['duration_s']:g} s per phase"
        f" · load {r['load_avg_1m']:.2f}"
    )
    rows = _throughput_rows(r) + _latency_rows(r) + _memory_rows(r)
    width = max(len(row[0]) for row in rows)
    lines = [title, ""]
    lines += [f"{a:<{width}}  {b:>26}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


def _throughput_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rate, naive = r["persisted_msgs_per_s"], r["naive_msgs_per_s"]
    ratios = f"{_fmt(r['watcher_vs_bare'], '×', 2)} / {_fmt(r['watcher_vs_naive'], '×', 2)}"
    return [
        ("bare receive ceiling (websockets, count only)", _fmt(r["bare_msgs_per_s"], " msg/s"), ""),
        ("naive baseline (deflate, json.loads, commit/1000)", _fmt(naive, " msg/s"), ""),
        (
            "watcher start, persisted (counted in the DB)",
            _fmt(rate, " msg/s"),
            f"≥ 50,000: {_met(rate >= TARGETS['persisted_msgs_per_s'])}",
        ),
        (
            "  ratio to bare / to naive",
            ratios,
            f"≥ 1.0× naive: {_met((r['watcher_vs_naive'] or 0) >= TARGETS['watcher_vs_naive'])}",
        ),
        ("  every message received was persisted", str(r["every_message_persisted"]).lower(), ""),
        *_postgres_rows(r),
    ]


def _postgres_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    if r["pg_skipped"]:
        reason = r["pg_skipped"] if len(r["pg_skipped"]) <= 90 else r["pg_skipped"][:89] + "…"
        return [("watcher start --db postgresql://, persisted", "skipped", reason)]
    complete = str(r["pg_every_message_persisted"]).lower()
    return [
        (
            "watcher start --db postgresql://, persisted",
            _fmt(r["pg_persisted_msgs_per_s"], " msg/s"),
            f"{_fmt(r['pg_vs_sqlite'], '×', 2)} SQLite's",
        ),
        ("  every message received was persisted", complete, ""),
    ]


def _latency_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    resub_max = r.get("resubscribe_max_ms")
    limit = MIN_BACKOFF_MS + TARGETS["resubscribe_slack_ms"]
    p99 = r["p99_decision_ms"]
    return [
        (
            f"tick→rule decision at {r['latency_rate_msgs_per_s']:,} msg/s p50/p99/max",
            f"{_fmt(r['p50_decision_ms'], '', 3)} / {_fmt(p99, '', 3)} / "
            f"{_fmt(r['max_decision_ms'], ' ms', 2)}",
            f"p99 ≤ 1 ms: {_met((p99 or 1e9) <= TARGETS['p99_decision_ms'])}",
        ),
        (
            "tick→alert delivered (local HTTP) p50/p99",
            f"{_fmt(r['p50_alert_ms'], '', 1)} / {_fmt(r['p99_alert_ms'], ' ms', 1)}",
            "",
        ),
        (
            "server back → resubscribed (max of drops)",
            _fmt(resub_max, " ms"),
            f"≤ {limit:.0f} ms: {_met((resub_max or 1e9) <= limit)}",
        ),
        *_takeover_rows(r),
    ]


def _takeover_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    name = f"standby takeover after SIGKILL ({len(r['takeover_s'] or ())}×) median/max"
    if r["takeover_skipped"]:
        skipped = r["takeover_skipped"]
        reason = skipped if len(skipped) <= 90 else skipped[:89] + "…"
        return [("standby takeover after SIGKILL", "skipped", reason)]
    worst = r["takeover_s_max"]
    return [
        (
            name,
            f"{_fmt(r['takeover_s_median'], '', 2)} / {_fmt(worst, ' s', 2)}",
            f"≤ 10 s: {_met(worst <= TARGETS['takeover_s_max'])}",
        ),
        (
            "  until its new ticker rows are stored",
            f"{_fmt(r['takeover_rows_s_median'], '', 2)} / "
            f"{_fmt(r['takeover_rows_s_max'], ' s', 2)}",
            "",
        ),
    ]


def _memory_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rss = r.get("peak_rss_mb_1000")
    return [
        (
            "peak RSS at full speed, 10 / 1,000 / 10,000 markets",
            f"{_fmt(r.get('peak_rss_mb_10'))} / {_fmt(rss)} / "
            f"{_fmt(r.get('peak_rss_mb_10000'), ' MB')}",
            f"≤ 50 MB at 1,000: {_met((rss or 1e9) <= TARGETS['peak_rss_mb_1000'])}",
        ),
        (
            f"peak RSS at {r['latency_rate_msgs_per_s']:,} msg/s (keeping up)",
            _fmt(r.get("peak_rss_mb_paced"), " MB"),
            "",
        ),
        *_dashboard_rows(r),
    ]


def _dashboard_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Without and with ``--web`` and an SSE client, at the dashboard phase's rate."""
    rate, p99, growth = r["web_rate_msgs_per_s"], r["web_p99_decision_ms"], r["web_rss_growth_mb"]
    return [
        (
            f"tick→decision p99 at {rate:,} msg/s, no web / dashboard open",
            f"{_fmt(r['noweb_p99_decision_ms'], '', 3)} / {_fmt(p99, ' ms', 3)}",
            f"≤ 1 ms open: {_met((p99 or 1e9) <= TARGETS['p99_decision_ms'])}",
        ),
        (
            f"peak RSS at {rate:,} msg/s, no web / dashboard open",
            f"{_fmt(r['noweb_rss_mb'])} / {_fmt(r['web_rss_mb'], ' MB')}",
            f"growth ≤ 8 MB: {_met((growth if growth is not None else 1e9) <= 8.0)}",
        ),
    ]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds (CI)")
    parser.add_argument("--duration", type=float, help="seconds per phase [BENCH_DURATION]")
    parser.add_argument("--markets", type=int, help="firehose markets [1000; --quick: 200]")
    parser.add_argument("--positions", type=int, help="watched markets [100; --quick: 20]")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.duration is None:
        env = os.environ.get("BENCH_DURATION")
        args.duration = float(env) if env else (0.3 if args.quick else 10.0)
    if args.markets is None:
        args.markets = 200 if args.quick else 1000
    if args.positions is None:
        args.positions = 20 if args.quick else 100
    args.warmup = 0.3 if args.quick else 2.0
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON. Always exit 0 unless it crashed."""
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="watcher-bench-") as tmp:
        folder = Path(tmp)
        handler = logging.FileHandler(folder / "inproc.log")
        logging.getLogger("watcher").addHandler(handler)
        logging.getLogger("watcher").setLevel(logging.INFO)
        logging.getLogger("watcher").propagate = False
        try:
            results = asyncio.run(run(args, folder))
        finally:
            handler.close()
    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
