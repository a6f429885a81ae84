"""The REST client against a real HTTP/1.1 server on loopback, and the endpoint table."""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.conftest import MS
from watcher.errors import AuthenticationFailed, DecodeError, RateLimited, RestError
from watcher.kalshi.auth import KalshiSigner, PrivateKey, PublicKey, verify_signature
from watcher.kalshi.endpoints import (
    DEMO_API_URL,
    DEMO_WS_URL,
    PROD_API_URL,
    PROD_WS_URL,
    Endpoints,
    resolve_endpoints,
)
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.exchange import SimulatedExchange

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kalshi"
TICKER = "KXFEDDECISION-26DEC-H0"
ROOT = "/trade-api/v2"
HANG = 0  # a status that tells the fake server never to answer

MARKET_BODY = {
    "market": {
        "ticker": TICKER,
        "event_ticker": "KXFEDDECISION-26DEC",
        "market_type": "binary",
        "title": "Fed decision in Dec 2026?",
        "yes_sub_title": "Hike 0bps",
        "no_sub_title": "Hike 0bps",
        "created_time": "2026-10-29T14:00:00Z",
        "updated_time": "2026-11-21T04:59:12Z",
        "open_time": "2026-10-29T14:00:00Z",
        "close_time": "2026-12-16T18:59:00Z",
        "latest_expiration_time": "2026-12-23T15:00:00Z",
        "settlement_timer_seconds": 300,
        "status": "active",
        "notional_value_dollars": "1.0000",
        "yes_bid_dollars": "0.9100",
        "yes_ask_dollars": "0.9300",
        "no_bid_dollars": "0.0700",
        "no_ask_dollars": "0.0900",
        "yes_bid_size_fp": "1200.00",
        "yes_ask_size_fp": "310.00",
        "last_price_dollars": "0.9200",
        "previous_yes_bid_dollars": "0.9000",
        "previous_yes_ask_dollars": "0.9200",
        "previous_price_dollars": "0.9100",
        "volume_fp": "152340.00",
        "volume_24h_fp": "8012.00",
        "open_interest_fp": "90311.00",
        "result": "",
        "can_close_early": True,
        "expiration_value": "",
        "rules_primary": "If the Fed holds rates at its December 2026 meeting, resolves Yes.",
        "rules_secondary": "",
        "price_level_structure": "linear_cent",
        "price_ranges": [{"start": "0.0100", "end": "0.9900", "step": "0.0100"}],
    }
}


def trade(n: int) -> dict[str, object]:
    return {
        "trade_id": f"b7c1a2d4-0000-4000-8000-{n:012d}",
        "ticker": TICKER,
        "count_fp": "10.00",
        "yes_price_dollars": "0.9200",
        "no_price_dollars": "0.0800",
        "taker_side": "yes",
        "created_time": "2026-11-20T15:04:05.123456Z",
    }


def trades_body(numbers: range, cursor: str) -> bytes:
    return json.dumps({"trades": [trade(n) for n in numbers], "cursor": cursor}).encode()


# A minimal Kalshi-like HTTP/1.1 server

Route = Callable[[dict[str, list[str]]], tuple[int, bytes]]


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    verified: bool | None


@dataclass
class FakeKalshiRest:
    """Answers one request per connection; checks signatures like Kalshi when given a key."""

    public_key: PublicKey | None = None
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def route(self, path: str, status: int, body: bytes) -> None:
        self.routes[ROOT + path] = lambda query: (status, body)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{ROOT}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request = await read_request(reader)
            if request is not None:
                status, body = self._answer(*request)
                if status == HANG:
                    await reader.read()  # until the client gives up and closes
                else:
                    writer.write(response_bytes(status, body))
                    await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    def _answer(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
        path, _, query = target.partition("?")
        verified = None
        if self.public_key is not None:
            verified = verify_signature(
                self.public_key,
                timestamp_ms=headers.get("kalshi-access-timestamp", ""),
                method=method,
                path=path,
                signature_b64=headers.get("kalshi-access-signature", ""),
            )
        self.seen.append(Seen(method, target, headers, verified))
        if verified is False:
            return 401, b'{"error": {"code": "authentication_error", "message": "bad signature"}}'
        route = self.routes.get(path)
        if route is None:
            return 404, b'{"error": {"code": "not_found", "message": "not found"}}'
        return route(parse_qs(query))


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("ascii").split(" ", 2)
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def response_bytes(status: int, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


# Fixtures


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(params=["rsa", "ed25519"])
def private_key(request: pytest.FixtureRequest, rsa_key: rsa.RSAPrivateKey) -> PrivateKey:
    if request.param == "rsa":
        return rsa_key
    return ed25519.Ed25519PrivateKey.generate()


def make_signer(key: PrivateKey) -> KalshiSigner:
    ticks = itertools.count(1_763_700_000)  # a different second for every request
    return KalshiSigner("3f1c2e0a-1111-4222-8333-444455556666", key, clock=lambda: next(ticks))


@pytest.fixture
async def server() -> AsyncIterator[FakeKalshiRest]:
    fake = FakeKalshiRest()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def signed_server(private_key: PrivateKey) -> AsyncIterator[FakeKalshiRest]:
    fake = FakeKalshiRest(public_key=private_key.public_key())
    await fake.start()
    yield fake
    await fake.close()


def serve_all(fake: FakeKalshiRest) -> None:
    fake.route(f"/markets/{TICKER}", 200, json.dumps(MARKET_BODY).encode())
    orderbook = (FIXTURES / "rest_get_market_orderbook_response.json").read_bytes()
    fake.route(f"/markets/{TICKER}/orderbook", 200, orderbook)
    pages = {"": trades_body(range(3), "page-2"), "page-2": trades_body(range(3, 5), "")}
    fake.routes[ROOT + "/markets/trades"] = lambda query: (200, pages[query.get("cursor", [""])[0]])


# Signing


async def test_every_request_is_signed_over_the_path_without_query(signed_server, private_key):
    """RSA-PSS and Ed25519 signatures verify over timestamp + GET + /trade-api/v2/... (no query)."""
    serve_all(signed_server)
    async with KalshiRestClient(signed_server.url, signer=make_signer(private_key)) as rest:
        market = await rest.get_market(TICKER)
        await rest.get_orderbook(TICKER, depth=5)
        trades = await rest.get_trades(TICKER, min_ts=1_763_600_000)
    assert market.ticker == TICKER
    assert len(trades) == 5
    assert [seen.verified for seen in signed_server.seen] == [True] * 4
    assert signed_server.seen[1].target == f"{ROOT}/markets/{TICKER}/orderbook?depth=5"
    assert "?" in signed_server.seen[2].target
    stamps = [seen.headers["kalshi-access-timestamp"] for seen in signed_server.seen]
    assert len(set(stamps)) == 4  # a fresh signature per request
    assert {seen.headers["kalshi-access-key"] for seen in signed_server.seen} == {
        "3f1c2e0a-1111-4222-8333-444455556666"
    }


async def test_signature_from_the_wrong_key_is_an_authentication_failure(signed_server):
    """A 401 from a bad signature raises AuthenticationFailed naming the two settings to check."""
    serve_all(signed_server)
    other = make_signer(ed25519.Ed25519PrivateKey.generate())
    async with KalshiRestClient(signed_server.url, signer=other) as rest:
        with pytest.raises(AuthenticationFailed) as info:
            await rest.get_market(TICKER)
    message = str(info.value)
    assert "HTTP 401" in message
    assert "KALSHI_API_KEY_ID" in message
    assert "KALSHI_PRIVATE_KEY_PATH" in message


async def test_unsigned_client_sends_no_kalshi_headers(server):
    """Without a signer the public market endpoints are called without KALSHI-ACCESS-* headers."""
    serve_all(server)
    async with KalshiRestClient(server.url) as rest:
        await rest.get_market(TICKER)
    assert not any(name.startswith("kalshi-") for name in server.seen[0].headers)
    assert server.seen[0].headers["accept"] == "application/json"


# Bodies


async def test_get_market_decodes_the_market_exactly(server):
    """The market body decodes to RestMarket with exact Decimal prices; unknown fields ignored."""
    serve_all(server)
    async with KalshiRestClient(server.url) as rest:
        market = await rest.get_market(TICKER)
    assert market.status == "active"
    assert market.close_time == "2026-12-16T18:59:00Z"
    assert market.yes_bid_dollars == Decimal("0.91")
    assert market.last_price_dollars == Decimal("0.9200")
    assert market.volume_fp == Decimal("152340")
    assert server.seen[0].target == f"{ROOT}/markets/{TICKER}"


async def test_get_orderbook_decodes_the_published_example(server):
    """Kalshi's example orderbook body gives both legs, ascending, best bid last; depth 0 = all."""
    serve_all(server)
    async with KalshiRestClient(server.url) as rest:
        book = await rest.get_orderbook(TICKER)
    assert book.yes_dollars is not None
    assert book.no_dollars is not None
    assert len(book.yes_dollars) == 12
    assert book.yes_dollars[-1] == (Decimal("0.42"), Decimal("13"))
    assert book.no_dollars[-1] == (Decimal("0.56"), Decimal("17"))
    assert server.seen[0].target == f"{ROOT}/markets/{TICKER}/orderbook"


async def test_get_trades_follows_the_cursor_until_it_is_empty(server):
    """Pages are fetched with the previous cursor and concatenated; ticker/limit/min_ts sent."""
    serve_all(server)
    async with KalshiRestClient(server.url) as rest:
        trades = await rest.get_trades(TICKER, min_ts=1_763_600_000, limit=3)
    assert [t.trade_id[-1] for t in trades] == ["0", "1", "2", "3", "4"]
    assert trades[0].yes_price_dollars == Decimal("0.92")
    assert trades[0].count_fp == Decimal("10")
    first, second = (parse_qs(seen.target.partition("?")[2]) for seen in server.seen)
    assert first == {"ticker": [TICKER], "limit": ["3"], "min_ts": ["1763600000"]}
    assert second == {**first, "cursor": ["page-2"]}


async def test_get_trades_stops_after_max_pages(server):
    """A server that always has another page is read at most max_pages times."""
    server.route("/markets/trades", 200, trades_body(range(2), "again"))
    async with KalshiRestClient(server.url) as rest:
        trades = await rest.get_trades(TICKER, max_pages=3)
    assert len(trades) == 6
    assert len(server.seen) == 3


@pytest.mark.parametrize(("limit", "max_pages"), [(0, 1), (1001, 1), (10, 0)])
async def test_get_trades_refuses_out_of_range_arguments(limit, max_pages):
    """limit must be 1..1000 and max_pages at least 1; nothing is sent otherwise."""
    async with KalshiRestClient("http://127.0.0.1:9/trade-api/v2") as rest:
        with pytest.raises(ValueError, match="but got"):
            await rest.get_trades(TICKER, limit=limit, max_pages=max_pages)


async def test_ticker_is_quoted_as_one_path_segment(signed_server, private_key):
    """A ticker with '/' or spaces stays one path segment, and the signature covers that path."""
    odd = "ODD/TICK ER"
    body = json.dumps({"market": {**MARKET_BODY["market"], "ticker": odd}}).encode()
    signed_server.route("/markets/ODD%2FTICK%20ER", 200, body)
    async with KalshiRestClient(signed_server.url, signer=make_signer(private_key)) as rest:
        market = await rest.get_market(odd)
    assert market.ticker == odd
    assert signed_server.seen[0].verified is True


# Errors


RATE_LIMIT_BODY = (FIXTURES / "rest_429_body.json").read_bytes()


@pytest.mark.parametrize(
    ("status", "body", "error", "text", "error_status"),
    [
        (404, b'{"error": {"code": "not_found"}}', RestError, f"market not found: {TICKER}", 404),
        (429, RATE_LIMIT_BODY, RateLimited, "HTTP 429 on GET .*too many requests", None),
        (
            401,
            b"{}",
            AuthenticationFailed,
            "HTTP 401.*KALSHI_API_KEY_ID.*KALSHI_PRIVATE_KEY_PATH",
            None,
        ),
        (403, b"{}", AuthenticationFailed, "HTTP 403.*KALSHI_API_KEY_ID", None),
        (500, b'{"error": "internal"}', RestError, "HTTP 500 on GET .*internal", 500),
        (503, b"", RestError, r"HTTP 503 on GET .*\(empty body\)", 503),
        (
            200,
            b"<html>gateway says hi</html>",
            DecodeError,
            f"bad kalshi REST body for {TICKER}",
            None,
        ),
        (200, b'{"market": {"title": "no ticker"}}', DecodeError, "missing required field", None),
    ],
)
async def test_error_statuses_and_bad_bodies_map_to_named_errors(
    server, status, body, error, text, error_status
):
    """Each failure raises its watcher error with a message naming what happened."""
    server.route(f"/markets/{TICKER}", status, body)
    async with KalshiRestClient(server.url) as rest:
        with pytest.raises(error, match=text) as info:
            await rest.get_market(TICKER)
    if isinstance(info.value, RestError):
        assert info.value.status == error_status
    if isinstance(info.value, DecodeError):
        assert info.value.raw == body


async def test_unknown_market_in_orderbook_and_trades_names_the_ticker(server):
    """A 404 on any per-market endpoint says which market was not found."""
    async with KalshiRestClient(server.url) as rest:
        with pytest.raises(RestError, match="market not found: NOPE-1"):
            await rest.get_orderbook("NOPE-1")
        with pytest.raises(RestError, match="market not found: NOPE-1"):
            await rest.get_trades("NOPE-1")


async def test_timeout_becomes_a_rest_error(server):
    """A server that never answers gives RestError after the timeout, with the cause kept."""
    server.route(f"/markets/{TICKER}", HANG, b"")
    async with KalshiRestClient(server.url, timeout=100 * MS) as rest:
        with pytest.raises(
            RestError, match=r"timed out after .*s: GET http://127\.0\.0\.1"
        ) as info:
            await rest.get_market(TICKER)
    assert info.value.status is None
    assert info.value.__cause__ is not None


async def test_refused_connection_becomes_a_rest_error_without_credentials():
    """A closed port gives RestError; user:password in the base URL never shows in it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://user:hunter2@127.0.0.1:{port}/trade-api/v2"
    async with KalshiRestClient(url, timeout=1000 * MS) as rest:
        with pytest.raises(RestError, match=r"request failed: GET http://127\.0\.0\.1") as info:
            await rest.get_market(TICKER)
        assert "hunter2" not in repr(rest)
    assert "hunter2" not in str(info.value)
    assert info.value.status is None


# Lifecycle and repr


async def test_repr_names_host_and_signing_but_no_secrets(private_key):
    """The repr shows where and how the client talks, never the key or URL credentials."""
    signer = make_signer(private_key)
    rest = KalshiRestClient("https://user:pw@external-api.kalshi.com/trade-api/v2/", signer=signer)
    algorithm = "ed25519" if isinstance(private_key, ed25519.Ed25519PrivateKey) else "rsa-pss"
    assert repr(rest) == (
        f"<KalshiRestClient https://external-api.kalshi.com/trade-api/v2 signed ({algorithm}) open>"
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert pem.decode() not in repr(rest)
    await rest.aclose()
    assert rest.is_closed
    assert repr(rest).endswith("closed>")


async def test_context_manager_closes_the_client(server):
    """Leaving the async with block closes the connection pool."""
    async with KalshiRestClient(server.url) as rest:
        assert not rest.is_closed
    assert rest.is_closed


# Endpoints


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"demo": False}, Endpoints(PROD_WS_URL, PROD_API_URL)),
        ({"demo": True}, Endpoints(DEMO_WS_URL, DEMO_API_URL)),
        (
            {"demo": False, "ws_url": "ws://127.0.0.1:1/trade-api/ws/v2"},
            Endpoints("ws://127.0.0.1:1/trade-api/ws/v2", PROD_API_URL),
        ),
        (
            {"demo": True, "api_url": "http://127.0.0.1:2/trade-api/v2"},
            Endpoints(DEMO_WS_URL, "http://127.0.0.1:2/trade-api/v2"),
        ),
        ({"demo": True, "ws_url": "", "api_url": ""}, Endpoints(DEMO_WS_URL, DEMO_API_URL)),
    ],
)
def test_resolve_endpoints_picks_the_environment_and_lets_overrides_win(kwargs, expected):
    """Production or demo dedicated hosts by default; explicit URLs replace them."""
    assert resolve_endpoints(**kwargs) == expected


def test_endpoint_constants_are_the_dedicated_hosts():
    """The defaults are Kalshi's recommended dedicated hosts (kalshi-protocol.md §1)."""
    assert PROD_WS_URL == "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
    assert DEMO_WS_URL == "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"
    assert PROD_API_URL == "https://external-api.kalshi.com/trade-api/v2"
    assert DEMO_API_URL == "https://external-api.demo.kalshi.co/trade-api/v2"


# GET /events/fee_changes (kalshi-protocol.md §14): against the simulator over loopback


async def test_get_event_fee_changes_follows_the_cursor_over_the_simulators_pages():
    """Two changes a page: every change of the event, in order, across three pages; the
    multiplier (a JSON number) exact; a cleared override has both fields None; ``cursor``
    starts from a later page; another event's changes are not included."""
    hour = datetime(2026, 5, 1, tzinfo=UTC)
    async with SimulatedExchange(seed=3) as sim, KalshiRestClient(sim.api_url) as rest:
        sim.fee_changes.page_size = 2
        sim.fee_changes.add("KXELECT-26", "0.5", at=hour)
        sim.fee_changes.add("KXOTHER-26", "3", at=hour)
        sim.fee_changes.clear("KXELECT-26", at=hour + timedelta(hours=1))
        sim.fee_changes.add("KXELECT-26", "0.1", fee_type="flat", at=hour + timedelta(hours=2))
        sim.fee_changes.add("KXELECT-26", "1.25", at=hour + timedelta(hours=3))
        sim.fee_changes.add("KXELECT-26", "2", at=hour + timedelta(hours=4))
        changes = await rest.get_event_fee_changes("KXELECT-26")
        later = await rest.get_event_fee_changes("KXELECT-26", cursor="2")
        one_by_one = await rest.get_event_fee_changes("KXELECT-26", limit=1)
        none = await rest.get_event_fee_changes("KXNONE-26")
    multipliers = [c.fee_multiplier_override for c in changes]
    assert multipliers == [Decimal("0.5"), None, Decimal("0.1"), Decimal("1.25"), Decimal("2")]
    assert all(type(m) is Decimal for m in multipliers if m is not None)
    first, cleared = changes[0], changes[1]
    assert (first.event_ticker, first.series_ticker, first.fee_type_override) == (
        "KXELECT-26",
        "KXELECT",
        "quadratic",
    )
    assert first.scheduled_ts == "2026-05-01T00:00:00Z" and not first.cleared
    assert first.scheduled_ms == int(hour.timestamp() * 1000)
    assert cleared.cleared and cleared.fee_type_override is None
    assert changes[2].fee_type_override == "flat"
    assert later == changes[2:]
    assert one_by_one == changes
    assert none == []


async def test_get_event_fee_changes_sends_the_query_and_tolerates_absent_fields(server):
    """event_ticker, limit and cursor go in the query; a change with fields missing decodes
    (None), a missing envelope key is no change, and a 404 (an API without the endpoint) says
    what was not found."""
    pages = {
        "": b'{"event_fee_changes": [{"event_ticker": "KXE-26", "fee_multiplier_override": 0.3}'
        b', {"id": "x"}], "cursor": "c2"}',
        "c2": b"{}",
    }
    server.routes[ROOT + "/events/fee_changes"] = lambda q: (200, pages[q.get("cursor", [""])[0]])
    async with KalshiRestClient(server.url) as rest:
        changes = await rest.get_event_fee_changes("KXE-26", limit=50)
        assert [c.fee_multiplier_override for c in changes] == [Decimal("0.3"), None]
        assert changes[1].event_ticker is None and changes[1].scheduled_ms is None
        assert changes[1].cleared
        first, second = (parse_qs(seen.target.partition("?")[2]) for seen in server.seen)
        assert first == {"event_ticker": ["KXE-26"], "limit": ["50"]}
        assert second == {**first, "cursor": ["c2"]}
        del server.routes[ROOT + "/events/fee_changes"]
        with pytest.raises(RestError, match="event fee changes not found: KXE-26") as info:
            await rest.get_event_fee_changes("KXE-26")
        assert info.value.status == 404
        with pytest.raises(ValueError, match="but got 1001"):
            await rest.get_event_fee_changes("KXE-26", limit=1001)
