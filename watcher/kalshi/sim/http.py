"""The HTTP side of the simulated exchange: handshake checks, fault statuses and REST.

:class:`HttpFront` answers every HTTP request that reaches the simulator's port before the
WebSocket upgrade: REST GETs under ``/trade-api/v2`` (routed by
:func:`~watcher.kalshi.sim.rest.route_rest`), scripted handshake rejections, and signature checks
of the ``KALSHI-ACCESS-*`` headers. It returns ``None`` for a handshake that may proceed.
"""

from __future__ import annotations

import email.utils
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import msgspec
from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import Request, Response

from watcher.kalshi.auth import PublicKey, verify_signature
from watcher.kalshi.sim.events import EventBook
from watcher.kalshi.sim.fee_changes import EventFeeChanges
from watcher.kalshi.sim.market import SimMarket
from watcher.kalshi.sim.rest import route_rest
from watcher.kalshi.sim.series import SeriesBook
from watcher.kalshi.sim.wire import REST_PREFIX, WS_PATH, SimStats, now_ms

__all__ = ["MAX_CLOCK_SKEW_MS", "HttpFront", "auth_problem", "header", "json_response"]

logger = logging.getLogger("watcher.sim")

#: Handshakes signed further than this from the simulator's clock are refused.
MAX_CLOCK_SKEW_MS = 60_000


class HttpFront:
    """HTTP answers of one simulator: REST, scripted rejections and signature checks.

    Args:
        public_keys: API key id → public key; ``None`` accepts unsigned requests.
        stats: the simulator's counters (handshake rejections are counted here).
        market: returns the market for a ticker, creating it on demand.
        every: returns every market the simulator knows.
        series: the series' fee settings and scripted lookup failures.
        events, fee_changes: the configured events and their fee overrides.
    """

    def __init__(
        self,
        *,
        public_keys: Mapping[str, PublicKey] | None,
        stats: SimStats,
        market: Callable[[str], SimMarket],
        every: Callable[[], Iterable[SimMarket]],
        series: SeriesBook | None = None,
        events: EventBook | None = None,
        fee_changes: EventFeeChanges | None = None,
    ) -> None:
        self.public_keys = dict(public_keys) if public_keys is not None else None
        self.stats = stats
        self.rejections: deque[int] = deque()
        self.rest_limited = 0
        self._market = market
        self._every = every
        self.series = series or SeriesBook()
        self.events = events
        self.fee_changes = fee_changes or EventFeeChanges()

    def __repr__(self) -> str:
        keys = "unsigned" if self.public_keys is None else f"{len(self.public_keys)} keys"
        return f"<HttpFront {keys} rejections={len(self.rejections)}>"

    def process_request(self, request: Request) -> Response | None:
        """The response to send instead of upgrading, or ``None`` to accept the handshake."""
        path, _, query = request.path.partition("?")
        if path.startswith(REST_PREFIX + "/"):
            return self._rest(request, path, query)
        if path != WS_PATH:
            return json_response(404, {"error": {"code": "not_found", "message": path}})
        if self.rejections:
            self.stats.handshakes_rejected += 1
            status = self.rejections.popleft()
            logger.info("handshake rejected by fault injection: HTTP %d", status)
            text = "too many requests" if status == 429 else HTTPStatus(status).phrase.lower()
            return json_response(status, {"error": text})
        problem = auth_problem(self.public_keys, request.headers, WS_PATH, required=True)
        if problem is not None:
            self.stats.handshakes_rejected += 1
            logger.info("handshake rejected with HTTP 401: %s", problem)
            return json_response(401, {"error": {"code": "unauthorized", "message": problem}})
        return None

    def _rest(self, request: Request, path: str, query: str) -> Response:
        if request.method != "GET":
            return json_response(
                405, {"error": {"code": "method_not_allowed", "message": request.method}}
            )
        if self.rest_limited > 0:
            self.rest_limited -= 1
            return json_response(429, {"error": "too many requests"})
        problem = auth_problem(self.public_keys, request.headers, path, required=False)
        if problem is not None:
            return json_response(401, {"error": {"code": "unauthorized", "message": problem}})
        status, body = route_rest(
            path[len(REST_PREFIX) :],
            parse_qs(query),
            market=self._market,
            every=self._every,
            now_ms=now_ms(),
            series=self.series,
            events=self.events,
            fee_changes=self.fee_changes,
        )
        return json_response(status, body)


def auth_problem(
    public_keys: Mapping[str, PublicKey] | None, headers: Headers, path: str, *, required: bool
) -> str | None:
    """Why a request's signature is not acceptable, or None if it is (or need not be)."""
    if public_keys is None:
        return None
    names = ("KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE")
    key_id, stamp, signature = (header(headers, name) for name in names)
    if not (key_id or stamp or signature):
        return "missing KALSHI-ACCESS-* headers" if required else None
    if not (key_id and stamp and signature):
        return "incomplete KALSHI-ACCESS-* headers"
    key = public_keys.get(key_id)
    if key is None:
        return f"unknown API key id {key_id!r}"
    if not stamp.isdigit():
        return f"timestamp is not milliseconds: {stamp!r}"
    skew = int(stamp) - now_ms()
    if abs(skew) > MAX_CLOCK_SKEW_MS:
        return f"timestamp is {skew} ms off the server clock"
    if not verify_signature(
        key, timestamp_ms=stamp, method="GET", path=path, signature_b64=signature
    ):
        return f"signature does not verify for GET {path}"
    return None


def header(headers: Headers, name: str) -> str | None:
    """One header's value; ``None`` when it is missing or given more than once."""
    try:
        return headers.get(name)
    except MultipleValuesError:
        return None


def json_response(status: int, body: Any) -> Response:
    """A complete HTTP response with a JSON body (the connection is closed after it)."""
    data = msgspec.json.encode(body)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
        ]
    )
    return Response(status, HTTPStatus(status).phrase, headers, data)
