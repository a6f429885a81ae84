"""The dashboard served by uvicorn: beside a running service (live ticks and alerts over the
event stream, "retry now" reaching the sender), as `watcher web`, under SIGTERM, and the
command line's refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.cli import main
from watcher.faces import FaceHost
from watcher.faces.commands import serve_read_only
from watcher.faces.web import serve_web
from watcher.kalshi.sim.exchange import SimulatedExchange

from .support import T1, WAIT, HttpRecorder, count, env_without_kalshi, finish, service_on, spawn
from .test_web import host_for, record_history, write_files

#: The live tests' rules: the one target is the local recorder, or the console when HOOK_URL
#: is not set (nothing leaves the machine).
LIVE_RULES = """\
version: 1
timezone: UTC
notify:
  hook: ${HOOK_URL:-}
defaults:
  notify: [hook]
  cooldown: 1h
rules:
  - {name: wide or tight, type: spread, max_cents: 10}
"""

#: One server-sent event: (name, id or None, data).
Event = tuple[str, str | None, Any]


async def read_events(
    lines: AsyncIterator[str], until: Callable[[list[Event]], bool], within: float = WAIT
) -> list[Event]:
    """Parse an event stream's lines until ``until(events)`` holds (or the stream ends)."""
    events: list[Event] = []
    name, event_id, data = "message", None, []
    async with asyncio.timeout(within):
        async for line in lines:
            if line.startswith(":"):
                continue
            if line:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "id":
                    event_id = value
                elif field == "data":
                    data.append(value)
                continue
            if data:
                events.append((name, event_id, json.loads("\n".join(data))))
            name, event_id, data = "message", None, []
            if until(events):
                return events
    return events


def ticks_of(events: list[Event], ticker: str) -> list[dict[str, Any]]:
    return [data for name, _, data in events if name == "tick" and data["ticker"] == ticker]


async def test_a_live_dashboard_streams_ticks_and_alerts_and_retries_a_failed_delivery(
    tmp_path: Path,
) -> None:
    """Beside the running service: a reconnecting tab gets the alerts after its
    Last-Event-ID, a quote pinned at the exchange reaches the stream as a coalesced tick with
    the position's P&L, the alert it fires arrives too, the API marks positions at the live
    view, and "retry now" on a failed delivery is sent by the service's sender."""
    write_files(tmp_path, LIVE_RULES)
    failed_id, _ = await record_history(tmp_path / "w.db")
    key = ed25519.Ed25519PrivateKey.generate()
    async with (
        HttpRecorder() as hook,
        SimulatedExchange(public_keys={"k": key.public_key()}) as sim,
    ):
        svc = service_on(tmp_path, sim, key, environ={"HOOK_URL": hook.url}, web="127.0.0.1:0")
        host = FaceHost(svc.settings, svc.pipeline.rules, svc)
        stop = asyncio.Event()
        run = asyncio.create_task(svc.run(stop))
        try:
            async with contextlib.AsyncExitStack() as stack:
                web = await serve_web(stack, host)
                await sim.wait_subscribed("ticker", T1, timeout=WAIT)
                async with httpx.AsyncClient(base_url=web.url, timeout=WAIT) as client:
                    await stream_ticks_and_alerts(client, sim, failed_id)
                    await retry_now(client, hook, failed_id)
        finally:
            stop.set()
            await asyncio.wait_for(run, WAIT)


async def stream_ticks_and_alerts(
    client: httpx.AsyncClient, sim: SimulatedExchange, failed_id: int
) -> None:
    headers = {"Last-Event-ID": str(failed_id - 1)}
    async with client.stream("GET", "/events", headers=headers) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        sim.set_quote(T1, yes_bid="0.4100", yes_ask="0.4400", last="0.4300")  # spread 3¢ fires

        def done(events: list[Event]) -> bool:
            new_alerts = [d for n, _, d in events if n == "alert" and d["id"] > failed_id + 1]
            pinned = [t for t in ticks_of(events, T1) if t["yes_bid"] == "0.41"]
            return bool(new_alerts and pinned)

        events = await read_events(response.aiter_lines(), done)
    hello = events[0]
    assert hello[0] == "hello" and hello[1] == str(failed_id - 1)
    resent = [(eid, d["market"]) for name, eid, d in events if name == "alert"][:2]
    assert resent == [(str(failed_id), T1), (str(failed_id + 1), "KXFED-26DEC-H0")]
    tick = next(t for t in ticks_of(events, T1) if t["yes_bid"] == "0.41")
    assert tick["text"] == {"bid": "41¢", "ask": "44¢", "last": "43¢"}
    assert tick["positions"] == [
        {"index": 1, "bid": "41¢", "ask": "44¢", "last": "43¢", "mark": "43¢", "pnl": "+$0.30",
         "sign": "gain"}
    ]  # fmt: skip
    positions = (await client.get("/api/positions")).json()
    assert (positions[0]["mark"], positions[0]["pnl"]) == ("0.43", "0.30")
    health = (await client.get("/api/health")).json()
    assert (health["role"], health["state"], health["mode"]) == ("single", "connected", "websocket")


async def retry_now(client: httpx.AsyncClient, hook: HttpRecorder, failed_id: int) -> None:
    page = (await client.get("/alerts?status=failed")).text
    assert f'action="/alerts/{failed_id}/retry"' in page
    csrf = client.cookies["watcher_csrf"]
    answer = await client.post(
        f"/alerts/{failed_id}/retry", data={"target": "hook", "csrf": csrf, "next": "/alerts"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/alerts"

    async def delivered() -> bool:
        found = (await client.get("/api/alerts?status=delivered")).json()
        return any(a["id"] == failed_id for a in found)

    async with asyncio.timeout(WAIT):
        while not await delivered():  # noqa: ASYNC110 - the sender runs in the service
            await asyncio.sleep(0.05)
    assert any("KXTEST-1" in str(r.payload) for r in hook.delivered)
    again = await client.post(f"/alerts/{failed_id}/retry", data={"target": "hook", "csrf": csrf})
    assert again.status_code == 409  # delivered now: nothing to put back


async def test_sigterm_with_a_dashboard_open_still_flushes_and_exits_0(tmp_path: Path) -> None:
    """`watcher start --simulate --web 127.0.0.1:0` prints the dashboard's URL; a tab's event
    stream gets live ticks; SIGTERM with the stream open stops the service first (store
    flushed, summary printed), ends the stream, and exits 0."""
    write_files(tmp_path, LIVE_RULES)
    proc = await spawn(tmp_path, env_without_kalshi(), "--simulate", "--web", "127.0.0.1:0")
    try:
        url = await dashboard_url(proc)
        async with httpx.AsyncClient(base_url=url, timeout=WAIT) as client:
            first = await client.get("/")  # the service may not have created the database yet
            assert first.status_code in (200, 503)
            await until_ok(client, "/")
            async with client.stream("GET", "/events") as response:
                lines = response.aiter_lines()
                await read_events(lines, lambda events: bool(ticks_of(events, T1)))
                proc.send_signal(signal.SIGTERM)
                await read_events(lines, lambda events: False)  # the server ends it
        out, err = await finish(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert out.startswith("stopped:")
    assert count(tmp_path / "w.db", "SELECT count(*) FROM tickers") > 0


async def until_ok(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """GET ``path`` until it answers 200 (connection refused and 503 are retried)."""
    async with asyncio.timeout(WAIT):
        while True:
            with contextlib.suppress(httpx.ConnectError):
                answer = await client.get(path)
                if answer.status_code == 200:
                    return answer
            await asyncio.sleep(0.05)


async def dashboard_url(proc: asyncio.subprocess.Process) -> str:
    """The URL from the ``dashboard: http://...`` line on the process's stderr."""
    assert proc.stderr is not None
    seen = []
    async with asyncio.timeout(WAIT):
        while line := (await proc.stderr.readline()).decode():
            seen.append(line)
            found = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", line)
            if found:
                return found.group(1)
    raise AssertionError("no dashboard line in:\n" + "".join(seen))


async def test_a_busy_port_falls_back_to_a_free_one_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The requested port is taken: the dashboard binds another and says both."""
    caplog.set_level(logging.INFO, logger="watcher.web")
    write_files(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        host = host_for(tmp_path, tmp_path / "w.db", WATCHER_WEB=f"127.0.0.1:{busy}")
        async with contextlib.AsyncExitStack() as stack:
            web = await serve_web(stack, host)
    port = int(web.url.rsplit(":", 1)[1].strip("/"))
    assert port != busy
    assert f"dashboard port {busy} on 127.0.0.1 is busy: using port {port} instead" in caplog.text
    assert f"dashboard: http://127.0.0.1:{port}/" in caplog.text


async def test_watcher_web_serves_the_database_read_only(tmp_path: Path) -> None:
    """`watcher web` serves the same pages from the database alone until stopped."""
    write_files(tmp_path)
    await record_history(tmp_path / "w.db")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = host_for(tmp_path, tmp_path / "w.db", WATCHER_WEB=f"127.0.0.1:{port}").settings
    stop = asyncio.Event()
    served = asyncio.create_task(serve_read_only(settings, stop=stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
            answer = await until_ok(client, "/api/health")
            assert answer.json()["role"] == "read-only"
            page = (await client.get("/alerts")).text
            assert "retry now" not in page and "hook: failed" in page
    finally:
        stop.set()
        await asyncio.wait_for(served, WAIT)


def test_the_command_line_refuses_a_public_bind_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`watcher start --web 0.0.0.0:PORT` and `watcher web 0.0.0.0:PORT` without
    WATCHER_WEB_TOKEN exit 2 naming the variable; `watcher web` on a missing database
    exits 4, on an address this machine does not have 2."""
    write_files(tmp_path)
    monkeypatch.delenv("WATCHER_WEB_TOKEN", raising=False)
    monkeypatch.delenv("WATCHER_WEB", raising=False)
    files = ["--trades", str(tmp_path / "trades.json"), "--rules", str(tmp_path / "rules.yaml")]
    for argv in (["start", "--web", "0.0.0.0:8780"], ["web", "0.0.0.0:8780"]):
        assert main([*argv, *files, "--db", str(tmp_path / "w.db")]) == 2
        assert "WATCHER_WEB_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("HOOK_URL", "json://127.0.0.1:9/hook")
    assert main(["web", *files, "--db", str(tmp_path / "absent.db"), "127.0.0.1:0"]) == 4
    assert "absent.db" in capsys.readouterr().err
    public = ["web", *files, "--db", str(tmp_path / "w.db"), "192.0.2.1:8780"]
    monkeypatch.setenv("WATCHER_WEB_TOKEN", "t")
    asyncio.run(record_history(tmp_path / "w.db"))
    assert main(public) == 2  # a documentation address: not on this machine
    assert "cannot serve the dashboard on 192.0.2.1:8780" in capsys.readouterr().err
