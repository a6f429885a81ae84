"""Bounds of a soak run, and its report as a table (for people) and JSON (for CI)."""

from __future__ import annotations

import inspect
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from soak.runner import Lifetime, SoakResult
from watcher.store.writer import StoreWriter

__all__ = ["FLUSH_INTERVAL", "Bound", "as_json", "check", "render"]

RSS_GROWTH_MB = 10.0
TASK_SLACK = 2  # median tasks of the last third may exceed the first third's by this much
FD_SLACK = 4
#: The store writer commits at the latest this long after the first unwritten row.
FLUSH_INTERVAL = float(inspect.signature(StoreWriter).parameters["flush_interval"].default)
KILL_SLACK = 1.0  # seconds of ticks in flight at SIGKILL besides the flush interval


@dataclass(frozen=True)
class Bound:
    """One checked bound: what it is, its limit, the value seen, and whether it held."""

    name: str
    limit: str
    value: str
    ok: bool


def _steady(result: SoakResult, key: str) -> list[float]:
    """Values of ``key`` sampled in the `faults` lifetime after the warm-up."""
    return [
        float(s[key])
        for s in result.samples
        if s["lifetime"] == "faults" and s["t"] >= result.warmup and s.get(key) is not None
    ]


def _flat(values: list[float], slack: int, name: str, what: str) -> Bound:
    third = max(1, len(values) // 3)
    if len(values) < 3:
        return Bound(name, f"+{slack}", "too few samples", False)
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    value = f"{first:g} → {last:g} {what} (median of first/last third)"
    return Bound(name, f"≤ +{slack}", value, last - first <= slack)


def _rss(result: SoakResult) -> Bound:
    values = _steady(result, "rss_kb")
    if not values:
        return Bound("RSS growth after warm-up", f"< {RSS_GROWTH_MB:g} MB", "no samples", False)
    growth = (max(values) - values[0]) / 1024
    value = f"{growth:.1f} MB ({values[0] / 1024:.1f} → {values[-1] / 1024:.1f} MB)"
    return Bound("RSS growth after warm-up", f"< {RSS_GROWTH_MB:g} MB", value, growth < 10)


def _lifetimes_ok(lifetimes: list[Lifetime]) -> Bound:
    expected = {"SIGTERM": 0, "SIGKILL": -9}
    bad = [
        f"{life.name} {life.outcome} (exit {life.returncode})"
        for life in lifetimes
        if life.outcome != "stopped" or life.returncode != expected[life.ended_by]
    ]
    return Bound("no crash, clean stops", "exit 0 on SIGTERM", "; ".join(bad) or "ok", not bad)


def _lost(lifetimes: list[Lifetime]) -> Bound:
    """Ticks received but not stored, in lifetimes ended by SIGTERM."""
    clean = [life for life in lifetimes if life.ended_by == "SIGTERM"]
    parts = [
        f"{life.name}: {life.ticks_received} received, {life.ticks_stored} stored" for life in clean
    ]
    ok = all(
        life.ticks_received is not None and life.ticks_received == life.ticks_stored
        for life in clean
    )
    return Bound("ticks lost outside SIGKILL windows", "0", "; ".join(parts), ok)


def _killed(lifetimes: list[Lifetime]) -> list[Bound]:
    bounds = []
    for life in lifetimes:
        if life.ended_by != "SIGKILL":
            continue
        rate = life.ticks_sent / life.seconds if life.seconds else 0.0
        allowed = math.ceil(rate * (FLUSH_INTERVAL + KILL_SLACK))
        lost = life.ticks_sent - life.ticks_stored
        value = f"{lost} of {life.ticks_sent} ({rate:.0f} ticks/s)"
        bounds.append(
            Bound("ticks lost to SIGKILL", f"≤ {allowed} (one flush)", value, lost <= allowed)
        )
        bounds.append(
            Bound(
                "integrity_check after SIGKILL", "ok", str(life.integrity), life.integrity == "ok"
            )
        )
    return bounds


def _alerts(result: SoakResult) -> Bound:
    a = result.alerts
    settled = a.get("delivered", 0) + a.get("console", 0) + a.get("suppressed", 0)
    value = f"{a.get('fired', 0)} fired, {a.get('delivered', 0)} delivered"
    open_ = a.get("pending", 0) + a.get("partial", 0) + a.get("failed", 0)
    ok = a.get("fired", 0) > 0 and settled == a.get("fired", 0) and open_ == 0
    return Bound("alerts delivered", "all fired", value, ok)


def check(result: SoakResult) -> list[Bound]:
    """Every bound of the issue, evaluated on ``result``."""
    return [
        _lifetimes_ok(result.lifetimes),
        _rss(result),
        _flat(_steady(result, "tasks"), TASK_SLACK, "asyncio tasks flat", "tasks"),
        _flat(_steady(result, "fds"), FD_SLACK, "open fds flat", "fds"),
        _lost(result.lifetimes),
        *_killed(result.lifetimes),
        _alerts(result),
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return [line.format(*header), line.format(*("-" * w for w in widths))] + [
        line.format(*row) for row in rows
    ]


def _series(result: SoakResult, rows: int = 16) -> list[str]:
    step = max(1, math.ceil(len(result.samples) / rows))
    picked = result.samples[::step] + result.samples[-1:]
    body = [
        [
            f"{s['t']:.0f}",
            s["lifetime"],
            "-" if s.get("rss_kb") is None else f"{s['rss_kb'] / 1024:.1f}",
            str(s.get("tasks", "-")),
            str(s.get("fds", "-")),
            str(s["ticks_sent"]),
            str(s["ticks_stored"]),
            str(s["alerts_fired"]),
            str(s["alerts_delivered"]),
        ]
        for s in picked
    ]
    header = ["t s", "run", "RSS MB", "tasks", "fds", "ticks sent", "stored", "alerts", "delivered"]
    return _table(header, body)


def render(result: SoakResult, bounds: list[Bound]) -> str:
    """The human report: the time series, the lifetimes, the faults and the bounds."""
    lines = [
        f"soak: {result.minutes:g} min, seed {result.seed}, warm-up {result.warmup:g} s",
        f"faults drawn from: {', '.join(result.fault_kinds)}",
        "",
    ]
    lines += [*_series(result), ""]
    lives = [
        [life.name, life.ended_by, f"{life.seconds:g}", str(life.ticks_sent),
         str(life.ticks_received if life.ticks_received is not None else "-"),
         str(life.ticks_stored), f"{life.outcome} ({life.returncode})"]
        for life in result.lifetimes
    ]  # fmt: skip
    header = ["run", "ended by", "s", "sent", "received", "stored", "exit"]
    lines += [*_table(header, lives), ""]
    faults = Counter(f["fault"] for f in result.faults)
    lines.append("faults: " + ", ".join(f"{name} ×{n}" for name, n in sorted(faults.items())))
    lines.append("alerts: " + ", ".join(f"{k} {v}" for k, v in result.alerts.items()))
    lines.append("trades: " + ", ".join(f"{k} {v}" for k, v in result.trades.items()))
    lines.append("")
    rows = [[b.name, b.limit, b.value, "PASS" if b.ok else "FAIL"] for b in bounds]
    lines += _table(["bound", "limit", "seen", "result"], rows)
    return "\n".join(lines)


def as_json(result: SoakResult, bounds: list[Bound]) -> dict[str, Any]:
    """The machine report."""
    return {
        **result.as_json(),
        "bounds": [b.__dict__ for b in bounds],
        "ok": all(b.ok for b in bounds),
    }
