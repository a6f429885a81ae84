"""The dashboard in a real headless Chromium against ``watcher start --simulate --web``, with the
files a newcomer starts from (trades.json.example and the shipped rules.yaml), as ``make run``
runs them.

One service serves all of these tests (module scope would need a module-scoped event loop; a
single test keeps it simple and fast): the overview lists the positions, a live tick changes a
displayed price without a reload, an alert shows up in the inbox, the market chart draws a
non-empty path, the overview's screenshot is written as a test artifact, and silencing works
(a mute made elsewhere appears in the Silenced section without a reload, "unmute all" and a
position's "Mute 1h" button change it)
(``test-artifacts/dashboard.png``; ``WATCHER_SCREENSHOT_DOCS=1`` also writes
``docs/dashboard.png``, the README's picture).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import httpx

from .browser import browser  # noqa: F401  (the fixture)
from .conftest import MS
from .support import env_without_kalshi, finish, free_port, spawn

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 30_000 * MS * 1000  # Playwright timeouts are in milliseconds


async def _up(url: str, proc: asyncio.subprocess.Process) -> None:
    """Wait until the dashboard answers (or the service has died)."""
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if proc.returncode is not None:
                raise AssertionError(f"watcher start exited with {proc.returncode}")
            try:
                if (await client.get(f"{url}/api/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def _pending_tickers() -> list[str]:
    """The tickers of the watched positions in trades.json.example (what the overview lists)."""
    from watcher.domain.trades_file import load_positions

    return [p.ticker for p in load_positions(ROOT / "trades.json.example").watched()]


async def test_the_dashboard_in_chromium_against_the_simulator(
    tmp_path: Path,
    browser: Any,  # noqa: F811
) -> None:
    shutil.copy(ROOT / "trades.json.example", tmp_path / "trades.json")
    shutil.copy(ROOT / "rules" / "rules.yaml", tmp_path / "rules.yaml")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await spawn(tmp_path, env_without_kalshi(), "--simulate", "--web", f"127.0.0.1:{port}")
    try:
        await _up(url, proc)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(WAIT_MS)
        await _overview_lists_the_positions_and_ticks_live(page, url)
        await _an_alert_arrives_in_the_inbox(page, url)
        await _the_market_chart_draws_a_path(page, url)
        await _screenshot_of_the_overview(page, url)
        await _silencing_from_the_overview(page, url)
    finally:
        _, err = await finish(proc, 15)  # SIGTERM: the service flushes and exits 0
    assert proc.returncode == 0, err[-2000:]
    assert f"dashboard: {url}/" in err


async def _overview_lists_the_positions_and_ticks_live(page: Any, url: str) -> None:
    await page.goto(f"{url}/")
    tickers = await page.eval_on_selector_all(
        "#positions tr.position", "rows => rows.map(r => r.dataset.ticker)"
    )
    assert tickers == _pending_tickers()
    await page.wait_for_selector("#live-state[data-state='live']")
    # Mark the document: a reload would lose this, so a changed price with the mark still
    # there was written by the page's own script from the SSE stream.
    before = await page.evaluate(
        """() => { window.__sameDocument = true;
                   return [...document.querySelectorAll('#positions td.bid, #positions td.ask')]
                          .map(td => td.id + '=' + td.textContent); }"""
    )
    await page.wait_for_function(
        """before => [...document.querySelectorAll('#positions td.bid, #positions td.ask')]
                     .map(td => td.id + '=' + td.textContent).join() !== before.join()""",
        arg=before,
    )
    assert await page.evaluate("() => window.__sameDocument === true")


async def _screenshot_of_the_overview(page: Any, url: str) -> None:
    """After a few seconds of data, so that the sparklines have something to draw (the
    README's picture waits longer, for the prices to move)."""
    if os.environ.get("WATCHER_SCREENSHOT_DOCS") == "1":
        await asyncio.sleep(40)
    await page.goto(f"{url}/")
    await page.wait_for_selector("#positions svg path", state="attached")  # the sparklines
    await page.wait_for_selector("#live-state[data-state='live']")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    if os.environ.get("WATCHER_SCREENSHOT_DOCS") == "1":
        shutil.copy(ARTIFACTS / "dashboard.png", ROOT / "docs" / "dashboard.png")


async def _an_alert_arrives_in_the_inbox(page: Any, url: str) -> None:
    await page.goto(f"{url}/alerts")
    await page.wait_for_selector("#alerts tr.alert")
    shown = await page.eval_on_selector_all(
        "#alerts tr.alert", "rows => rows.map(r => r.dataset.alertId)"
    )
    async with httpx.AsyncClient() as client:
        stored = (await client.get(f"{url}/api/alerts", params={"limit": 500})).json()
    assert set(shown) <= {str(a["id"]) for a in stored}  # the API knows every alert shown
    texts = await page.eval_on_selector_all(
        "#alerts tr.alert td.text", "c => c.map(t => t.textContent)"
    )
    assert all(text.strip() for text in texts)


async def _the_market_chart_draws_a_path(page: Any, url: str) -> None:
    ticker = _pending_tickers()[0]
    await page.goto(f"{url}/market/{ticker}")
    await page.wait_for_function(
        """() => [...document.querySelectorAll('#chart svg path')]
                 .some(p => (p.getAttribute('d') || '').length > 10)"""
    )
    assert await page.inner_text("#quote-bid") != "-"


async def _silencing_from_the_overview(page: Any, url: str) -> None:
    """A mute made elsewhere (the API, as another tab or the bot would) shows up in the
    Silenced section by the page's own script; "unmute all" and a row's "Mute 1h" are forms
    that come back to the overview saying what they did."""
    await page.goto(f"{url}/")
    await page.wait_for_selector("#live-state[data-state='live']")
    assert await page.query_selector("#silenced") is None
    await page.evaluate("() => { window.__sameDocument = true; }")
    async with httpx.AsyncClient(base_url=url) as client:
        await client.get("/api/health")
        csrf = {"X-CSRF-Token": client.cookies["watcher_csrf"]}
        muted = await client.post("/api/controls/mute", data={"duration": "5m"}, headers=csrf)
        assert muted.status_code == 200, muted.text
    await page.wait_for_selector("#silenced tr.mute[data-target='']")
    assert await page.evaluate("() => window.__sameDocument === true")
    assert "muted 1" in await page.inner_text("#health-silenced")
    await page.click("#unmute-all")
    await page.wait_for_selector("#notice.notice-done")
    assert await page.query_selector("#silenced") is None
    ticker = _pending_tickers()[0]
    await page.click(f"#positions tr.position[data-ticker='{ticker}'] button.mute-1h")
    row = await page.wait_for_selector(f"#silenced tr.mute[data-target='{ticker}']")
    assert "web" in await row.inner_text()
    assert (await page.inner_text("#notice")).startswith(f"muted {ticker} until ")
