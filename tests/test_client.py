"""The transport against the simulated exchange over real loopback sockets."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from watcher.errors import AuthenticationFailed
from watcher.kalshi import messages as m
from watcher.kalshi.auth import KalshiSigner
from watcher.kalshi.client import KalshiWebSocketClient, LateTrade
from watcher.kalshi.handlers import MessageHandlers
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.exchange import SimulatedExchange

from .conftest import MS

MARKET = "KXCPI-26JAN-T0.3"
KEY_ID = "test-key"
WAIT = 5000 * MS


class Recorder:
    """Collects every event the client dispatches."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.changed = asyncio.Event()

    def __call__(self, event: object) -> None:
        self.events.append(event)
        self.changed.set()

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
async def sim(key) -> AsyncIterator[SimulatedExchange]:
    async with SimulatedExchange(
        public_keys={KEY_ID: key.public_key()}, tick_interval=0.02, seed=7
    ) as exchange:
        yield exchange


def make_client(sim: SimulatedExchange, key, **options) -> KalshiWebSocketClient:
    options.setdefault("min_reconnect_delay", 0.02)
    options.setdefault("max_reconnect_delay", 0.5)
    return KalshiWebSocketClient(url=sim.ws_url, signer=KalshiSigner(KEY_ID, key), **options)


@pytest.fixture
async def running(sim, key) -> AsyncIterator[tuple[KalshiWebSocketClient, Recorder]]:
    client = make_client(sim, key)
    recorder = Recorder()
    client.register_handler("*", recorder)
    await client.subscribe(["ticker", "trade"], [MARKET])
    task = asyncio.create_task(client.run())
    yield client, recorder
    await client.disconnect()
    await asyncio.wait_for(task, WAIT)


async def run_until_tickers(client: KalshiWebSocketClient, recorder: Recorder, count: int) -> None:
    """Subscribe ``ticker`` for MARKET, run until ``recorder`` has ``count`` events, stop."""
    await client.subscribe(["ticker"], [MARKET])
    task = asyncio.create_task(client.run())
    await recorder.wait_for(lambda: len(recorder.events) >= count)
    await client.disconnect()
    await asyncio.wait_for(task, WAIT)


def tickers_after(recorder: Recorder, start: int) -> int:
    return len([e for e in recorder.events[start:] if isinstance(e, m.Ticker)])


@pytest.mark.parametrize(
    "make_key",
    [
        ed25519.Ed25519PrivateKey.generate,
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["ed25519", "rsa-pss"],
)
async def test_signed_connection_is_verified_and_streams_ticks(make_key) -> None:
    """The simulator verifies our RSA-PSS or Ed25519 signature; ticker frames flow."""
    key = make_key()
    async with SimulatedExchange(public_keys={KEY_ID: key.public_key()}, tick_interval=0.02) as sim:
        client = make_client(sim, key)
        recorder = Recorder()
        client.register_handler("ticker", recorder)
        await client.connect()
        await client.subscribe(["ticker"], [MARKET])
        task = asyncio.create_task(client.run())
        await recorder.wait_for(lambda: len(recorder.events) >= 3)
        await client.disconnect()
        await task
    assert all(e.msg.market_ticker == MARKET for e in recorder.events)


async def test_wrong_key_is_fatal_with_a_message_naming_the_env_vars(sim) -> None:
    """HTTP 401 stops the client at once and says which variables to check."""
    client = make_client(sim, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(AuthenticationFailed) as info:
        await asyncio.wait_for(client.run(), WAIT)
    assert "HTTP 401" in str(info.value)
    assert "KALSHI_API_KEY_ID" in str(info.value)
    assert "KALSHI_PRIVATE_KEY_PATH" in str(info.value)
    assert sim.stats.connections_accepted == 0


async def test_forbidden_handshake_is_fatal_too(sim, key) -> None:
    """HTTP 403 is treated like 401: retrying cannot help."""
    sim.reject_handshakes(403, times=5)
    with pytest.raises(AuthenticationFailed, match="HTTP 403"):
        await asyncio.wait_for(make_client(sim, key).run(), WAIT)


async def test_drop_reconnects_with_a_fresh_signature_and_resubscribes(sim, running) -> None:
    """After a dropped connection: new signature, same markets subscribed, ticks flow again."""
    client, recorder = running
    await recorder.wait_for(lambda: len(recorder.of(m.Ticker)) >= 2)
    sim.drop()
    await sim.wait_connected(2, timeout=WAIT)
    start = len(recorder.events)
    await recorder.wait_for(lambda: tickers_after(recorder, start) >= 2)
    assert len(set(sim.stats.handshake_timestamps)) == 2
    first, second = sim.stats.commands[0], sim.stats.commands[1]
    assert [c.params.market_tickers for c in second if isinstance(c, m.Subscribe)] == [
        c.params.market_tickers for c in first if isinstance(c, m.Subscribe)
    ]
    assert client.stats.reconnects == 1
    # Frames of the new connection carry the new sids only.
    new_sids = set(client.protocol.subscriptions)
    assert all(e.sid in new_sids for e in recorder.events[start:] if isinstance(e, m.Ticker))


async def test_accept_then_close_backs_off_growing_then_recovers(sim, key, caplog) -> None:
    """A server that accepts and closes at once is not hammered: delays grow until it recovers."""
    sim.accept_then_close(times=4)
    client = make_client(sim, key, min_reconnect_delay=0.1, max_reconnect_delay=5.0)
    recorder = Recorder()
    client.register_handler("ticker", recorder)
    await client.subscribe(["ticker"], [MARKET])
    with caplog.at_level(logging.INFO, logger="watcher.feed"):
        task = asyncio.create_task(client.run())
        await recorder.wait_for(lambda: len(recorder.events) >= 1, within=2 * WAIT)
        await client.disconnect()
        await task
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+) s", caplog.text)]
    assert len(delays) >= 4
    # Each delay lies in (d/2, d] with d doubling from 0.1 s: they never shrink, and grow fast.
    assert delays[:4] == sorted(delays[:4])
    assert delays[3] >= 3 * delays[0]
    assert sim.stats.connections_accepted == 5


async def test_rate_limited_handshake_waits_at_least_the_rate_limit_delay(sim, key, caplog):
    """HTTP 429 backs off for at least rate_limit_delay, then the client recovers."""
    sim.reject_handshakes(429, times=1)
    client = make_client(sim, key, rate_limit_delay=0.3)
    recorder = Recorder()
    client.register_handler("ticker", recorder)
    await client.subscribe(["ticker"], [MARKET])
    with caplog.at_level(logging.INFO, logger="watcher.feed"):
        task = asyncio.create_task(client.run())
        await recorder.wait_for(lambda: len(recorder.events) >= 1)
        await client.disconnect()
        await task
    assert "HTTP 429 too many requests; retrying in 0.30 s" in caplog.text


async def test_watchdog_reconnects_a_silent_connection(sim, key) -> None:
    """A connection that stops answering pings is dropped and replaced."""
    client = make_client(sim, key, watchdog_timeout=0.4)
    recorder = Recorder()
    client.register_handler("ticker", recorder)
    await client.subscribe(["ticker"], [MARKET])
    task = asyncio.create_task(client.run())
    await recorder.wait_for(lambda: len(recorder.events) >= 1)
    sim.silence(None)  # only the current connection goes silent
    await sim.wait_connected(2, timeout=WAIT)
    start = len(recorder.events)
    await recorder.wait_for(lambda: len(recorder.events) > start)
    await client.disconnect()
    await task
    assert client.stats.reconnects == 1


async def test_orderbook_gap_triggers_get_snapshot_and_rebuilds_the_book(sim, key) -> None:
    """A seq gap on orderbook_delta asks for a snapshot; the local book equals the server's."""
    client = make_client(sim, key)
    handlers = MessageHandlers()
    recorder = Recorder()
    client.register_handler("orderbook_snapshot", handlers.handle_orderbook_snapshot)
    client.register_handler("orderbook_delta", handlers.handle_orderbook_delta)
    client.register_handler("*", recorder)
    await client.subscribe(["orderbook_delta"], [MARKET])
    task = asyncio.create_task(client.run())
    await recorder.wait_for(lambda: len(recorder.of(m.OrderbookDelta)) >= 3)
    sim.seq_gap("orderbook_delta")
    await recorder.wait_for(
        lambda: any(
            isinstance(e, m.OrderbookSnapshot) and e.id is not None for e in recorder.events
        )
    )
    commands = sim.stats.commands[0]
    assert any(
        isinstance(c, m.UpdateSubscription) and c.params.action == "get_snapshot" for c in commands
    )
    sim.set_quote(MARKET, yes_bid="0.4000", yes_ask="0.4300")  # pin: the book stops moving
    await asyncio.sleep(100 * MS)
    async with KalshiRestClient(sim.api_url) as rest:
        server_book = await rest.get_orderbook(MARKET)
    await client.disconnect()
    await task
    book = handlers.get_orderbook(MARKET)
    assert book is not None and book.is_valid
    expected = MessageHandlers().books
    expected.apply_rest(MARKET, server_book)
    assert book == expected.get(MARKET)


async def test_trade_gap_is_backfilled_over_rest_and_marked_late(sim, key) -> None:
    """The trade skipped by a seq gap arrives over REST as a LateTrade, exactly once."""
    async with KalshiRestClient(sim.api_url) as rest:
        client = make_client(sim, key, rest=rest)
        recorder = Recorder()
        client.register_handler("*", recorder)
        await client.subscribe(["trade"], [MARKET])
        task = asyncio.create_task(client.run())
        await sim.wait_subscribed("trade", MARKET, timeout=WAIT)
        sim.market(MARKET).pinned = True
        sim.push_trade(MARKET, yes_price="0.4100", count="5.00")
        await recorder.wait_for(lambda: len(recorder.of(m.Trade)) >= 1)
        sim.seq_gap("trade")
        sim.push_trade(MARKET, yes_price="0.4200", count="7.00")
        await recorder.wait_for(lambda: len(recorder.of(LateTrade)) >= 1)
        await client.disconnect()
        await task
    live = {e.msg.trade_id for e in recorder.of(m.Trade)}
    late = [e.trade.msg.trade_id for e in recorder.of(LateTrade)]
    assert len(late) == len(set(late)) == 1
    assert not set(late) & live
    assert set(late) | live == set(sim.stats.market(MARKET).trade_ids) | set(late)
    assert client.stats.sequence_gaps == 1


async def test_malformed_frames_are_counted_and_the_next_tick_is_delivered(sim, running):
    """Invalid JSON, invalid UTF-8 and unknown types never stop the feed."""
    client, recorder = running
    await recorder.wait_for(lambda: len(recorder.of(m.Ticker)) >= 1)
    await sim.malformed(b"{not json")
    await sim.malformed('{"type":"ticker_v2","sid":1,"msg":{}}')
    await sim.malformed('{"type":"ticker","sid":1,"msg":{"market_ticker":"X"}}')
    start = len(recorder.events)
    await recorder.wait_for(lambda: tickers_after(recorder, start) >= 2)
    assert client.stats.decode_errors == 2
    assert client.stats.unknown == 1
    assert client.stats.reconnects == 0


@pytest.mark.parametrize("code", [10, 25])
async def test_terminal_channel_error_resubscribes_the_channel(sim, running, code: int):
    """Kalshi's terminal errors 10 and 25 make the client subscribe that channel again."""
    client, recorder = running
    await recorder.wait_for(lambda: len(recorder.of(m.Ticker)) >= 1)
    sid = client.protocol.sid_of("ticker")
    await sim.error_frame(code, sid)
    await recorder.wait_for(lambda: client.protocol.sid_of("ticker") not in (None, sid))
    start = len(recorder.events)
    await recorder.wait_for(lambda: tickers_after(recorder, start) >= 1)
    assert client.stats.reconnects == 0


async def test_drain_receives_everything_sent_before_unsubscribing(sim, running) -> None:
    """drain() unsubscribes and reads until acknowledged: no frame the server sent is lost."""
    client, recorder = running
    await recorder.wait_for(lambda: len(recorder.of(m.Ticker)) >= 5)
    await client.drain(grace=WAIT)
    assert client.protocol.subscriptions == {}
    received = len(recorder.of(m.Ticker))
    assert received == sim.stats.market(MARKET).ticker_frames


async def test_a_raising_handler_is_logged_and_the_feed_goes_on(sim, key, caplog) -> None:
    """A handler's bug is logged with its traceback and counted; the other handlers of that
    frame still run, later frames are delivered, and the connection is kept."""
    client = make_client(sim, key)
    recorder = Recorder()
    calls = 0

    def broken(event: object) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"bug number {calls}")

    client.register_handler("ticker", broken)
    client.register_handler("ticker", recorder)
    await run_until_tickers(client, recorder, 8)
    assert calls >= len(recorder.events) >= 8  # broken ran first on every frame
    assert client.stats.handler_errors == calls
    assert client.stats.reconnects == 0
    errors = [r for r in caplog.records if r.name == "watcher.feed" and r.levelno == logging.ERROR]
    assert errors[0].getMessage() == (
        "handler test_a_raising_handler_is_logged_and_the_feed_goes_on.<locals>.broken raised"
        " on a Ticker; the feed goes on (1 handler errors so far)"
    )
    assert errors[0].exc_info is not None and "bug number 1" in str(errors[0].exc_info[1])
    assert len(errors) == 5  # a traceback for the first few, then only every 1000th


async def test_signed_headers_never_reach_websockets_debug_log(sim, key, caplog) -> None:
    """With websockets logging the handshake at DEBUG, the key id and signature are masked on
    both ends (the simulator's server log too)."""
    caplog.set_level(logging.DEBUG, logger="websockets")
    client = make_client(sim, key)
    recorder = Recorder()
    client.register_handler("ticker", recorder)
    await run_until_tickers(client, recorder, 1)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("websockets")]
    assert "> KALSHI-ACCESS-SIGNATURE: [redacted]" in lines
    assert "> KALSHI-ACCESS-KEY: [redacted]" in lines
    assert "< KALSHI-ACCESS-SIGNATURE: [redacted]" in lines
    assert any(line.startswith("> KALSHI-ACCESS-TIMESTAMP: ") for line in lines)
    assert not any(KEY_ID in line for line in lines)
