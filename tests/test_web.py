"""The dashboard over ASGI (no server, no browser): pages, JSON API, the guard, secrets.

Each test builds the Starlette app of :mod:`watcher.faces.web` on a real database (SQLite
file, and PostgreSQL where it matters) written through the store's own ports; the live
behaviour (a running service, the event stream, uvicorn, signals) is in test_web_live.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from watcher.faces import FaceHost
from watcher.faces.web import close_app, create_app
from watcher.faces.web.security import CSP, SESSION_COOKIE
from watcher.rules import load_rules
from watcher.settings import settings_from_env
from watcher.store import open_backend

from .support import T1, T2, TRADES, alert_for, trade_frame
from .test_store_contract import tick

#: Every secret a user might have configured: none may appear in a page or an answer.
SECRETS = {
    "HOOK_URL": "json://hookuser:hookpass-5ecret@127.0.0.1:9/hook",
    "KALSHI_PRIVATE_KEY_PASSWORD": "keypass-5ecret",
    "WATCHER_TELEGRAM_TOKEN": "123456:bot-5ecret-token",
}
TOKEN = "web-5ecret-token"
RULES = """\
version: 1
timezone: UTC
notify:
  hook: ${HOOK_URL}
  team: slack://TokenA5ecret/TokenB5ecret/TokenC5ecret/#alerts
  mail: mailtos://someone:mailpass-5ecret@example.com
defaults:
  notify: [hook]
  cooldown: 1h
rules:
  - {name: wide or tight, type: spread, max_cents: 10}
  - {name: team move, type: move_from_entry, cents: 5, notify: [team, mail]}
"""
SECRET_TEXTS = (
    "5ecret",
    "hookpass",
    "mailpass",
    "TokenA",
    TOKEN,
    *SECRETS.values(),
)
NOW = int(time.time() * 1000)
PAGES = ("/", f"/market/{T1}", f"/market/{T1}?window=all", "/alerts", "/rules", "/rules?replay=1d")
APIS = (
    "/api/positions",
    "/api/alerts",
    f"/api/markets/{T1}/series?window=1h",
    "/api/health",
    "/api/rules",
    "/api/replay?window=7d",
)


def write_files(folder: Path, rules: str = RULES) -> None:
    (folder / "trades.json").write_text(json.dumps(TRADES))
    (folder / "rules.yaml").write_text(rules)


def host_for(folder: Path, db: str | Path, **env: str) -> FaceHost:
    """The dashboard's view of ``folder``'s files and ``db``, with the secrets in its env."""
    settings = settings_from_env(
        trades=str(folder / "trades.json"),
        rules=str(folder / "rules.yaml"),
        db=str(db),
        environ={**SECRETS, **env},
    )
    return FaceHost(settings, load_rules(settings.rules_path, env=settings.env))


async def record_history(db: str | Path, now: int = NOW) -> list[int]:
    """30 minutes of T1 ticks (YES bid 45¢ at the end, ask 55¢, last 45.5¢), 5 trades, and two
    alerts: one whose delivery failed (T1) and one delivered (T2). Returns the alert ids."""
    backend = open_backend(db)
    sink = backend.tick_sink()
    await sink.start()
    for n in range(30):
        await sink.put(tick(now - (30 - n) * 60_000, market=T1, bid=f"0.{40 + n % 6:02d}"), now)
    for n in range(5):
        await sink.put(trade_frame(f"t{n}", market=T1, ts_ms=now - n * 1_000), now)
    await sink.flush()
    await sink.close()
    store = await backend.alert_store()
    try:
        ids = await store.record(
            [
                alert_for(1, ("hook",), now=now - 9_000, market_ticker=T1, rule="wide or tight"),
                alert_for(2, ("hook",), now=now - 9_000, market_ticker=T2, rule="team move"),
            ],
            now_ms=now - 9_000,
        )
        first, second = await store.due(now)
        await store.mark_failed([first.ref], error="HTTP 500 from hook", now_ms=now - 8_000)
        await store.mark_delivered([second.ref], now_ms=now - 8_000)
    finally:
        await store.close()
    return ids


@contextlib.asynccontextmanager
async def client_for(
    host: FaceHost, *, read_only: bool = True, base: str = "http://127.0.0.1:8780"
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the dashboard app in-process (ASGI)."""
    app = create_app(host, read_only=read_only)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            yield client
    finally:
        await close_app(app)


@pytest.fixture
async def sqlite_host(tmp_path: Path) -> FaceHost:
    write_files(tmp_path)
    await record_history(tmp_path / "w.db")
    return host_for(tmp_path, tmp_path / "w.db")


@pytest.fixture
async def client(sqlite_host: FaceHost) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(sqlite_host) as c:
        yield c


def with_password(dsn: str) -> tuple[str, str]:
    """The DSN with a password (the server trusts local connections, so any will do), and
    that password: the secret the pages must not show."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn, parts.password
    user = parts.username or "postgres"
    netloc = f"{user}:pgpass-5ecret@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc)), "pgpass-5ecret"


# Pages and API, read-only from the database


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str | Path, str | None]:
    """A database to serve, and the password in its URL (resolved outside the event loop:
    ``postgres_db`` runs its own)."""
    if request.param == "sqlite":
        return tmp_path / "w.db", None
    return with_password(request.getfixturevalue("postgres_db"))


async def test_every_page_and_api_answers_from_the_database_without_a_service(
    database: tuple[str | Path, str | None], tmp_path: Path
) -> None:
    """`watcher web` on SQLite and PostgreSQL: every page and API answers 200 from the
    recorded history, and no secret (Apprise URLs, tokens, key and database passwords) is in
    any of them."""
    write_files(tmp_path)
    db, password = database
    secrets = [*SECRET_TEXTS, *([password] if password else [])]
    await record_history(db)
    async with client_for(host_for(tmp_path, db)) as client:
        for path in PAGES + APIS:
            answer = await client.get(path)
            assert answer.status_code == 200, (path, answer.text[:500])
            leaked = [s for s in secrets if s in answer.text or s in str(answer.headers)]
            assert leaked == [], (path, leaked)
        overview = (await client.get("/")).text
        assert f'<tr id="pos-1" class="position" data-ticker="{T1}" data-index="1">' in overview
        assert f'data-ticker="{T2}" data-index="2"' in overview


async def test_positions_api_carries_exact_decimal_strings(client: httpx.AsyncClient) -> None:
    """GET /api/positions: one object per watched position, prices of its side and P&L as
    exact strings (10 YES @ 40¢ marked at last 45.5¢ → +$0.55); unknown prices are null."""
    answer = await client.get("/api/positions")
    assert answer.headers["content-type"] == "application/json"
    first, second = answer.json()
    assert {k: first[k] for k in ("ticker", "side", "contracts", "entry", "bid", "ask")} == {
        "ticker": T1,
        "side": "YES",
        "contracts": "10",
        "entry": "0.40",
        "bid": "0.45",
        "ask": "0.55",
    }
    assert (first["mark"], first["pnl"], first["last_alert"]["rule"]) == (
        "0.455",
        "0.55",
        "wide or tight",
    )
    assert {k: second[k] for k in ("ticker", "side", "entry", "mark", "pnl")} == {
        "ticker": T2,
        "side": "NO",
        "entry": "0.30",
        "mark": None,
        "pnl": None,
    }


async def test_the_overview_shows_prices_pnl_colour_and_a_sparkline(
    client: httpx.AsyncClient,
) -> None:
    """Each position row has its price cells by id, the P&L coloured by sign, and an SVG
    sparkline with the entry line."""
    page = (await client.get("/")).text
    assert re.search(r'id="pos-1-mark">45\.5¢<', page)
    assert re.search(r'class="num pnl gain" id="pos-1-pnl">\+\$0\.55<', page)
    assert re.search(r'class="num pnl unknown" id="pos-2-pnl">-<', page)
    row = page[page.index('id="pos-1"') : page.index('id="pos-2"')]
    assert '<svg class="spark"' in row and 'class="spark-entry"' in row
    assert 'class="spark-line" d="M' in row


async def test_the_market_page_draws_the_chart_with_entry_alerts_and_trades(
    client: httpx.AsyncClient,
) -> None:
    """The chart's last-price path is not empty, the band and the entry line are drawn, the
    alert is a marker with its text, and the recent trades are listed."""
    page = (await client.get(f"/market/{T1}?window=1d")).text
    assert re.search(r'<path class="chart-last" d="M[\d.,HV]+"', page)
    assert re.search(r'<path class="chart-band" d="M[\d.,HVZ]+"', page)
    assert "YES entry #1 40¢" in page
    assert re.search(r'<g class="chart-alert chart-alert-warning".*?<title>.*wide or tight', page)
    assert page.count('<td class="num">136</td>') == 5  # the recorded trades
    assert 'id="quote-bid">45¢<' in page
    unknown = (await client.get("/market/KXNONE")).text
    assert "no ticks in this window" in unknown and 'id="quote-bid">-<' in unknown
    svg = await client.get(f"/market/{T1}/chart?window=all")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith('<svg class="chart"')


async def test_series_api_gives_exact_quotes_and_checks_its_arguments(
    client: httpx.AsyncClient,
) -> None:
    """The series is oldest first with decimal strings; a bad window is 400, a ticker that
    cannot be one is 404, an unknown market an empty series."""
    body = (await client.get(f"/api/markets/{T1}/series?window=all")).json()
    assert body["ticker"] == T1 and body["since_ms"] is None
    points = body["points"]
    assert len(points) == 30 and points == sorted(points, key=lambda p: p["ts_ms"])
    assert points[-1] | {"ts_ms": 0} == {
        "ts_ms": 0,
        "yes_bid": "0.45",
        "yes_ask": "0.55",
        "price": "0.455",
    }
    one_hour = (await client.get(f"/api/markets/{T1}/series")).json()
    assert one_hour["window"] == "1h" and len(one_hour["points"]) == 30
    assert (await client.get(f"/api/markets/{T1}/series?window=2y")).status_code == 400
    assert (await client.get("/api/markets/no%20such/series")).status_code == 404
    assert (await client.get("/api/markets/KXNONE/series")).json()["points"] == []


async def test_the_inbox_filters_by_status_market_and_rule(client: httpx.AsyncClient) -> None:
    """/alerts and /api/alerts filter by status, market and rule; each delivery shows its
    status, and the failed one its (masked) error."""
    every = (await client.get("/api/alerts")).json()
    assert [a["market_ticker"] for a in every] == [T2, T1]
    failed = (await client.get("/api/alerts?status=failed")).json()
    assert [(a["market_ticker"], a["deliveries"][0]["status"]) for a in failed] == [(T1, "failed")]
    assert [a["rule"] for a in (await client.get(f"/api/alerts?market={T2}")).json()] == [
        "team move"
    ]
    assert (await client.get("/api/alerts?rule=nothing")).json() == []
    page = (await client.get("/alerts?status=failed")).text
    assert page.count('class="alert severity-warning"') == 1
    assert "hook: failed" in page and "HTTP 500 from hook" in page
    assert "retry now" not in page  # read-only: nothing to retry with


async def test_the_rules_page_shows_last_fires_and_a_replay(client: httpx.AsyncClient) -> None:
    """Each rule with its last fire and its target names (never URLs); replay over 1d runs
    the `watcher replay` engine on the recorded ticks and lists what it would fire."""
    page = (await client.get("/rules?replay=1d")).text
    assert '<tr data-rule="wide or tight"' in page
    assert f"UTC {T1}</td>" in page
    assert "<td>team, mail</td>" in page and "slack://" not in page
    assert "replay: 30 ticks, 5 trades, 0 lifecycle events of 2 markets" in page
    replay = (await client.get("/api/replay?window=1d")).json()
    assert replay["alerts"] == replay["per_rule"].get("wide or tight", 0) + replay["per_rule"].get(
        "team move", 0
    )
    assert (await client.get("/rules?replay=2y")).status_code == 400


async def test_health_api_in_read_only_mode_says_where_it_reads(client: httpx.AsyncClient) -> None:
    health = (await client.get("/api/health")).json()
    assert (health["role"] == "read-only" and health["state"] == "never ran") or health["state"]
    assert (health["outbox_pending"], health["outbox_failed"]) == (0, 1)
    assert [item["key"] for item in health["items"]][:3] == ["role", "mode", "state"]


# The guard


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    """Pages, API, static files and errors: the CSP without inline script, nosniff, DENY."""
    for path in ("/", "/api/health", "/static/dashboard.js", "/static/dashboard.css", "/nope"):
        answer = await client.get(path)
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in CSP and "'unsafe-inline'" not in CSP


async def test_pages_hold_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    """The CSP forbids inline code: no <script> body, no style attribute, no on* handler."""
    for path in PAGES:
        page = (await client.get(path)).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == [], path
        assert " style=" not in page and "<style" not in page, path
        assert re.search(r"\son[a-z]+=", page) is None, path


async def test_a_non_loopback_host_name_is_refused_without_a_token(sqlite_host: FaceHost) -> None:
    """Without a token only loopback names are answered (no DNS rebinding)."""
    async with client_for(sqlite_host, base="http://evil.example:8780") as client:
        assert (await client.get("/api/health")).status_code == 421
    async with client_for(sqlite_host, base="http://localhost:8780") as client:
        assert (await client.get("/api/health")).status_code == 200


async def test_with_a_token_every_request_needs_it(tmp_path: Path) -> None:
    """Missing or wrong token → 401 (pages, API, static, event stream); the Bearer header or
    the HttpOnly, SameSite=Strict cookie from /login lets it through; the cookie is not the
    token."""
    write_files(tmp_path)
    await record_history(tmp_path / "w.db")
    host = host_for(tmp_path, tmp_path / "w.db", WATCHER_WEB_TOKEN=TOKEN)
    async with client_for(host, base="http://192.0.2.7:8780") as client:
        for path in ("/", "/api/positions", "/static/dashboard.js", "/events"):
            assert (await client.get(path)).status_code == 401, path
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/api/health", headers=wrong)).status_code == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/health", headers=right)).status_code == 200
        assert (await client.get("/login?token=nope")).status_code == 401
        login = await client.get(f"/login?token={TOKEN}")
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert TOKEN not in cookie
        assert (await client.get("/")).status_code == 200  # the cookie jar sends it now
        client.cookies.set(SESSION_COOKIE, "forged")
        assert (await client.get("/")).status_code == 401


async def test_a_post_without_the_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    """POST retry: no CSRF token, or one that is not the browser's cookie → 403; with it, a
    read-only dashboard says there is nothing to retry with (409)."""
    await client.get("/alerts")  # sets the CSRF cookie
    csrf = client.cookies["watcher_csrf"]
    url = "/alerts/1/retry"
    assert (await client.post(url, data={"target": "hook"})).status_code == 403
    assert (await client.post(url, data={"target": "hook", "csrf": "x"})).status_code == 403
    answer = await client.post(url, data={"target": "hook", "csrf": csrf})
    assert answer.status_code == 409
    header = await client.post(url, data={"target": "hook"}, headers={"X-CSRF-Token": csrf})
    assert header.status_code == 409
    client.cookies.clear()
    assert (await client.post(url, data={"target": "hook", "csrf": csrf})).status_code == 403


async def test_a_missing_database_is_a_clear_503(tmp_path: Path) -> None:
    write_files(tmp_path)
    async with client_for(host_for(tmp_path, tmp_path / "absent.db")) as client:
        page = await client.get("/")
        assert page.status_code == 503 and page.headers["retry-after"] == "2"
        assert "the database cannot be read yet" in page.text
        assert '<meta http-equiv="refresh" content="2">' in page.text
        api = await client.get("/api/positions")
        assert api.status_code == 503 and "absent.db" in api.json()["error"]
