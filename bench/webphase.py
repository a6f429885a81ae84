"""The dashboard's cost (issue 11): the same feed at 1,000 frames/s with and without ``--web``
and one connected SSE client (a browser tab's ``/events`` stream, read in another process).

- ``web_p99_decision_ms`` beside ``noweb_p99_decision_ms``: tick→rule decision of the
  in-process Service (as in the latency phase), the second with the dashboard served from the
  same event loop and a client reading ``/events``.
- ``web_rss_mb`` beside ``noweb_rss_mb``: peak RSS (VmHWM) of ``watcher start`` as a subprocess,
  without and with ``--web`` and the SSE client; ``web_rss_growth_mb`` is the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

from bench.inproc import Probe, running_service
from bench.phases import DEFAULT_RULES, Plan, percentiles, record_window
from bench.procs import Firehose, Watcher, clean_env, peak_rss_mb

__all__ = ["WEB_RATE", "dashboard_cost"]

#: The feed rate of the dashboard phase, in frames per second (the issue's figure).
WEB_RATE = 1000

# A browser tab's live stream: read /events until killed, discarding what arrives.
_SSE_CLIENT = """
import sys, httpx
with httpx.stream("GET", sys.argv[1], timeout=None) as response:
    for _ in response.iter_bytes():
        pass
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _sse_client(url: str) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SSE_CLIENT, url, env=clean_env(), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield
    finally:
        proc.terminate()
        await proc.wait()


async def _latency(plan: Plan, firehose: Firehose, *, web: bool) -> float | None:
    """p99 tick→decision (ms) of the in-process Service, with or without the dashboard."""
    from watcher.faces import FaceHost, open_faces

    probe = Probe()
    folder = plan.folder / ("latency-web" if web else "latency-noweb")
    folder.mkdir()
    trades = plan.trades(firehose.markets)
    async with (
        running_service(
            folder, firehose, plan.keys, trades=trades, rules=DEFAULT_RULES, trace=probe.trace
        ) as service,
        contextlib.AsyncExitStack() as stack,
    ):
        if web:
            port = _free_port()
            settings = dataclasses.replace(service.settings, web=("127.0.0.1", port))
            await open_faces(stack, FaceHost(settings, service.pipeline.rules, service))
            await stack.enter_async_context(_sse_client(f"http://127.0.0.1:{port}/events"))
        await record_window(plan, probe, service)
    return percentiles(probe.decisions_ns)["p99"]


async def _rss(plan: Plan, firehose: Firehose, *, web: bool) -> float | None:
    """Peak RSS (MB) of ``watcher start`` after the warm-up and the measured window."""
    folder = plan.folder / ("rss-web" if web else "rss-noweb")
    folder.mkdir()
    port = _free_port()
    extra = ("--web", f"127.0.0.1:{port}") if web else ()
    trades = plan.trades(firehose.markets)
    watcher = Watcher(folder, firehose, plan.keys, trades=trades, extra=extra)
    async with watcher.running(), contextlib.AsyncExitStack() as stack:
        if web:
            await stack.enter_async_context(_sse_client(f"http://127.0.0.1:{port}/events"))
        await asyncio.sleep(plan.warmup + plan.duration)
        return peak_rss_mb(watcher.pid)


async def dashboard_cost(plan: Plan, firehose: Firehose) -> dict[str, Any]:
    """Decision latency and RSS at ``WEB_RATE`` without and with the dashboard open."""
    noweb_p99 = await _latency(plan, firehose, web=False)
    web_p99 = await _latency(plan, firehose, web=True)
    noweb_rss = await _rss(plan, firehose, web=False)
    web_rss = await _rss(plan, firehose, web=True)
    growth = None if noweb_rss is None or web_rss is None else web_rss - noweb_rss
    return {
        "web_rate_msgs_per_s": WEB_RATE,
        "noweb_p99_decision_ms": noweb_p99,
        "web_p99_decision_ms": web_p99,
        "noweb_rss_mb": noweb_rss,
        "web_rss_mb": web_rss,
        "web_rss_growth_mb": growth,
    }
