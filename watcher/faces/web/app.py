"""The dashboard's Starlette application: routes, templates, static files and the guard.

:func:`create_app` builds it for a :class:`~watcher.faces.host.FaceHost`; it runs over any ASGI
server (uvicorn in :mod:`watcher.faces.web.server`, or an in-process ASGI client in tests)
with or without a running service. :func:`close_app` releases what it opened (the read model,
the live feed's task).
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

import jinja2
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from watcher.errors import StorageError
from watcher.faces.host import FaceHost
from watcher.faces.web import api, pages, silence
from watcher.faces.web.live import LiveFeed, encode
from watcher.faces.web.security import Guard
from watcher.faces.web.source import Source
from watcher.faces.web.views import health_json
from watcher.ops.readout import cents_text
from watcher.rules.wording import contracts_text

__all__ = ["STATIC", "TEMPLATES", "close_app", "create_app"]

logger = logging.getLogger("watcher.web")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: Milliseconds a browser waits before reconnecting a dropped event stream.
RECONNECT_MS = 2_000


def create_app(host: FaceHost, *, read_only: bool = False) -> Starlette:
    """The dashboard of ``host`` (read-only: ``watcher web``, nothing can be retried).

    The token (``host.settings.web_token``) guards every route when set; see
    :mod:`watcher.faces.web.security`.
    """
    source = Source(host, read_only=read_only)

    async def health() -> Any:
        return health_json(await source.health(), source.now_ms(), tz=source.rules.tz)

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cents"] = cents_text
    env.filters["contracts"] = contracts_text
    app = Starlette(
        routes=_routes(),
        middleware=[Middleware(Guard, token=host.settings.web_token)],
        exception_handlers={StorageError: _storage_error},
    )
    app.state.source = source
    app.state.feed = LiveFeed(source, health)
    app.state.templates = Jinja2Templates(env=env)
    return app


async def close_app(app: Starlette) -> None:
    """End the live streams and close the read model."""
    await app.state.feed.close()
    await app.state.source.close()


def _routes() -> list[Any]:
    return [
        Route("/", pages.overview_page),
        Route("/market/{ticker}", pages.market_page),
        Route("/market/{ticker}/chart", _chart),
        Route("/alerts", pages.alerts_page),
        Route("/alerts/{alert_id:int}/retry", pages.retry_delivery, methods=["POST"]),
        Route("/rules", pages.rules_page),
        Route("/silenced", silence.silenced_fragment),
        Route("/controls/{action}", silence.control_action, methods=["POST"]),
        Route("/events", _events),
        Route("/api/positions", api.positions_api),
        Route("/api/alerts", api.alerts_api),
        Route("/api/markets/{ticker}/series", api.series_api),
        Route("/api/health", api.health_api),
        Route("/api/rules", api.rules_api),
        Route("/api/replay", api.replay_api),
        Route("/api/controls", silence.controls_api),
        Route("/api/controls/{action}", silence.control_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


async def _chart(request: Request) -> Response:
    """``/market/{ticker}/chart?window=``: the chart's SVG alone (the page's script swaps it in
    as ticks arrive)."""
    source = pages.source_of(request)
    svg = await pages.chart_svg(source, pages.ticker_of(request), pages.window_of(request))
    return Response(svg, media_type="image/svg+xml")


async def _events(request: Request) -> Response:
    """``/events``: this tab's event stream (see :mod:`watcher.faces.web.live`), resuming after
    ``Last-Event-ID`` (or ``?after=``, the newest alert the page was rendered with)."""
    feed: LiveFeed = request.app.state.feed
    after = _alert_id(request.headers.get("last-event-id"))
    if after is None:
        after = _alert_id(request.query_params.get("after"))

    async def stream() -> Any:
        async with feed.subscribe(after) as tab:
            hello = {"read_only": feed.source.read_only, "live": feed.source.service is not None}
            yield {
                "event": "hello",
                "id": str(tab.start_id),
                "data": json.dumps(hello),
                "retry": RECONNECT_MS,
            }
            while not feed.closing.is_set():
                await tab.ready.wait()
                for event in tab.drain():
                    yield encode(event)

    return EventSourceResponse(stream(), ping=15, send_timeout=30)


def _alert_id(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None


async def _storage_error(request: Request, exc: Exception) -> Response:
    """The database cannot be read (yet: the service creates it as it starts). The API says
    so in JSON; a page says so and reloads itself every few seconds."""
    logger.warning("dashboard cannot read the database: %s", exc)
    message = f"the database cannot be read yet: {exc}"
    headers = {"retry-after": "2"}
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, 503, headers=headers)
    page = _UNAVAILABLE.format(message=html.escape(message))
    return HTMLResponse(page, 503, headers=headers)


_UNAVAILABLE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>watcher · starting</title><link rel="stylesheet" href="/static/dashboard.css"></head>
<body><main><h1>watcher</h1><p class="problem">{message}</p>
<p class="note">This page reloads by itself.</p></main></body></html>
"""
