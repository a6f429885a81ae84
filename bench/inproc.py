"""In-process runs of the real :class:`~watcher.app.Service` for the latency measurements.

``watcher start`` builds the same ``Service``; running it in the benchmark's process lets a probe
time events without adding anything to the hot path:

* the client's ``trace`` hook stamps each event with the ``perf_counter_ns()`` at which its frame
  arrived (before decoding);
* a wrapper around ``Pipeline.handle`` notes which event is being handled, and a wrapper around
  the rule engine's ``evaluate`` (as the pipeline calls it) records the time when the decision
  for a tick is made: tick→rule-decision latency;
* a local HTTP server is the notify target (Apprise ``json://``, one path per watched market):
  the time each alert request arrives minus the arrival of the probe trade that caused it is
  tick→alert-delivered latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import watcher.rules.session
from bench.frames import BIG_TRADE_CONTRACTS
from bench.procs import Firehose, Keys
from watcher.app import Endpoint, Service
from watcher.domain.trades_file import load_positions
from watcher.kalshi import messages as m
from watcher.rules import load_rules
from watcher.rules.engine import TickEvent
from watcher.settings import settings_from_env

__all__ = ["AlertSink", "Probe", "alert_rules", "running_service"]


def alert_rules(sink_url: str, tickers: list[str]) -> str:
    """rules.yaml for the alert run: one probe rule and one target per watched market.

    The sender sends at most one message per target per coalescing window (2 s) and merges
    what comes meanwhile; with a target per market (each probed every few seconds) every alert
    is its own message, so the latency measured is the delivery path's, not the window's.
    """
    lines = ["version: 1", "timezone: UTC", "notify:"]
    lines += [f"  t{i}: {sink_url}{i}" for i in range(len(tickers))]
    lines += ["rules:"]
    lines += [
        f"  - {{name: probe {i}, type: trade_size, min_contracts: 50000,"
        f" markets: [{ticker}], notify: [t{i}]}}"
        for i, ticker in enumerate(tickers)
    ]
    return "\n".join(lines) + "\n"


_MARKET = re.compile(r"KXBENCH-26DEC-M\d{5}")


class Probe:
    """Arrival stamps of ticks and probe trades, and the decision latencies while recording."""

    def __init__(self) -> None:
        self.recording = False
        self.decisions_ns: list[int] = []
        self.probe_arrivals: dict[str, int] = {}  # market → arrival of its latest probe trade
        self._stamps: dict[int, int] = {}  # id(tick) → arrival, until the pipeline takes it
        self._current: int | None = None

    def trace(self, event: Any, received_ns: int) -> None:
        """The client's ``trace`` hook."""
        kind = type(event)
        if kind is m.Ticker:
            self._stamps[id(event)] = received_ns
        elif kind is m.Trade and event.msg.count_fp >= BIG_TRADE_CONTRACTS:
            self.probe_arrivals[event.msg.market_ticker] = received_ns

    @contextlib.contextmanager
    def timing(self, service: Service) -> Any:
        """Wrap the service's ``Pipeline.handle_nowait`` and the engine's ``evaluate``."""
        pipeline = service.pipeline
        handle = pipeline.handle_nowait
        evaluate = getattr(watcher.rules.session, "evaluate")  # noqa: B009 (not re-exported)

        def timed_handle(event: Any) -> Any:
            self._current = self._stamps.pop(id(event), None)
            return handle(event)

        def timed_evaluate(*args: Any) -> Any:
            decision = evaluate(*args)
            if self._current is not None and isinstance(args[3], TickEvent):
                if self.recording:
                    self.decisions_ns.append(time.perf_counter_ns() - self._current)
                self._current = None
            return decision

        pipeline.handle_nowait = timed_handle  # type: ignore[method-assign]
        setattr(watcher.rules.session, "evaluate", timed_evaluate)  # noqa: B010 (as above)
        try:
            yield self
        finally:
            setattr(watcher.rules.session, "evaluate", evaluate)  # noqa: B010


class AlertSink:
    """A local HTTP endpoint that records when each alert arrives (an Apprise ``json://``)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.latencies_ns: list[int] = []
        self.requests = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"json://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"

    async def __aenter__(self) -> AlertSink:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            arrived = time.perf_counter_ns()
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            body = await reader.readexactly(int(length.group(1)) if length else 0)
            self.requests += 1
            for market in set(_MARKET.findall(json.dumps(json.loads(body or b"{}")))):
                sent = self.probe.probe_arrivals.pop(market, None)
                if sent is not None and self.probe.recording:
                    self.latencies_ns.append(arrived - sent)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def running_service(
    folder: Path,
    firehose: Firehose,
    keys: Keys,
    *,
    trades: Path,
    rules: Path,
    trace: Callable[[Any, int], None],
) -> AsyncIterator[Service]:
    """Run a Service (as ``watcher start`` builds it) until the block ends."""
    settings = settings_from_env(
        trades=str(trades), rules=str(rules), db=str(folder / "inproc.db"), environ={}
    )
    service = Service(
        settings,
        portfolio=load_positions(settings.trades_path),
        rules=load_rules(settings.rules_path, env=settings.env),
        endpoint=Endpoint(firehose.ws_url, firehose.api_url, keys.signer),
        client_options={"trace": trace},
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await task
