"""The simulated Kalshi exchange, tested over real loopback sockets with a plain client."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

import watcher.kalshi.sim.exchange as simulator
import watcher.kalshi.sim.market as sim_market
from tests.conftest import FIXTURES, MS
from watcher.kalshi.auth import KalshiSigner
from watcher.kalshi.messages import (
    RestMarketResponse,
    RestOrderbookResponse,
    RestTradesResponse,
    UnknownMessage,
    decode_message,
    decode_rest,
)
from watcher.kalshi.sim.exchange import SimulatedExchange, run_simulator
from watcher.kalshi.sim.market import SimMarket, SimMarketSpec

TIMEOUT = 2000 * MS
KALSHI = FIXTURES / "kalshi"
TICKER = "KXCPI-26NOV-T0.3"
PRICE = re.compile(r"^0\.\d{4}$")
REPLIES = {"ok", "error", "subscribed", "unsubscribed"}


def fixture(name: str) -> dict[str, Any]:
    example: dict[str, Any] = json.loads((KALSHI / name).read_text())
    return example


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedExchange]:
    async with SimulatedExchange(tick_interval=0.01, trade_probability=1.0, seed=7) as exchange:
        yield exchange


@pytest.fixture
async def ws(sim: SimulatedExchange) -> AsyncIterator[ClientConnection]:
    async with connect(sim.ws_url) as client:
        yield client


async def send(ws: ClientConnection, command: dict[str, Any] | str) -> None:
    await ws.send(command if isinstance(command, str) else json.dumps(command))


async def recv(ws: ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
    frame: dict[str, Any] = json.loads(raw)
    return frame


async def recv_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool], limit: int = 500
) -> list[dict[str, Any]]:
    """Frames up to and including the first one for which ``done`` is true."""
    frames = []
    for _ in range(limit):
        frames.append(await recv(ws))
        if done(frames[-1]):
            return frames
    raise AssertionError(f"no matching frame in {limit} frames")


async def subscribe(ws: ClientConnection, channels: list[str], **params: Any) -> list[int]:
    await send(ws, {"id": 1, "cmd": "subscribe", "params": {"channels": channels, **params}})
    acks = [await recv(ws) for _ in channels]
    assert [a["type"] for a in acks] == ["subscribed"] * len(channels)
    return [a["msg"]["sid"] for a in acks]


async def command(ws: ClientConnection, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Send a command and read frames until the reply with its id."""
    await send(ws, body)
    return await recv_until(ws, lambda f: f.get("id") == body["id"] and f["type"] in REPLIES)


# ---------------------------------------------------------------------------------------------
# Handshake authentication


@pytest.mark.parametrize("kind", ["rsa-pss", "ed25519"])
async def test_signed_handshake_is_accepted_and_its_timestamp_recorded(kind, rsa_key):
    """A handshake signed with an RSA-PSS or Ed25519 key on file is accepted."""
    key = rsa_key if kind == "rsa-pss" else ed25519.Ed25519PrivateKey.generate()
    signer = KalshiSigner("key-1", key)
    async with SimulatedExchange(public_keys={"key-1": key.public_key()}) as sim:
        headers = signer.websocket_headers()
        async with connect(sim.ws_url, additional_headers=headers) as ws:
            assert await command(ws, {"id": 1, "cmd": "list_subscriptions"})
        async with connect(sim.ws_url, additional_headers=signer.websocket_headers()):
            pass
        assert sim.stats.connections_accepted == 2
        assert sim.stats.handshake_timestamps[0] == headers["KALSHI-ACCESS-TIMESTAMP"]
        assert len(sim.stats.handshake_timestamps) == 2


def _bad_headers(case: str, key: rsa.RSAPrivateKey) -> dict[str, str]:
    if case == "missing":
        return {}
    if case == "unknown key id":
        return KalshiSigner("key-2", key).websocket_headers()
    if case == "other key":
        return KalshiSigner("key-1", ed25519.Ed25519PrivateKey.generate()).websocket_headers()
    if case == "other path":
        return KalshiSigner("key-1", key).headers("GET", "/trade-api/v2/markets")
    if case == "stale timestamp":
        old = KalshiSigner("key-1", key, clock=lambda: datetime.now(UTC).timestamp() - 120)
        return old.websocket_headers()
    headers = KalshiSigner("key-1", key).websocket_headers()
    headers["KALSHI-ACCESS-SIGNATURE"] = "not base64!"
    return headers


@pytest.mark.parametrize(
    "case", ["missing", "unknown key id", "other key", "other path", "stale timestamp", "garbage"]
)
async def test_handshake_without_a_valid_signature_gets_http_401(case, rsa_key):
    """Missing, foreign, misdirected, stale or garbled signatures are refused with 401."""
    async with SimulatedExchange(public_keys={"key-1": rsa_key.public_key()}) as sim:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(sim.ws_url, additional_headers=_bad_headers(case, rsa_key)):
                pass
        assert caught.value.response.status_code == 401
        assert sim.stats.handshakes_rejected == 1
        assert sim.stats.connections_accepted == 0


async def test_lenient_mode_accepts_unsigned_handshakes(sim, ws):
    """Without public keys the simulator accepts unsigned connections."""
    await sim.wait_connected(1, timeout=TIMEOUT)
    assert sim.stats.connections_accepted == 1
    assert sim.stats.handshake_timestamps == []


# ---------------------------------------------------------------------------------------------
# Data channels


async def test_subscribe_gives_one_sid_per_channel_ticker_without_seq_trade_with_contiguous_seq(
    sim, ws
):
    """Two channels give two sids; ticker frames carry no seq, trade seqs count from 1."""
    ticker_sid, trade_sid = await subscribe(ws, ["ticker", "trade"], market_tickers=[TICKER])
    assert ticker_sid != trade_sid
    frames = await recv_until(ws, lambda f: f.get("seq") == 5 and f["sid"] == trade_sid)
    tickers = [f for f in frames if f["type"] == "ticker"]
    trades = [f for f in frames if f["type"] == "trade"]
    assert tickers and all("seq" not in f and f["sid"] == ticker_sid for f in tickers)
    assert [f["seq"] for f in trades] == [1, 2, 3, 4, 5]


async def test_every_frame_the_simulator_sends_decodes(sim, ws):
    """Every frame type the simulator sends decodes to a known typed message."""
    channels = ["ticker", "trade", "orderbook_delta", "market_lifecycle_v2"]
    await send(
        ws, {"id": 1, "cmd": "subscribe", "params": {"channels": channels, "market_ticker": TICKER}}
    )
    raw = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(30)]
    await sim.create_market("KXNEW-26NOV-T1")
    await sim.settle(TICKER, "yes")
    for body in (
        {"id": 5, "cmd": "list_subscriptions"},
        {"id": 6, "cmd": "nope"},
        {
            "id": 7,
            "cmd": "update_subscription",
            "params": {"sid": 2, "action": "delete_markets", "market_tickers": ["X"]},
        },
        {"id": 8, "cmd": "unsubscribe", "params": {"sids": [1]}},
    ):
        await send(ws, body)
    while b'"unsubscribed"' not in _bytes(raw[-1]):
        raw.append(await asyncio.wait_for(ws.recv(), TIMEOUT))
    decoded = [decode_message(r) for r in raw]
    assert not [d for d in decoded if isinstance(d, UnknownMessage)]
    kinds = {json.loads(r)["type"] for r in raw}
    assert kinds == {
        "subscribed",
        "orderbook_snapshot",
        "ticker",
        "trade",
        "orderbook_delta",
        "market_lifecycle_v2",
        "ok",
        "error",
        "unsubscribed",
    }


def _bytes(raw: str | bytes) -> bytes:
    return raw.encode() if isinstance(raw, str) else raw


async def test_ticker_and_trade_frames_have_every_field_of_kalshis_examples(sim, ws):
    """Ticker and trade frames carry all the fields of Kalshi's published examples."""
    await subscribe(ws, ["ticker", "trade"], market_tickers=[TICKER])
    frames = await recv_until(ws, lambda f: f["type"] == "trade")
    ticker = next(f for f in frames if f["type"] == "ticker")
    trade = frames[-1]
    example_ticker, example_trade = fixture("ticker.json"), fixture("trade.json")
    assert set(ticker) == set(example_ticker)
    assert set(ticker["msg"]) == set(example_ticker["msg"])
    assert set(trade) == set(example_trade)
    assert set(trade["msg"]) == set(example_trade["msg"])
    msg = ticker["msg"]
    assert all(PRICE.match(msg[k]) for k in ("price_dollars", "yes_bid_dollars", "yes_ask_dollars"))
    assert Decimal("0.01") <= Decimal(msg["yes_bid_dollars"]) < Decimal(msg["yes_ask_dollars"])
    assert Decimal(msg["yes_ask_dollars"]) <= Decimal("0.99")
    t = trade["msg"]
    assert Decimal(t["yes_price_dollars"]) + Decimal(t["no_price_dollars"]) == 1
    assert uuid.UUID(t["trade_id"]).version == 4
    assert t["taker_side"] == t["taker_outcome_side"]


def test_random_walk_stays_in_the_band_on_a_sub_penny_grid():
    """The walk keeps 0.01 <= bid < ask <= 0.99, spreads of at most 5c, half-cent prices."""
    rng = random.Random(3)
    market = SimMarket(TICKER, None, rng, 0)
    bids, spreads = set(), []
    for tick in range(2000):
        update = market.step(rng, tick, 0.3)
        assert update.ticker is not None
        bid, ask = update.ticker.yes_bid_dollars, update.ticker.yes_ask_dollars
        assert Decimal("0.01") <= bid < ask <= Decimal("0.99")
        bids.add(bid)
        spreads.append(ask - bid)
    assert any(b % Decimal("0.01") for b in bids)
    assert max(spreads) <= Decimal("0.05")
    assert sum(Decimal("0.01") <= s for s in spreads) > len(spreads) * 0.8
    assert len(market.trades) > 400


async def test_orderbook_snapshot_then_contiguous_deltas_track_the_quote(sim, ws):
    """A book built from snapshot plus deltas has the quote's best bids on both sides."""
    sim.market(TICKER).pinned = False
    (sid,) = await subscribe(ws, ["orderbook_delta"], market_tickers=[TICKER])
    frames = await recv_until(ws, lambda f: f.get("seq") == 30)
    sim.set_quote(TICKER, yes_bid="0.4050", yes_ask="0.4300")
    frames += await command(ws, {"id": 9, "cmd": "list_subscriptions"})
    book = [f for f in frames if f.get("sid") == sid]
    assert book[0]["type"] == "orderbook_snapshot"
    assert [f["seq"] for f in book] == list(range(1, len(book) + 1))
    levels: dict[tuple[str, Decimal], Decimal] = {}
    for side in ("yes", "no"):
        for price, size in book[0]["msg"].get(f"{side}_dollars_fp", []):
            levels[side, Decimal(price)] = Decimal(size)
    for f in book[1:]:
        key = (f["msg"]["side"], Decimal(f["msg"]["price_dollars"]))
        levels[key] = levels.get(key, Decimal(0)) + Decimal(f["msg"]["delta_fp"])
    live = {k for k, v in levels.items() if v}
    assert max(p for s, p in live if s == "yes") == Decimal("0.4050")
    assert max(p for s, p in live if s == "no") == Decimal("0.5700")


@pytest.mark.parametrize(("use_yes_price", "best_no"), [(False, "0.5700"), (True, "0.4300")])
async def test_use_yes_price_chooses_the_no_side_pricing(use_yes_price, best_no):
    """NO levels are NO-leg prices by default and YES-leg prices with use_yes_price."""
    spec = SimMarketSpec(yes_bid="0.4000", yes_ask="0.4300", pinned=True)
    async with SimulatedExchange(markets={TICKER: spec}) as sim:
        async with connect(sim.ws_url) as ws:
            await subscribe(
                ws, ["orderbook_delta"], market_ticker=TICKER, use_yes_price=use_yes_price
            )
            snapshot = await recv(ws)
    no = [Decimal(p) for p, _ in snapshot["msg"]["no_dollars_fp"]]
    assert no == sorted(no)
    best = min(no) if use_yes_price else max(no)
    assert best == Decimal(best_no)


async def test_unknown_tickers_are_accepted_silently_and_send_nothing(sim, ws):
    """Subscribing to an unknown ticker is not an error; only known markets stream."""
    await subscribe(ws, ["ticker"], market_tickers=["KX-UNKNOWN-1", TICKER])
    frames = [await recv(ws) for _ in range(10)]
    assert {f["msg"]["market_ticker"] for f in frames} == {TICKER}


async def test_ticker_without_a_market_filter_streams_every_known_market():
    """A ticker subscription without markets gets every market the simulator knows."""
    markets = {"KXA-1": SimMarketSpec(), "KXB-2": SimMarketSpec()}
    async with SimulatedExchange(tick_interval=0.01, markets=markets) as sim:
        async with connect(sim.ws_url) as ws:
            await subscribe(ws, ["ticker"])
            await sim.wait_subscribed("ticker", "ANY", timeout=TIMEOUT)
            seen: set[str] = set()
            while seen != set(markets):
                seen.add((await recv(ws))["msg"]["market_ticker"])


async def test_fill_and_market_positions_are_accepted_but_never_send(sim, ws):
    """Private channels subscribe fine and stay silent: watcher does not trade."""
    await subscribe(ws, ["fill", "market_positions", "ticker"], market_ticker=TICKER)
    await recv_until(ws, lambda f: f["type"] == "ticker")
    assert set(sim.stats.frames_sent) == {"subscribed", "ticker"}


async def test_set_quote_pushes_a_ticker_frame_and_pins_the_market(sim, ws):
    """set_quote sends the pinned quote at once and the market stops walking."""
    sim.set_quote(TICKER, yes_bid="0.4550", yes_ask="0.4700", last="0.4600")
    await subscribe(ws, ["ticker"], market_ticker=TICKER)
    sim.set_quote(TICKER, yes_bid="0.4550", yes_ask="0.4700", last="0.4600")
    msg = (await recv(ws))["msg"]
    assert (msg["yes_bid_dollars"], msg["yes_ask_dollars"]) == ("0.4550", "0.4700")
    assert msg["price_dollars"] == "0.4600"
    assert sim.market(TICKER).pinned
    with pytest.raises(ValueError, match="yes_bid < yes_ask"):
        sim.set_quote(TICKER, yes_bid="0.50", yes_ask="0.40")


async def test_settle_emits_determined_then_settled_and_rest_reports_the_result(sim, ws):
    """settle sends determined (result, settlement_value) then settled; REST is finalized."""
    (sid,) = await subscribe(ws, ["market_lifecycle_v2"])
    await sim.settle(TICKER, "no")
    determined, settled = await recv(ws), await recv(ws)
    assert (determined["sid"], determined["seq"], settled["seq"]) == (sid, 1, 2)
    assert determined["msg"]["event_type"] == "determined"
    assert determined["msg"]["result"] == "no"
    assert Decimal(determined["msg"]["settlement_value"]) == 0
    assert settled["msg"]["event_type"] == "settled"
    async with httpx.AsyncClient(base_url=sim.api_url) as http:
        market = (await http.get(f"/markets/{TICKER}")).json()["market"]
    assert (market["status"], market["result"]) == ("finalized", "no")


async def test_create_market_announces_it_like_kalshis_created_example(sim, ws):
    """create_market sends a created lifecycle frame shaped like Kalshi's example."""
    await subscribe(ws, ["market_lifecycle_v2"])
    await sim.create_market("KXNEW-26NOV-T1", SimMarketSpec(title="New market"))
    frame, example = await recv(ws), fixture("market_lifecycle_v2_created.json")
    assert set(frame) == set(example)
    assert set(frame["msg"]) == set(example["msg"])
    assert frame["msg"]["additional_metadata"]["title"] == "New market"
    with pytest.raises(ValueError, match="already exists"):
        await sim.create_market("KXNEW-26NOV-T1")


# ---------------------------------------------------------------------------------------------
# Commands


async def test_subscribing_again_adds_tickers_to_the_same_sid_and_answers_ok(sim, ws):
    """A repeated subscribe is idempotent: same sid, tickers added, answered with ok."""
    (sid,) = await subscribe(ws, ["trade"], market_tickers=["KXA-1"])
    replies = await command(
        ws,
        {"id": 2, "cmd": "subscribe", "params": {"channels": ["trade"], "market_ticker": "KXB-2"}},
    )
    ok = replies[-1]
    assert (ok["type"], ok["sid"]) == ("ok", sid)
    assert ok["msg"]["market_tickers"] == ["KXA-1", "KXB-2"]


async def test_initial_ticker_snapshot_by_market_id_and_skip_ticker_ack(sim, ws):
    """market_ids select known markets, send_initial_snapshot sends the quote at once,
    and skip_ticker_ack leaves the market list out of later ok answers."""
    market_id = sim.market(TICKER).market_id
    sim.set_quote(TICKER, yes_bid="0.2000", yes_ask="0.2200")
    (sid,) = await subscribe(
        ws, ["ticker"], market_ids=[market_id], send_initial_snapshot=True, skip_ticker_ack=True
    )
    first = await recv(ws)
    assert (first["sid"], first["msg"]["market_ticker"]) == (sid, TICKER)
    assert first["msg"]["yes_bid_dollars"] == "0.2000"
    again = {"channels": ["ticker"], "market_ticker": "KXA-1"}
    ok = (await command(ws, {"id": 2, "cmd": "subscribe", "params": again}))[-1]
    assert (ok["type"], ok["sid"], ok["msg"]) == ("ok", sid, {})


async def test_unsubscribe_answers_unsubscribed_with_the_sids_seq(sim, ws):
    """unsubscribe answers one unsubscribed per sid, carrying that sid's seq."""
    ticker_sid, trade_sid = await subscribe(ws, ["ticker", "trade"], market_ticker=TICKER)
    frames = await recv_until(ws, lambda f: f.get("seq") == 2)
    await send(ws, {"id": 3, "cmd": "unsubscribe", "params": {"sids": [ticker_sid, trade_sid]}})
    frames += await recv_until(ws, lambda f: f["type"] == "unsubscribed" and f["sid"] == trade_sid)
    last_seq = max(f["seq"] for f in frames if f["type"] == "trade")
    done = [f for f in frames if f["type"] == "unsubscribed"]
    assert [(f["id"], f["sid"]) for f in done] == [(3, ticker_sid), (3, trade_sid)]
    assert done[1]["seq"] == last_seq


async def test_update_subscription_adds_and_deletes_markets_and_answers_the_full_list(sim, ws):
    """add_markets and delete_markets answer ok with the whole market list after the change."""
    (sid,) = await subscribe(ws, ["ticker"], market_tickers=["KXA-1"])
    add = {
        "id": 4,
        "cmd": "update_subscription",
        "params": {"sids": [sid], "action": "add_markets", "market_tickers": ["KXB-2"]},
    }
    ok = (await command(ws, add))[-1]
    assert (ok["type"], ok["sid"], ok["msg"]["market_tickers"]) == ("ok", sid, ["KXA-1", "KXB-2"])
    delete = {
        "id": 5,
        "cmd": "update_subscription",
        "params": {"sid": sid, "action": "delete_markets", "market_tickers": ["KXA-1"]},
    }
    ok = (await command(ws, delete))[-1]
    assert ok["msg"]["market_tickers"] == ["KXB-2"]


async def test_get_snapshot_sends_a_snapshot_with_the_command_id_and_keeps_the_subscription(
    sim, ws
):
    """get_snapshot answers snapshots tagged with the command id; the market list stays."""
    (sid,) = await subscribe(ws, ["orderbook_delta"], market_tickers=["KXA-1"])
    await send(
        ws,
        {
            "id": 6,
            "cmd": "update_subscription",
            "params": {
                "sids": [sid],
                "action": "get_snapshot",
                "market_tickers": ["KXA-1", "KXB-2"],
            },
        },
    )
    frames = await recv_until(
        ws, lambda f: f.get("id") == 6 and f["msg"]["market_ticker"] == "KXB-2"
    )
    answers = [f for f in frames if f.get("id") == 6]
    assert [f["type"] for f in answers] == ["orderbook_snapshot"] * 2
    listing = await command(
        ws,
        {
            "id": 7,
            "cmd": "update_subscription",
            "params": {"sid": sid, "action": "add_markets", "market_tickers": ["KXA-1"]},
        },
    )
    assert listing[-1]["msg"]["market_tickers"] == ["KXA-1"]


async def test_list_subscriptions_answers_ok_with_each_channel_and_sid(sim, ws):
    """list_subscriptions answers type ok with a list of {channel, sid}."""
    sids = await subscribe(ws, ["ticker", "market_lifecycle_v2"], market_ticker=TICKER)
    reply = (await command(ws, {"id": 3, "cmd": "list_subscriptions"}))[-1]
    assert reply["type"] == "ok"
    assert reply["msg"] == [
        {"channel": "ticker", "sid": sids[0]},
        {"channel": "market_lifecycle_v2", "sid": sids[1]},
    ]


ERROR_CASES = [
    ("not json", "{oops", 1),
    ("wrong type", {"cmd": "subscribe", "params": {"channels": "ticker"}}, 1),
    ("params missing", {"cmd": "subscribe"}, 2),
    ("channels missing", {"cmd": "subscribe", "params": {}}, 3),
    ("sids missing", {"cmd": "unsubscribe", "params": {"sids": []}}, 4),
    ("unknown command", {"cmd": "subscribe_all"}, 5),
    ("unknown sid", {"cmd": "unsubscribe", "params": {"sids": [9999]}}, 7),
    ("channel trades", {"cmd": "subscribe", "params": {"channels": ["trades"]}}, 8),
    ("channel ticker_v2", {"cmd": "subscribe", "params": {"channels": ["ticker_v2"]}}, 8),
    ("channel multivariate", {"cmd": "subscribe", "params": {"channels": ["multivariate"]}}, 8),
    (
        "two sids",
        {
            "cmd": "update_subscription",
            "params": {"sids": ["SID", 9999], "action": "add_markets", "market_tickers": ["X"]},
        },
        12,
    ),
    (
        "sid and sids",
        {
            "cmd": "update_subscription",
            "params": {"sid": "SID", "sids": ["SID"], "action": "add_markets"},
        },
        12,
    ),
    ("no sid", {"cmd": "update_subscription", "params": {"action": "add_markets"}}, 12),
    ("bad action", {"cmd": "update_subscription", "params": {"sid": "SID", "action": "merge"}}, 13),
    (
        "snapshot of ticker",
        {
            "cmd": "update_subscription",
            "params": {"sid": "SID", "action": "get_snapshot", "market_tickers": ["X"]},
        },
        13,
    ),
    ("book without markets", {"cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
    (
        "add without markets",
        {"cmd": "update_subscription", "params": {"sid": "SID", "action": "add_markets"}},
        14,
    ),
    ("action missing", {"cmd": "update_subscription", "params": {"sid": "SID"}}, 15),
]


@pytest.mark.parametrize(("case", "body", "code"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
async def test_bad_commands_get_kalshis_error_codes(sim, ws, case, body, code):
    """Each malformed command is answered with Kalshi's error code and the command id."""
    (sid,) = await subscribe(ws, ["ticker"], market_ticker=TICKER)
    if isinstance(body, dict):
        text = json.dumps({"id": 42, **body}).replace('"SID"', str(sid))
    else:
        text = body
    await send(ws, text)
    error = (await recv_until(ws, lambda f: f["type"] == "error"))[-1]
    assert error["msg"]["code"] == code
    assert error["msg"]["msg"] == simulator.ERROR_TEXT[code]
    assert error.get("id") == (None if code == 1 and case == "not json" else 42)


# ---------------------------------------------------------------------------------------------
# REST


async def test_rest_market_reports_quote_status_close_time_and_title():
    """GET /markets/{ticker} reports the live quote as dollar strings plus metadata."""
    close = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    spec = SimMarketSpec(
        title="CPI above 0.3%", yes_bid="0.4550", yes_ask="0.4700", close_time=close
    )
    async with SimulatedExchange(markets={TICKER: spec}) as sim:
        async with httpx.AsyncClient(base_url=sim.api_url) as http:
            response = await http.get(f"/markets/{TICKER}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    market = decode_rest(response.content, RestMarketResponse).market
    assert (market.yes_bid_dollars, market.yes_ask_dollars) == (
        Decimal("0.4550"),
        Decimal("0.4700"),
    )
    assert market.no_bid_dollars == Decimal("0.5300")
    assert (market.status, market.title, market.result) == ("active", "CPI above 0.3%", "")
    assert market.close_time == "2027-01-02T03:04:05Z"


async def test_rest_market_closes_after_close_time_and_unknown_markets_are_404():
    """A market past close_time reports closed; UNKNOWN or unknown-marked tickers are 404."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    markets = {"KXOLD-1": SimMarketSpec(close_time=past), "KXGONE-1": SimMarketSpec(unknown=True)}
    async with SimulatedExchange(markets=markets) as sim:
        async with httpx.AsyncClient(base_url=sim.api_url) as http:
            old = await http.get("/markets/KXOLD-1")
            gone = [
                await http.get(p)
                for p in (
                    "/markets/KXGONE-1",
                    "/markets/KX-UNKNOWN-2",
                    "/markets/KX-UNKNOWN-2/orderbook",
                    "/nowhere",
                )
            ]
            posted = await http.post(f"/markets/{TICKER}")
    assert old.json()["market"]["status"] == "closed"
    assert [r.status_code for r in gone] == [404] * 4
    assert all("error" in r.json() for r in gone)
    assert posted.status_code == 405


async def test_rest_trades_lists_the_trades_the_simulator_sent_newest_first(sim, ws):
    """GET /markets/trades pages through the trades sent for a ticker, newest first."""
    await subscribe(ws, ["trade"], market_ticker=TICKER)
    frames = [await recv(ws) for _ in range(5)]
    sent = [f["msg"]["trade_id"] for f in frames]
    async with httpx.AsyncClient(base_url=sim.api_url) as http:
        first = await http.get("/markets/trades", params={"ticker": TICKER, "limit": 2})
        body = decode_rest(first.content, RestTradesResponse)
        rest = await http.get(
            "/markets/trades", params={"ticker": TICKER, "limit": 1000, "cursor": body.cursor}
        )
        future = await http.get("/markets/trades", params={"ticker": TICKER, "min_ts": 4 * 10**9})
        bad = await http.get("/markets/trades", params={"limit": "many"})
    listed = [t.trade_id for t in body.trades] + [t["trade_id"] for t in rest.json()["trades"]]
    assert set(sent) <= set(listed)
    stamps = [t.ts_ms for t in body.trades]
    assert len(stamps) == 2 and stamps == sorted(stamps, reverse=True)
    assert body.cursor and rest.json()["cursor"] == ""
    assert set(body.trades[0].__struct_fields__) <= set(rest.json()["trades"][0])
    assert future.json() == {"trades": [], "cursor": ""}
    assert bad.status_code == 400


async def test_rest_orderbook_is_ascending_like_kalshis_example(sim):
    """GET /markets/{ticker}/orderbook lists bids ascending, best bid last."""
    sim.set_quote(TICKER, yes_bid="0.4000", yes_ask="0.4300")
    async with httpx.AsyncClient(base_url=sim.api_url) as http:
        response = await http.get(f"/markets/{TICKER}/orderbook")
        shallow = (await http.get(f"/markets/{TICKER}/orderbook", params={"depth": 1})).json()
    assert set(response.json()) == set(fixture("rest_get_market_orderbook_response.json"))
    book = decode_rest(response.content, RestOrderbookResponse).orderbook_fp
    yes = [p for p, _ in book.yes_dollars]
    no = [p for p, _ in book.no_dollars]
    assert yes == sorted(yes) and no == sorted(no)
    assert (yes[-1], no[-1]) == (Decimal("0.4000"), Decimal("0.5700"))
    assert [p for p, _ in shallow["orderbook_fp"]["yes_dollars"]] == ["0.4000"]


async def test_signed_rest_requests_must_verify_against_their_path(rsa_key):
    """Unsigned REST is public; a signature, when present, must match the request path."""
    signer = KalshiSigner("key-1", rsa_key)
    path = f"/trade-api/v2/markets/{TICKER}"
    async with SimulatedExchange(public_keys={"key-1": rsa_key.public_key()}) as sim:
        async with httpx.AsyncClient(base_url=sim.api_url) as http:
            unsigned = await http.get(f"/markets/{TICKER}")
            signed = await http.get(f"/markets/{TICKER}?x=1", headers=signer.headers("GET", path))
            wrong = await http.get(
                f"/markets/{TICKER}", headers=signer.headers("GET", "/trade-api/v2/markets")
            )
    assert [unsigned.status_code, signed.status_code, wrong.status_code] == [200, 200, 401]


async def test_rest_rate_limit_fault_answers_429_with_kalshis_body(sim):
    """rate_limit_rest makes the next REST requests answer 429 too many requests."""
    sim.rate_limit_rest(times=1)
    async with httpx.AsyncClient(base_url=sim.api_url) as http:
        limited = await http.get(f"/markets/{TICKER}")
        after = await http.get(f"/markets/{TICKER}")
    assert limited.status_code == 429
    assert limited.json() == fixture("rest_429_body.json")
    assert after.status_code == 200


# ---------------------------------------------------------------------------------------------
# Fault injection


async def test_drop_closes_every_connection_without_a_close_frame(sim, ws):
    """drop aborts the TCP connection: the client sees no close frame."""
    await subscribe(ws, ["ticker"], market_ticker=TICKER)
    sim.drop()
    with pytest.raises(ConnectionClosedError) as caught:
        while True:
            await recv(ws)
    assert caught.value.rcvd is None


async def test_accept_then_close_accepts_handshakes_then_closes_them_at_once(sim):
    """The next N handshakes succeed and are closed straight away; then service resumes."""
    sim.accept_then_close(times=2)
    for _ in range(2):
        async with connect(sim.ws_url) as ws:
            with pytest.raises(ConnectionClosed) as caught:
                await recv(ws)
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1001
    async with connect(sim.ws_url) as ws:
        assert (await command(ws, {"id": 1, "cmd": "list_subscriptions"}))[-1]["type"] == "ok"
    assert sim.stats.connections_accepted == 3


async def test_silence_stops_frames_and_pongs_until_it_ends(sim, ws):
    """A silenced connection sends nothing and answers no ping, and is not closed."""
    await subscribe(ws, ["ticker"], market_ticker=TICKER)
    await recv(ws)
    sim.silence(None)
    sent = sim.stats.frames_sent["ticker"]
    pong = await ws.ping()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pong), 100 * MS)
    assert sim.stats.frames_sent["ticker"] == sent
    sim.silence(0)
    await asyncio.wait_for(pong, TIMEOUT)
    while sim.stats.frames_sent["ticker"] == sent:
        await recv(ws)


async def test_timed_silence_ends_by_itself(sim, ws):
    """silence(seconds) lifts after the given time."""
    await subscribe(ws, ["ticker"], market_ticker=TICKER)
    sim.silence(50 * MS)
    pong = await ws.ping()
    await asyncio.wait_for(pong, TIMEOUT)


async def test_heartbeat_pings_are_sent_unless_silenced(monkeypatch, caplog):
    """The server pings with body 'heartbeat' on its own schedule."""
    monkeypatch.setattr(simulator, "HEARTBEAT_INTERVAL", 0.01)
    caplog.set_level(logging.DEBUG, logger="websockets.client")
    async with SimulatedExchange() as sim:
        async with connect(sim.ws_url) as ws:
            while not any(
                "PING" in r.getMessage() and "heartbeat" in r.getMessage() for r in caplog.records
            ):
                await asyncio.wait_for(asyncio.shield(ws.ping()), TIMEOUT)


@pytest.mark.parametrize("channel", ["trade", "market_lifecycle_v2", "orderbook_delta"])
async def test_seq_gap_skips_one_seq_number_on_the_next_frame(channel):
    """seq_gap makes the next frame of a channel jump one seq number."""
    spec = SimMarketSpec(yes_bid="0.4000", yes_ask="0.4300", pinned=True)
    async with SimulatedExchange(markets={TICKER: spec}) as sim, connect(sim.ws_url) as ws:
        (sid,) = await subscribe(ws, [channel], market_ticker=TICKER)
        first = await _sequenced(sim, ws, channel, "0.4100")
        sim.seq_gap(channel)
        second = await _sequenced(sim, ws, channel, "0.4200")
    assert second[0]["seq"] == first[-1]["seq"] + 2
    assert first[-1]["sid"] == second[0]["sid"] == sid


async def _sequenced(sim, ws, channel: str, price: str) -> list[dict[str, Any]]:
    """Make one event on ``channel``; return the frames it caused on that channel."""
    if channel == "trade":
        sim.push_trade(TICKER, yes_price=price, count="10")
    elif channel == "market_lifecycle_v2":
        await sim.create_market(f"KXNEW-{price}")
    else:
        sim.set_quote(TICKER, yes_bid=price, yes_ask="0.4300")
    frames = await command(ws, {"id": 99, "cmd": "list_subscriptions"})
    return [f for f in frames if f["type"] == channel]


async def test_skipped_trade_is_still_listed_for_rest_backfill():
    """The trade behind a skipped seq is never sent but GET /markets/trades lists it."""
    async with SimulatedExchange(trade_probability=0.0) as sim, connect(sim.ws_url) as ws:
        await subscribe(ws, ["trade"], market_ticker=TICKER)
        sent = [sim.push_trade(TICKER, yes_price="0.4500", count="5")]
        sim.seq_gap("trade")
        sent.append(sim.push_trade(TICKER, yes_price="0.4600", count="7"))
        frames = [await recv(ws) for _ in range(2)]
        async with httpx.AsyncClient(base_url=sim.api_url) as http:
            listed = (await http.get("/markets/trades", params={"ticker": TICKER})).json()
    assert [f["seq"] for f in frames] == [1, 3]
    assert [f["msg"]["trade_id"] for f in frames] == sent == sim.stats.market(TICKER).trade_ids
    missing = [t for t in listed["trades"] if t["trade_id"] not in sent]
    assert len(missing) == 1 and missing[0]["yes_price_dollars"] == "0.4600"


async def test_malformed_sends_raw_frames_as_given(sim, ws):
    """malformed sends text as is, and bytes unchecked (invalid UTF-8 fails the client)."""
    await sim.malformed('{"type": "ticker", "msg": ')
    assert await asyncio.wait_for(ws.recv(), TIMEOUT) == '{"type": "ticker", "msg": '
    await sim.malformed(b"\xff\xfe not utf-8")
    with pytest.raises(ConnectionClosedError) as caught:
        await recv(ws)
    assert caught.value.sent is not None and caught.value.sent.code == 1007
    assert sim.stats.frames_sent["malformed"] == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "unauthorized"}),
        (403, {"error": "forbidden"}),
        (429, {"error": "too many requests"}),
    ],
)
async def test_reject_handshakes_answers_the_next_ones_with_an_http_status(sim, status, body):
    """The next N handshakes get the given HTTP status; later ones are accepted."""
    sim.reject_handshakes(status, times=2)
    for _ in range(2):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(sim.ws_url):
                pass
        assert caught.value.response.status_code == status
        assert json.loads(caught.value.response.body) == body
    async with connect(sim.ws_url):
        pass
    assert (sim.stats.handshakes_rejected, sim.stats.connections_accepted) == (2, 1)


@pytest.mark.parametrize(("code", "terminal"), [(10, True), (25, True), (18, False)])
async def test_error_frame_is_scoped_to_a_sid_and_terminal_codes_end_it(sim, ws, code, terminal):
    """error_frame sends an error with sid and seq; codes 10 and 25 remove the sid."""
    (sid,) = await subscribe(ws, ["trade"], market_ticker=TICKER)
    await recv_until(ws, lambda f: f["type"] == "trade")
    await sim.error_frame(code, sid)
    error = (await recv_until(ws, lambda f: f["type"] == "error"))[-1]
    assert (error["sid"], error["msg"]["code"]) == (sid, code)
    assert error["seq"] >= 2
    listing = (await command(ws, {"id": 5, "cmd": "list_subscriptions"}))[-1]
    assert (listing["msg"] == []) is terminal
    with pytest.raises(ValueError, match="no open subscription with sid 999"):
        await sim.error_frame(10, 999)


# ---------------------------------------------------------------------------------------------
# Stats, waits, lifecycle


async def test_stats_count_exactly_the_frames_written(sim, ws):
    """Per-market counters equal what the client received; commands are recorded in order."""
    sids = await subscribe(ws, ["ticker", "trade"], market_ticker=TICKER)
    await send(ws, {"id": 9, "cmd": "unsubscribe", "params": {"sids": sids}})
    frames = await recv_until(ws, lambda f: f["type"] == "unsubscribed" and f["sid"] == sids[1])
    tickers = [f for f in frames if f["type"] == "ticker"]
    trades = [f["msg"]["trade_id"] for f in frames if f["type"] == "trade"]
    assert sim.stats.market(TICKER).ticker_frames == len(tickers)
    assert sim.stats.market(TICKER).trade_ids == trades
    assert [type(c).__name__ for c in sim.stats.commands[0]] == ["Subscribe", "Unsubscribe"]


async def test_waits_time_out_with_a_clear_error(sim):
    """wait_connected and wait_subscribed raise TimeoutError naming what they waited for."""
    with pytest.raises(TimeoutError, match="connection #1"):
        await sim.wait_connected(1, timeout=20 * MS)
    with pytest.raises(TimeoutError, match="ticker subscription for KXA-1"):
        await sim.wait_subscribed("ticker", "KXA-1", timeout=20 * MS)


async def test_wait_subscribed_returns_once_a_client_subscribes(sim, ws):
    """wait_subscribed returns when a connection covers the ticker on the channel."""
    waiter = asyncio.create_task(sim.wait_subscribed("trade", TICKER, timeout=TIMEOUT))
    await subscribe(ws, ["trade"], market_tickers=[TICKER])
    await waiter


async def test_urls_need_a_started_server_and_repr_shows_state():
    """ws_url and api_url exist after start; repr tells where the server listens."""
    sim = SimulatedExchange()
    with pytest.raises(RuntimeError, match="not started"):
        _ = sim.ws_url
    assert "not started" in repr(sim)
    async with sim:
        assert re.match(r"^ws://127\.0\.0\.1:\d+/trade-api/ws/v2$", sim.ws_url)
        assert sim.api_url.endswith("/trade-api/v2")
        assert sim.ws_url in repr(sim)


async def test_run_simulator_serves_until_cancelled():
    """run_simulator keeps the exchange up until its task is cancelled."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(run_simulator("127.0.0.1", port, seed=1))
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                async with connect(f"ws://127.0.0.1:{port}/trade-api/ws/v2") as ws:
                    await command(ws, {"id": 1, "cmd": "list_subscriptions"})
                    break
            except OSError:
                await asyncio.sleep(10 * MS)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("module", [simulator, sim_market])
def test_modules_export_what_they_declare(module):
    """Every name in __all__ exists."""
    assert all(hasattr(module, name) for name in module.__all__)
