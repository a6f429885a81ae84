"""Mutes and pauses on the dashboard: the overview's Silenced section, the health strip, the
API and the live ``health`` event show them; the mute, unmute, pause and resume buttons are
POSTs with CSRF that go through ``Controls`` and are stored (checked through the read model);
and a mute made on the dashboard holds back the running service's next alert of that rule.

Over ASGI on real SQLite files (and PostgreSQL where it matters); the live parts (the event
stream, a running service) as in test_web_live.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.domain.controls import ControlState
from watcher.faces import FaceHost
from watcher.faces.web import serve_web
from watcher.faces.web.security import FLASH_COOKIE
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.service.controls import Controls, when_text
from watcher.store import open_backend
from watcher.store.records import AlertRecord

from .support import T1, T2, WAIT, service_on
from .test_web import (
    client,
    client_for,
    database,
    host_for,
    record_history,
    sqlite_host,
    write_files,
)
from .test_web_live import Event, read_events

__all__ = ["client", "database", "sqlite_host"]  # the fixtures, shared with test_web.py

HOUR_MS = 3_600_000
#: A rule the simulator's own quotes do not fire within a test's seconds (T1 starts near 61¢).
CROSS_RULES = """\
version: 1
timezone: UTC
defaults:
  cooldown: 1h
rules:
  - {name: crosses 90c, type: price_cross, cents: 90, direction: up}
"""
ACTIONS = ("mute", "unmute", "pause", "resume")


def now_ms() -> int:
    return int(time.time() * 1000)


async def stored(db: str | Path) -> ControlState:
    """What the database holds, read as `watcher status` reads it (ended mutes dropped)."""
    reader = await open_backend(db).read_model()
    try:
        return (await reader.control_state()).at(now_ms())
    finally:
        await reader.close()


#: The databases given a history already (the PostgreSQL one is shared by this module's tests).
_RECORDED: set[str] = set()


async def prepare(db: str | Path) -> None:
    """The recorded history of test_web.py (once per database), and nothing silenced."""
    if str(db) not in _RECORDED:
        await record_history(db)
        _RECORDED.add(str(db))
    async with await Controls.open(open_backend(db)) as controls:
        await controls.unmute()
        await controls.resume()


async def csrf_of(client: httpx.AsyncClient) -> str:
    await client.get("/api/health")  # sets the CSRF cookie
    return client.cookies["watcher_csrf"]


async def post(client: httpx.AsyncClient, action: str, **fields: str) -> httpx.Response:
    """A form's POST with the browser's CSRF token, back to the overview."""
    data = {"csrf": await csrf_of(client), "next": "/", **fields}
    return await client.post(f"/controls/{action}", data=data)


def notice(page: str) -> tuple[str, str] | None:
    found = re.search(r'<p id="notice" class="notice notice-(\w+)" role="status">(.*?)</p>', page)
    return None if found is None else (found.group(1), found.group(2))


def health_item(page: str, key: str) -> tuple[str, str]:
    """A health-strip cell's level and text."""
    found = re.search(
        rf'id="health-{key}" data-level="(\w+)">\s*<span class="health-label">[^<]*</span>\s*'
        r'<b class="health-value">([^<]*)</b>',
        page,
    )
    assert found is not None, key
    return found.group(1), found.group(2)


# Showing what is silenced


async def test_nothing_silenced_means_no_section(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    assert 'id="silenced"' not in page and "Silenced" not in page
    assert 'id="silenced-slot"' in page and 'id="mute-form"' in page
    assert health_item(page, "silenced") == ("ok", "-")
    assert (await client.get("/api/controls")).json() == {"mutes": [], "paused": None}
    assert (await client.get("/silenced")).text.strip() == ""


async def test_the_overview_shows_stored_mutes_and_the_pause(
    database: tuple[str | Path, str | None], tmp_path: Path
) -> None:
    """Mutes and the pause stored by another face (the bot) show on the overview, soonest end
    first, with their target, end in the rules' time zone and who; an ended mute does not;
    the strip says "muted 2 / paused"; /api/controls and /api/health carry the same."""
    write_files(tmp_path)
    db, _ = database
    await prepare(db)
    now = now_ms()
    async with await Controls.open(open_backend(db)) as controls:
        await controls.pause(by="telegram:987", now_ms=now - 60_000)
        await controls.mute(3600, T1, by="telegram:987", now_ms=now)
        await controls.mute(1800, None, by="cli", now_ms=now)
        await controls.mute(3600, "team move", by="cli", now_ms=now - 2 * HOUR_MS)  # ended
    async with client_for(host_for(tmp_path, db)) as client:
        page = (await client.get("/")).text
        api = (await client.get("/api/controls")).json()
        health = (await client.get("/api/health")).json()
    start = page.index('<section id="silenced"')
    section = page[start : page.index("</section>", start)]
    rows = re.findall(
        r'<tr class="mute" data-target="([^"]*)">\s*<td class="what">([^<]*)</td>\s*'
        r'<td class="until">([^<]*)</td>\s*<td class="by">([^<]*)</td>',
        section,
    )
    until = [when_text(now + ms, UTC, now_ms()) for ms in (HOUR_MS // 2, HOUR_MS)]
    assert rows == [
        ("", "everything", until[0], "cli"),
        (T1, T1, until[1], "telegram:987"),
    ]
    since = when_text(now - 60_000, UTC, now_ms())
    assert f"paused since <b>{since}</b> by telegram:987: non-critical alerts held back" in section
    assert section.count('action="/controls/unmute"') == 2  # T1's row, and "unmute all"
    assert 'action="/controls/resume"' in section and "team move" not in section
    assert health_item(page, "silenced") == ("warn", "muted 2 / paused")
    assert [(m["target"], m["what"], m["by"]) for m in api["mutes"]] == [
        (None, "everything", "cli"),
        (T1, T1, "telegram:987"),
    ]
    assert api["mutes"][1]["until_ms"] == now + HOUR_MS and api["mutes"][1]["until"] == until[1]
    assert api["paused"] == {"by": "telegram:987", "since_ms": now - 60_000, "since": since}
    assert health["controls"] == api
    silenced = {"key": "silenced", "label": "silenced", "text": "muted 2 / paused"}
    assert silenced | {"level": "warn"} in health["items"]
    assert " style=" not in page and re.search(r"\son[a-z]+=", page) is None


# Changing it: POST with CSRF, through Controls


async def test_posts_without_the_csrf_token_are_refused_and_change_nothing(
    client: httpx.AsyncClient, sqlite_host: FaceHost
) -> None:
    """Each action, as a form and through the API: no token, or a wrong one → 403, and the
    stored mutes and pause are as they were."""
    db = sqlite_host.settings.db_path
    async with await Controls.open(open_backend(db)) as controls:
        await controls.mute(3600, T2, by="cli")
        await controls.pause(by="cli")
    before = await stored(db)
    await client.get("/")
    fields = {"duration": "1h", "target": T1, "next": "/"}
    for action in ACTIONS:
        for path in (f"/controls/{action}", f"/api/controls/{action}"):
            assert (await client.post(path, data=fields)).status_code == 403, path
            wrong = {**fields, "csrf": "forged"}
            assert (await client.post(path, data=wrong)).status_code == 403, path
            header = {"X-CSRF-Token": "forged"}
            assert (await client.post(path, data=fields, headers=header)).status_code == 403
    assert await stored(db) == before
    csrf = client.cookies["watcher_csrf"]
    assert (await client.post("/controls/nap", data={"csrf": csrf})).status_code == 404


async def test_the_buttons_mute_unmute_pause_and_resume(
    database: tuple[str | Path, str | None], tmp_path: Path
) -> None:
    """A dashboard without a service (`watcher web`) changes the stored controls through a
    Controls of its own, as "web": each form answers 303 back to the page, which says what was
    done (once); the API answers in JSON."""
    write_files(tmp_path)
    db, _ = database
    await prepare(db)
    async with client_for(host_for(tmp_path, db)) as client:
        answer = await post(client, "mute", duration="1h", target=T1)
        assert (answer.status_code, answer.headers["location"]) == (303, "/")
        state = await stored(db)
        assert [(m.target, m.by) for m in state.mutes] == [(T1, "web")]
        assert abs(state.mutes[0].until_ms - (now_ms() + HOUR_MS)) < 10_000
        page = (await client.get("/")).text
        kind, text = notice(page) or ("", "")
        assert kind == "done" and re.fullmatch(rf"muted {T1} until .* UTC by web", text)
        assert f'<tr class="mute" data-target="{T1}">' in page
        assert notice((await client.get("/")).text) is None  # shown once
        assert FLASH_COOKIE not in client.cookies

        await post(client, "mute", duration="30m", target="")
        await post(client, "pause")
        state = await stored(db)
        assert [m.target for m in state.mutes] == [None, T1]
        assert state.paused is not None and state.paused.by == "web"
        assert notice((await client.get("/")).text) == (
            "done",
            "paused: non-critical alerts are held back",
        )

        await post(client, "unmute", target=T1)
        assert [m.target for m in (await stored(db)).mutes] == [None]
        await post(client, "resume")
        assert (await stored(db)).paused is None
        await post(client, "unmute")
        assert await stored(db) == ControlState()
        assert notice((await client.get("/")).text) == ("done", "ended 1 mute")

        csrf = {"X-CSRF-Token": await csrf_of(client)}
        api = await client.post(
            "/api/controls/mute", data={"duration": "2h", "target": "wide or tight"}, headers=csrf
        )
        assert api.status_code == 200
        body = api.json()
        assert body["done"].startswith("muted wide or tight until ")
        assert [(m["what"], m["by"]) for m in body["mutes"]] == [("wide or tight", "web")]
        assert (await client.get("/api/controls")).json()["mutes"] == body["mutes"]
        resumed = await client.post("/api/controls/resume", headers=csrf)
        assert resumed.json()["done"] == "alerts were not paused"


async def test_bad_input_is_shown_and_changes_nothing(
    client: httpx.AsyncClient, sqlite_host: FaceHost
) -> None:
    """A duration that is none, zero or over a year, and a target naming neither a watched
    market nor a rule: back to the page with the reason; the API says 400. Nothing stored.
    A ``next`` that leaves the dashboard goes to the overview instead."""
    db = sqlite_host.settings.db_path
    cases = [
        ({"duration": "soon"}, "mute for how long? expected a duration like 30s"),
        ({"duration": ""}, "mute for how long?"),
        ({"duration": "0m"}, "a mute must last more than 0 seconds"),
        ({"duration": "400d"}, "a mute lasts at most 365d, not 400d"),
        ({"duration": "1h", "target": "KXNOPE-1"}, "'KXNOPE-1' is neither a watched market"),
    ]
    for fields, reason in cases:
        answer = await post(client, "mute", **fields)
        assert answer.status_code == 303
        kind, text = notice((await client.get("/")).text) or ("", "")
        assert kind == "error" and reason in text.replace("&#39;", "'"), (fields, text)
        api = await client.post(
            "/api/controls/mute", data=fields, headers={"X-CSRF-Token": await csrf_of(client)}
        )
        assert api.status_code == 400 and reason in api.json()["error"], fields
    assert await stored(db) == ControlState()
    away = await post(client, "pause", next="//evil.example/")
    assert away.headers["location"] == "/"
    away = await post(client, "resume", next="/alerts?status=failed")
    assert away.headers["location"] == "/alerts?status=failed"


# Live


async def test_the_health_event_carries_what_is_silenced(tmp_path: Path) -> None:
    """An open tab's ``health`` events say what is silenced, and the next one after a mute
    (made on another tab) carries it, so the page can update without a reload."""
    write_files(tmp_path)
    await record_history(tmp_path / "w.db")
    host = host_for(tmp_path, tmp_path / "w.db")
    host = FaceHost(dataclasses.replace(host.settings, web=("127.0.0.1", 0)), host.rules)
    async with contextlib.AsyncExitStack() as stack:
        web = await serve_web(stack, host, read_only=True)
        async with httpx.AsyncClient(base_url=web.url, timeout=WAIT) as client:
            async with client.stream("GET", "/events") as response:
                lines = response.aiter_lines()
                events = await read_events(lines, lambda ev: any(n == "health" for n, _, _ in ev))
                first = next(d for n, _, d in events if n == "health")
                assert first["controls"] == {"mutes": [], "paused": None}
                assert (await post(client, "mute", duration="45m", target=T1)).status_code == 303

                def muted(ev: list[Event]) -> bool:
                    return any(n == "health" and d["controls"]["mutes"] for n, _, d in ev)

                events = await read_events(lines, muted)
    health = [d for n, _, d in events if n == "health"][-1]
    assert [(m["target"], m["by"]) for m in health["controls"]["mutes"]] == [(T1, "web")]
    assert {"key": "silenced", "label": "silenced", "text": "muted 1", "level": "warn"} in (
        health["items"]
    )


@pytest.mark.parametrize("controls", ["service", "own"])
async def test_a_mute_on_the_dashboard_suppresses_the_next_alert_of_that_rule(
    tmp_path: Path, controls: str
) -> None:
    """Beside a running service, "mute crosses 90c for 1h" on the dashboard: the alert the
    next quote above 90¢ fires is recorded as suppressed, with the mute as its reason. Through
    the service's Controls, and through a dashboard's own (as `watcher web` on the same file:
    the service re-reads the stored controls within a second)."""
    write_files(tmp_path, CROSS_RULES)
    await record_history(tmp_path / "w.db")
    key = ed25519.Ed25519PrivateKey.generate()
    async with SimulatedExchange(public_keys={"k": key.public_key()}) as sim:
        svc = service_on(tmp_path, sim, key)
        host = FaceHost(svc.settings, svc.pipeline.rules, svc)
        stop = asyncio.Event()
        run = asyncio.create_task(svc.run(stop))
        try:
            await sim.wait_subscribed("ticker", T1, timeout=WAIT)
            async with client_for(host, read_only=controls == "own") as client:
                answer = await post(client, "mute", duration="1h", target="crosses 90c")
                assert answer.status_code == 303
                page = (await client.get("/")).text
                assert (notice(page) or ("", ""))[0] == "done"
                assert '<tr class="mute" data-target="crosses 90c">' in page
            newest = max(a.id for a in await recent(tmp_path / "w.db"))
            if controls == "own":
                await asyncio.sleep(1.2)  # the service's copy may be a second old
            sim.set_quote(T1, yes_bid="0.9000", yes_ask="0.9200", last="0.9100")
            alert = await next_alert(tmp_path / "w.db", newest, rule="crosses 90c")
        finally:
            stop.set()
            await asyncio.wait_for(run, WAIT)
    assert (alert.market_ticker, alert.status) == (T1, "suppressed")
    assert alert.suppressed_reason is not None
    assert re.fullmatch(r"muted crosses 90c until .* by web", alert.suppressed_reason)


async def recent(db: Path) -> list[AlertRecord]:
    reader = await open_backend(db).read_model()
    try:
        return await reader.recent_alerts(limit=50)
    finally:
        await reader.close()


async def next_alert(db: Path, after: int, *, rule: str) -> AlertRecord:
    """The first alert of ``rule`` recorded after alert ``after``."""
    async with asyncio.timeout(WAIT):
        while True:
            found = [a for a in await recent(db) if a.id > after and a.rule == rule]
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
