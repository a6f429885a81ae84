"""The fault matrix of issue 6: one test per row, over real loopback sockets and real SQLite.

Each fault is injected with the simulator's fault injection (or a real process signal, a real
closed port, a real file-size limit) and the test checks what the issue says must happen. The
rows are listed with their test names and results in RELIABILITY.md.

Two ways of running the service are used: in-process (:func:`running`, a :class:`Service`
against a :class:`SimulatedExchange` of the test's loop) when the test needs to reach inside,
and ``watcher start`` as a real subprocess (``support.spawn``) signed with a key pair made here,
pointed at the test's simulator through ``KALSHI_WS_URL``/``KALSHI_API_URL``, when the row is
about the process itself (signals, exit codes, a file-size limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import resource
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from watcher.app import Endpoint, Service
from watcher.domain.alert import Alert
from watcher.domain.trades_file import load_positions, parse_positions
from watcher.kalshi import messages as m
from watcher.kalshi.auth import KalshiSigner
from watcher.kalshi.client import MAX_FRAME_BYTES, KalshiWebSocketClient
from watcher.kalshi.handlers import MessageHandlers
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.notify import Outbox, Sender
from watcher.rules import load_rules
from watcher.settings import settings_from_env
from watcher.store.sqlite_alerts import SQLiteAlertStore
from watcher.store.storage import SQLiteStorage
from watcher.store.writer import StoreWriter

from .conftest import MS
from .support import (
    KEY_ID,
    RULES,
    T1,
    T2,
    TRADES,
    WAIT,
    HttpRecorder,
    atomic_write,
    count,
    finish,
    free_port,
    poll,
    rows,
    spawn,
    watcher_env,
    write_key,
)

#: The store writer commits at the latest this long after the first unwritten row.
FLUSH_INTERVAL = float(inspect.signature(StoreWriter).parameters["flush_interval"].default)

# Fixtures (the shared helpers are in tests/support.py)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "trades.json").write_text(json.dumps(TRADES, indent=2))
    (tmp_path / "rules.yaml").write_text(RULES)
    return tmp_path


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
async def sim(key) -> AsyncIterator[SimulatedExchange]:
    async with SimulatedExchange(
        public_keys={KEY_ID: key.public_key()}, tick_interval=0.02, seed=11
    ) as exchange:
        yield exchange


@pytest.fixture
async def hook() -> AsyncIterator[HttpRecorder]:
    async with HttpRecorder() as server:
        yield server


# Helpers: the service in-process


@dataclass
class Seen:
    """Every ticker and trade frame the client dispatched: (connection #, sid, sid known then)."""

    client: KalshiWebSocketClient
    frames: list[tuple[int, int | None, bool]] = field(default_factory=list)
    task: asyncio.Task[str] | None = None  # the service's run()

    def alive(self) -> bool:
        """True while the service runs; its exception if it ended (a poll fails fast)."""
        if self.task is not None and self.task.done():
            self.task.result()
            raise AssertionError("the service stopped by itself")
        return True

    def __call__(self, event: object) -> None:
        if isinstance(event, m.Ticker | m.Trade):
            known = event.sid in self.client.protocol.subscriptions
            self.frames.append((self.client.stats.connects, event.sid, known))

    def on(self, connection: int) -> list[int | None]:
        return [sid for n, sid, _ in self.frames if n == connection]


@contextlib.asynccontextmanager
async def running(
    workdir: Path,
    sim: SimulatedExchange,
    key: ed25519.Ed25519PrivateKey,
    hook_url: str,
    *,
    client_options: dict[str, Any] | None = None,
    wait_subscribed: bool = True,
    stale_after: str | None = None,
) -> AsyncIterator[tuple[Service, Seen]]:
    """Run a :class:`Service` on ``workdir``'s files against ``sim`` until the block ends."""
    settings = settings_from_env(
        trades=str(workdir / "trades.json"),
        rules=str(workdir / "rules.yaml"),
        db=str(workdir / "w.db"),
        environ={"HOOK_URL": hook_url},
        stale_after=stale_after,
    )
    svc = Service(
        settings,
        portfolio=load_positions(settings.trades_path),
        rules=load_rules(settings.rules_path, env=settings.env),
        endpoint=Endpoint(sim.ws_url, sim.api_url, KalshiSigner(KEY_ID, key)),
        client_options={"min_reconnect_delay": 0.02, **(client_options or {})},
    )
    svc.config.debounce_ms = 50
    assert svc.client is not None  # signed: the WebSocket client, not keyless polling
    seen = Seen(svc.client)
    seen.client.register_handler("*", seen)
    stop = asyncio.Event()
    task = seen.task = asyncio.create_task(svc.run(stop))
    try:
        if wait_subscribed:
            await sim.wait_subscribed("ticker", T2, timeout=WAIT)
        yield svc, seen
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT)


def ticks_in(svc: Service) -> int:
    """Ticker frames the service's client has received so far."""
    assert svc.client is not None
    return int(svc.client.stats.by_type.get("ticker", 0))


async def wait_for_alerts(db: Path, rule: str, n: int) -> None:
    await poll(lambda: len(alerts(db, rule)) >= n)


def stored_ticks(workdir: Path) -> int:
    return count(workdir / "w.db", "select count(*) from tickers")


def alerts(db: Path, rule: str | None = None) -> list[tuple[str, str, str]]:
    """(rule, title, body) of every recorded alert, oldest first."""
    sql = "select rule, title, body from alerts"
    found = rows(db, sql + " where rule = ? order by id", rule) if rule else rows(db, sql)
    return [(str(r), str(t), str(b)) for r, t, b in found]


# Row 1: server drops mid-stream


async def test_dropped_connection_reconnects_resigned_resubscribed_and_loses_no_tick(
    workdir, sim, key, hook
):
    """After a drop: a new signature, the same markets subscribed again, every frame carries
    a sid the client knows (new sids only after the reconnect), and every tick is stored."""
    async with running(workdir, sim, key, hook.url) as (svc, seen):
        await poll(lambda: len(seen.on(1)) >= 10)
        sim.drop()
        await sim.wait_connected(2, timeout=WAIT)
        await poll(lambda: len(seen.on(2)) >= 10)
    first, second = sim.stats.commands[0], sim.stats.commands[1]

    def subscribed(commands: list[m.Command]) -> list[tuple[list[str], list[str] | None]]:
        return [
            (c.params.channels, c.params.market_tickers)
            for c in commands
            if isinstance(c, m.Subscribe)
        ]

    assert subscribed(second) == subscribed(first)
    assert sorted({t for _, tickers in subscribed(second) for t in tickers or ()}) == [T1, T2]
    stamps = sim.stats.handshake_timestamps
    assert len(stamps) == 2 and stamps[1] > stamps[0]  # signed again, later
    assert all(known for _, _, known in seen.frames)
    assert not set(seen.on(1)) & set(seen.on(2))
    assert seen.client.stats.reconnects == 1
    # Frames still inside the aborted TCP connection are the fault's own loss; every frame
    # that arrived is stored.
    assert stored_ticks(workdir) == ticks_in(svc) <= sim.stats.frames_sent["ticker"]


async def test_trades_made_while_disconnected_are_backfilled_after_the_reconnect(
    workdir, sim, key, hook
):
    """A trade Kalshi reports while the connection is down is fetched over REST once the
    client is back (a new connection restarts seq, so no gap can reveal it), stored late."""
    for ticker in (T1, T2):
        sim.market(ticker).pinned = True
    options = {"min_reconnect_delay": 0.5}
    async with running(workdir, sim, key, hook.url, client_options=options) as (_, seen):
        await sim.wait_subscribed("trade", T1, timeout=WAIT)
        sim.push_trade(T1, yes_price="0.4100", count="5.00")
        await poll(lambda: seen.client.stats.by_type.get("trade", 0) == 1)
        sim.drop()
        await poll(lambda: not seen.client.is_connected)
        missed = sim.push_trade(T1, yes_price="0.4300", count="9.00")  # nobody is connected
        await sim.wait_subscribed("trade", T1, timeout=WAIT)
        await poll(lambda: seen.client.stats.backfilled_trades >= 1, within=1000 * MS)
    late = rows(workdir / "w.db", "select trade_id from trades where late = 1")
    assert late == [(missed,)]


# Row 2: server accepts then closes at once, repeatedly


async def test_accept_then_close_backs_off_growing_and_recovers(workdir, sim, key, hook, caplog):
    """Four handshakes accepted and closed at once: the retry delays grow (no hammering), and
    the fifth connection streams ticks into the database."""
    sim.accept_then_close(times=4)
    options = {"min_reconnect_delay": 0.1, "max_reconnect_delay": 5.0}
    with caplog.at_level(logging.INFO, logger="watcher.feed"):
        async with running(workdir, sim, key, hook.url, client_options=options) as (svc, _):
            await poll(lambda: ticks_in(svc) >= 3)
    assert stored_ticks(workdir) == ticks_in(svc)
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+) s", caplog.text)]
    assert len(delays) == 4, caplog.text
    # Delay n lies in [d/2, d] with d = 0.1 s · 2ⁿ: never shrinking, 4× after two steps.
    assert delays == sorted(delays)
    assert delays[2] >= 2 * delays[0] and delays[3] >= 3 * delays[0]
    assert sim.stats.connections_accepted == 5


# Row 3: server goes silent (TCP open, no frames, no pings)


STALE_RULES = RULES + "  - {name: feed stale, type: stale, after: 1s, severity: critical}\n"


async def test_silent_server_is_dropped_by_the_watchdog_with_stale_and_recovery_alerts(
    workdir, sim, key, hook
):
    """A silent connection is replaced by the watchdog. Meanwhile the service alerts "feed
    stale" (WATCHER_STALE_AFTER) and the "feed stale" rule alerts for each market; once ticks
    flow again, each sends its recovery message."""
    (workdir / "rules.yaml").write_text(STALE_RULES)
    db = workdir / "w.db"
    options = {"watchdog_timeout": 4.0}
    async with running(workdir, sim, key, hook.url, client_options=options, stale_after="1") as (
        svc,
        seen,
    ):
        await poll(lambda: ticks_in(svc) >= 5)
        sim.silence(None)
        async with asyncio.timeout(WAIT):
            while sim.stats.connections_accepted < 2:  # drive the rules clock fast meanwhile
                await svc.pipeline.on_clock()
                await asyncio.sleep(0.1)
        await poll(lambda: len(alerts(db, "feed stale")) == 4)  # 2 stale, then 2 recovered
        await poll(lambda: len(alerts(db, "feed-stale")) == 2)  # the service's own
        await poll(
            lambda: "no ticker update" in " ".join(r.payload["message"] for r in hook.delivered)
        )
    stale = alerts(db, "feed stale")
    assert all(body.startswith("no ticker update for ") for _, _, body in stale[:2]), stale
    assert all(body.startswith("data flowing again") for _, _, body in stale[2:]), stale
    assert sorted(title for _, title, _ in stale[:2]) == [
        f"{T1} · feed stale",
        f"{T2} · feed stale",
    ]
    assert sorted(title for _, title, _ in stale[2:]) == [
        f"{T1} · feed stale",
        f"{T2} · feed stale",
    ]
    assert [title for _, title, _ in alerts(db, "feed-stale")] == [
        "feed stale: no market data",
        "feed recovered: market data flowing again",
    ]
    assert seen.client.stats.reconnects == 1


# Row 4: trade seq gap


TRADE_RULES = RULES + "  - {name: any trade, type: trade_size, min_contracts: 1, cooldown: 0}\n"


async def test_trade_gap_is_backfilled_over_rest_stored_late_and_seen_by_rules(
    workdir, sim, key, hook
):
    """The trade a seq gap skipped comes back over REST: stored with late = 1, and the
    trade_size rule alerts on it, saying it was reported late."""
    (workdir / "rules.yaml").write_text(TRADE_RULES)
    db = workdir / "w.db"
    for ticker in (T1, T2):
        sim.market(ticker).pinned = True  # no random trades: the test makes them
    async with running(workdir, sim, key, hook.url) as (_, seen):
        await sim.wait_subscribed("trade", T1, timeout=WAIT)
        sim.push_trade(T1, yes_price="0.4100", count="5.00")
        await poll(lambda: len(alerts(db, "any trade")) == 1)
        sim.seq_gap("trade")
        sim.push_trade(T1, yes_price="0.4200", count="7.00")
        await poll(lambda: len(alerts(db, "any trade")) == 3)
    sent = set(sim.stats.market(T1).trade_ids)
    stored = {trade_id: late for trade_id, late in rows(db, "select trade_id, late from trades")}
    late = [trade_id for trade_id, flag in stored.items() if flag]
    assert len(sent) == 2 and {t for t, flag in stored.items() if not flag} == sent
    assert len(late) == 1 and late[0] not in sent
    assert seen.client.stats.sequence_gaps == 1 and seen.client.stats.backfilled_trades == 1
    bodies = [body for _, _, body in alerts(db, "any trade")]
    assert sum("reported late" in body for body in bodies) == 1


# Row 5: orderbook seq gap


async def test_orderbook_gap_resyncs_with_get_snapshot_and_matches_the_server_book(
    sim, key, tmp_path
):
    """A seq gap on orderbook_delta asks for a snapshot (get_snapshot, no reconnect); both
    snapshots are stored, and the rebuilt book equals the server's book."""
    storage = SQLiteStorage(str(tmp_path / "book.db"))
    await storage.connect()
    handlers = MessageHandlers(storage)
    client = KalshiWebSocketClient(
        url=sim.ws_url, signer=KalshiSigner(KEY_ID, key), min_reconnect_delay=0.02
    )
    client.register_handler("orderbook_snapshot", handlers.handle_orderbook_snapshot)
    client.register_handler("orderbook_delta", handlers.handle_orderbook_delta)
    await client.subscribe(["orderbook_delta"], [T1])
    task = asyncio.create_task(client.run())
    try:
        await poll(lambda: sim.stats.frames_sent["orderbook_delta"] >= 3)
        sim.seq_gap("orderbook_delta")
        await poll(lambda: sim.stats.frames_sent["orderbook_snapshot"] >= 2)
        sim.set_quote(T1, yes_bid="0.4000", yes_ask="0.4300")  # pinned: the book stops moving
        async with KalshiRestClient(sim.api_url) as rest:
            await poll(lambda: client.stats.by_type.get("orderbook_snapshot", 0) >= 2)
            await asyncio.sleep(100 * MS)
            server_book = await rest.get_orderbook(T1)
    finally:
        await client.disconnect()
        await asyncio.wait_for(task, WAIT)
        await storage.close()
    assert any(
        isinstance(c, m.UpdateSubscription) and c.params.action == "get_snapshot"
        for c in sim.stats.commands[0]
    )
    assert client.stats.sequence_gaps == 1 and client.stats.reconnects == 0
    book = handlers.get_orderbook(T1)
    expected = MessageHandlers().books
    expected.apply_rest(T1, server_book)
    assert book is not None and book.is_valid and book == expected.get(T1)
    assert count(tmp_path / "book.db", "select count(*) from orderbook_snapshots") == 2


# Row 6: malformed JSON, unknown type, missing fields, invalid UTF-8, an oversized frame


BAD_FRAMES: dict[str, tuple[Callable[[], bytes], str]] = {
    # kind: (payload, what the client counts)
    "malformed-json": (lambda: b'{"type": "ticker", "msg": {', "decode_errors"),
    "not-an-object": (lambda: b"[1, 2, 3]", "decode_errors"),
    "missing-fields": (
        lambda: b'{"type": "ticker", "sid": 1, "msg": {"market_ticker": "X"}}',
        "decode_errors",
    ),
    "unknown-type": (lambda: b'{"type": "ticker_v3", "sid": 1, "msg": {}}', "unknown"),
    # The client reads frames as bytes (recv(decode=False)) and leaves UTF-8 to the decoder.
    "invalid-utf8": (lambda: b'{"type": "ticker", "msg": "\xff\xfe"}', "decode_errors"),
    "invalid-utf8-type": (lambda: b'{"type": "tick\xffer", "sid": 1, "msg": {}}', "decode_errors"),
    # RFC 6455: a frame over the client's max_size fails the connection (close code 1009).
    "oversized": (lambda: b'"' + b"x" * (MAX_FRAME_BYTES + 1) + b'"', "reconnects"),
}


@pytest.mark.parametrize("kind", list(BAD_FRAMES))
async def test_bad_frame_is_logged_and_counted_and_the_next_tick_is_stored(
    workdir, sim, key, hook, caplog, kind
):
    """A bad frame never stops the service: it is logged and counted (a frame that breaks
    the WebSocket rules costs one reconnect), and the ticks after it are stored."""
    payload, counter = BAD_FRAMES[kind]
    with caplog.at_level(logging.INFO, logger="watcher.feed"):
        async with running(workdir, sim, key, hook.url) as (svc, seen):
            await poll(lambda: ticks_in(svc) >= 3)
            await sim.malformed(payload())
            before = seen.client.stats.by_type["ticker"]
            await poll(lambda: seen.alive() and ticks_in(svc) >= before + 5)
    stats = seen.client.stats
    counters = {"decode_errors": 0, "unknown": 0, "reconnects": 0}
    counters[counter] = 1
    assert {name: getattr(stats, name) for name in counters} == counters
    expected_log = {
        "decode_errors": "dropping undecodable frame (1 so far)",
        "unknown": "unknown frame type 'ticker_v3' (1 so far)",
        "reconnects": "reconnected to ws://",
    }[counter]
    assert expected_log in caplog.text
    assert stored_ticks(workdir) == stats.by_type["ticker"]


async def test_reconnect_after_an_oversized_frame_names_the_cause(sim, key, caplog):
    """The reconnect log line says why the connection ended: the close code the client sent
    (1009, frame too big), not "no close frame (connection dropped)"."""
    client = KalshiWebSocketClient(
        url=sim.ws_url, signer=KalshiSigner(KEY_ID, key), min_reconnect_delay=0.02
    )
    await client.subscribe(["ticker"], [T1])
    with caplog.at_level(logging.INFO, logger="watcher.feed"):
        task = asyncio.create_task(client.run())
        await sim.wait_subscribed("ticker", T1, timeout=WAIT)
        await sim.malformed(BAD_FRAMES["oversized"][0]())
        await sim.wait_connected(2, timeout=WAIT)
        await client.disconnect()
        await asyncio.wait_for(task, WAIT)
    [line] = [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
    assert "1009" in line, line


# Row 7: error frames 10 / 25 (terminal per Kalshi)


@pytest.mark.parametrize("code", [10, 25])
async def test_terminal_error_frame_resubscribes_the_channel_and_ticks_are_stored(
    workdir, sim, key, hook, code
):
    """Kalshi ends a subscription with error 10 or 25: the service subscribes that channel
    again on the same connection, and ticks under the new sid reach the database."""
    async with running(workdir, sim, key, hook.url) as (svc, seen):
        await poll(lambda: ticks_in(svc) >= 3)
        old = seen.client.protocol.sid_of("ticker")
        assert old is not None
        await sim.error_frame(code, old)
        await poll(lambda: seen.client.protocol.sid_of("ticker") not in (None, old))
        new = seen.client.protocol.sid_of("ticker")
        await poll(lambda: sum(sid == new for _, sid, _ in seen.frames) >= 5)
    assert seen.client.stats.reconnects == 0
    resubscribed = [
        c
        for c in sim.stats.commands[0]
        if isinstance(c, m.Subscribe) and c.params.channels == ["ticker"]
    ]
    assert resubscribed and resubscribed[-1].params.market_tickers == [T1, T2]
    assert stored_ticks(workdir) == seen.client.stats.by_type["ticker"]


# Row 8: 401 / 403 at handshake


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_stop_watcher_with_a_message_naming_the_env_vars(
    workdir, sim, key, hook, status
):
    """HTTP 401 (unknown key) or 403 at the handshake: `watcher start` stops at once, exit
    code 3, and says which environment variables to check; it does not retry."""
    signing_key = ed25519.Ed25519PrivateKey.generate() if status == 401 else key
    if status == 403:
        sim.reject_handshakes(403, times=10)
    key_path = write_key(workdir / "key.pem", signing_key)
    proc = await spawn(workdir, watcher_env(sim, key_path, HOOK_URL=hook.url))
    _out, err = await finish(proc)
    assert proc.returncode == 3, err
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"error: Kalshi rejected the WebSocket handshake: HTTP {status};")
    assert "KALSHI_API_KEY_ID" in message and "KALSHI_PRIVATE_KEY_PATH" in message
    assert sim.stats.handshakes_rejected == 1 and sim.stats.connections_accepted == 0


# Row 9: 429 at handshake


async def test_rate_limited_handshake_backs_off_long_then_recovers(workdir, sim, key, hook, caplog):
    """HTTP 429 twice: each retry waits at least rate_limit_delay (15× the first normal
    delay here), then the service connects and stores ticks."""
    sim.reject_handshakes(429, times=2)
    options = {"rate_limit_delay": 0.3}
    with caplog.at_level(logging.INFO, logger="watcher.feed"):
        async with running(workdir, sim, key, hook.url, client_options=options) as (svc, _):
            await poll(lambda: ticks_in(svc) >= 3)
    assert stored_ticks(workdir) == ticks_in(svc)
    delays = re.findall(r"HTTP 429 too many requests; retrying in ([0-9.]+) s", caplog.text)
    assert [float(d) for d in delays] == [0.3, 0.3]
    assert sim.stats.handshakes_rejected == 2 and sim.stats.connections_accepted == 1


# Row 10: SIGTERM mid-stream


async def test_sigterm_exits_0_with_every_tick_and_trade_sent_stored(workdir, sim, key, hook):
    """SIGTERM while ticks and trades stream: exit code 0, and the database holds exactly
    the frames the simulator wrote to the socket, market by market."""
    key_path = write_key(workdir / "key.pem", key)
    proc = await spawn(workdir, watcher_env(sim, key_path, HOOK_URL=hook.url))
    try:
        await poll(lambda: stored_ticks(workdir) >= 20)
        await poll(lambda: sim.stats.frames_sent["trade"] >= 3)
    finally:
        out, err = await finish(proc, signal.SIGTERM)
    assert proc.returncode == 0, err
    db = workdir / "w.db"
    for ticker in (T1, T2):
        market = sim.stats.market(ticker)
        assert count(db, "select count(*) from tickers where market_ticker = ?", ticker) == (
            market.ticker_frames
        )
        stored = {
            r[0] for r in rows(db, "select trade_id from trades where market_ticker = ?", ticker)
        }
        assert stored == set(market.trade_ids)
    assert f"{stored_ticks(workdir)} ticks and" in out


# Row 11: SIGKILL mid-stream, then restart


KILL_RULES = """\
version: 1
timezone: UTC
notify:
  up: ${UP_URL}
  down: ${DOWN_URL}
defaults:
  notify: [up, down]
  cooldown: 1h
rules:
  - {name: wide or tight, type: spread, max_cents: 10, markets: ["KXCPI-*"]}
"""


async def test_sigkill_then_restart_keeps_the_db_whole_loses_one_flush_at_most_and_resends_nothing(
    workdir, sim, key
):
    """SIGKILL mid-stream: integrity_check is ok, the ticks lost are only those of the last
    flush interval, and after a restart the alert is not fired again, the target that was
    up gets nothing more, and the delivery left pending (its target was down) goes out once."""
    (workdir / "rules.yaml").write_text(KILL_RULES)
    db = workdir / "w.db"
    key_path = write_key(workdir / "key.pem", key)
    samples: list[tuple[float, int]] = []  # (loop time, ticker frames sent so far)
    loop = asyncio.get_running_loop()

    async def sample() -> None:
        while True:
            samples.append((loop.time(), sim.stats.frames_sent["ticker"]))
            await asyncio.sleep(0.02)

    async with HttpRecorder() as up, HttpRecorder(statuses=[500] * 100) as down:
        env = watcher_env(sim, key_path, UP_URL=up.url, DOWN_URL=down.url)
        sampler = asyncio.create_task(sample())
        proc = await spawn(workdir, env)
        try:
            await poll(lambda: delivery_status(db) == {"up": "delivered", "down": "retrying"})
            await poll(lambda: stored_ticks(workdir) >= 50)
        finally:
            proc.kill()
            killed_at = loop.time()
            sent_at_kill = sim.stats.frames_sent["ticker"]
            await finish(proc)
            sampler.cancel()
        assert proc.returncode == -signal.SIGKILL
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # Everything sent a flush interval (plus 1 s for delivery under load) before the kill
        # is on disk; what came later may be lost.
        settled = killed_at - FLUSH_INTERVAL - 1.0
        flushed = max((n for t, n in samples if t <= settled), default=0)
        stored = stored_ticks(workdir)
        assert flushed <= stored <= sent_at_kill
        down.statuses.clear()  # the target comes back while watcher is down
        proc = await spawn(workdir, env)
        try:
            await poll(lambda: len(down.delivered) == 1)
            await poll(lambda: stored_ticks(workdir) >= stored + 20)
            await asyncio.sleep(0.5)  # anything sent twice would arrive meanwhile
        finally:
            out, err = await finish(proc, signal.SIGTERM)
        assert proc.returncode == 0, err
    assert len(up.delivered) == 1 and len(down.delivered) == 1
    assert up.delivered[0].payload["title"] == down.delivered[0].payload["title"]
    assert [status for _, status in rows(db, "select id, status from alerts")] == ["delivered"]
    assert ", 0 alerts" in out  # the condition still held: the persisted state kept it quiet


def delivery_status(db: Path) -> dict[str, str]:
    return {str(t): str(s) for t, s in rows(db, "select target, status from alert_deliveries")}


# Row 12: notifier 500 / timeout / connection refused


@dataclass
class PortRecorder(HttpRecorder):
    """An :class:`HttpRecorder` on a chosen port (to start listening where nothing did)."""

    fixed_port: int = 0

    async def __aenter__(self) -> PortRecorder:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.fixed_port)
        return self


FAST_SENDER: dict[str, Any] = {"coalesce_window": 0.0, "min_backoff": 0.05, "max_backoff": 0.1}


@pytest.mark.parametrize("fault", ["http-500", "timeout", "connection-refused"])
async def test_notifier_fault_is_retried_and_delivered_exactly_once(tmp_path, fault):
    """A target answering 500, not answering in time, or refusing connections gets the
    alert once it recovers: one accepted request, the row marked delivered, nothing more."""
    port = free_port()
    recorder = PortRecorder(fixed_port=port)
    if fault == "http-500":
        recorder.statuses[:] = [500, 500]
    elif fault == "timeout":
        recorder.statuses[:] = [0]  # holds the answer past the send timeout
    now_ms = int(time.time() * 1000)
    alert = Alert(
        key="k|1", rule="r", market_ticker=T1, severity="warning", title="t", body="b",
        targets=("hook",), at_ms=now_ms,
    )  # fmt: skip
    with Outbox(tmp_path / "w.db") as outbox:
        outbox.record([alert], now_ms=now_ms)
        url = f"json://127.0.0.1:{port}/hook"
        store = SQLiteAlertStore(outbox, owned=False)
        async with Sender(store, {"hook": [url]}, timeout=0.5, **FAST_SENDER) as sender:
            if fault == "connection-refused":
                await poll(lambda: sender.stats.retried >= 2)
            async with recorder:
                await poll(lambda: outbox.next_due_ms() is None)
                await asyncio.sleep(0.3)  # a second send would arrive meanwhile
        [record] = outbox.recent()
    assert record.status == "delivered"
    assert len(recorder.delivered) == 1
    attempts = record.deliveries[0].attempts
    assert (
        attempts == 3
        if fault == "http-500"
        else attempts == 2
        if fault == "timeout"
        else attempts >= 3
    )


# Row 13: rules.yaml / trades.json garbage, partial write, empty file, 10,000 positions


BROKEN = {"garbage": "\x00\x01 not: [valid", "partial": None, "empty": ""}


@pytest.mark.parametrize("name", ["trades.json", "rules.yaml"])
async def test_broken_config_edits_keep_the_last_good_version_and_alert_located(
    workdir, sim, key, hook, name
):
    """Garbage, a half-written file and an empty file: each keeps the last good version in
    force, logs a located error and sends the user one alert; a good edit then applies."""
    quiet = RULES.replace("max_cents: 10", "min_cents: 99")  # no alert but the config ones
    (workdir / "rules.yaml").write_text(quiet)
    path = workdir / name
    good = path.read_text()
    db = workdir / "w.db"
    async with running(workdir, sim, key, hook.url) as (svc, _):
        portfolio, rules = svc.pipeline.portfolio, svc.pipeline.rules
        for n, (kind, text) in enumerate(BROKEN.items(), start=1):
            atomic_write(path, good[: len(good) // 2] if text is None else text)
            await wait_for_alerts(db, "config", n)
            assert svc.pipeline.portfolio is portfolio and svc.pipeline.rules is rules, kind
        await poll(lambda: any(str(path) in r.payload["message"] for r in hook.delivered))
        atomic_write(path, good.replace("min_cents: 99", "min_cents: 98") + "\n")
        await poll(
            lambda: svc.pipeline.portfolio is not portfolio or svc.pipeline.rules is not rules
        )
    config_alerts = alerts(db, "config")
    assert len(config_alerts) == len(BROKEN)  # one per broken content
    assert all(
        title == f"{name} is invalid; the last good version stays in force"
        for _, title, _ in config_alerts
    )
    for _, _, body in config_alerts:
        assert re.match(rf"{re.escape(str(path))}:\d+(:\d+)?: ", body), body
    sent = next(r.payload for r in hook.delivered if str(path) in r.payload["message"])
    assert f"{name} is invalid; the last good version" in f"{sent['title']} {sent['message']}"


async def test_ten_thousand_positions_load_and_replace_the_portfolio_live(workdir, sim, key, hook):
    """A 10,000-position trades.json (a long history, a few still open) loads at start-up
    and as a live edit; its open markets are subscribed on the running connection."""
    history = [
        {
            "ticker": f"KXHIST-{i:05d}",
            "side": "YES" if i % 2 else "NO",
            "entry_price": 1 + i % 98,
            "contracts": 1 + i % 50,
            "status": "SETTLED",
        }
        for i in range(9_990)
    ]
    open_ = [
        {"ticker": f"KXOPEN-{i}", "side": "YES", "entry_price": 40, "contracts": 1}
        for i in range(10)
    ]
    big = json.dumps({"trades": history + open_}, indent=2)
    every = parse_positions(
        json.dumps([{**t, "status": "OPEN"} for t in history + open_]), filename="all.json"
    )
    assert len(every.positions) == len(every.watched()) == 10_000
    async with running(workdir, sim, key, hook.url) as (svc, seen):
        atomic_write(workdir / "trades.json", big)
        await poll(lambda: len(svc.pipeline.portfolio.positions) == 10_000)
        await sim.wait_subscribed("ticker", "KXOPEN-9", timeout=WAIT)
    assert svc.pipeline.portfolio.tickers() == [f"KXOPEN-{i}" for i in range(10)]
    assert seen.client.stats.reconnects == 0


# Row 14: DB path unwritable / disk full


@pytest.mark.parametrize("fault", ["parent-is-a-file", "no-space"])
async def test_unusable_database_at_start_is_a_clear_error_with_exit_code_4(
    workdir, sim, key, fault
):
    """A database that cannot be created or written at start-up stops `watcher start` with
    one line naming the database, and exit code 4."""
    key_path = write_key(workdir / "key.pem", key)
    args: tuple[str, ...] = ()
    preexec = None
    db = workdir / "w.db"
    if fault == "parent-is-a-file":
        (workdir / "plain-file").write_text("x")
        db = workdir / "plain-file" / "w.db"
        args = ("--db", str(db))
    else:
        preexec = limit_file_size(0)
    proc = await spawn(
        workdir, watcher_env(sim, key_path, HOOK_URL="json://127.0.0.1:9/"), *args, preexec=preexec
    )
    _, err = await finish(proc)
    assert proc.returncode == 4, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: cannot ") and f"database {db}" in last, last


def limit_file_size(limit: int) -> Callable[[], None]:
    """A pre-exec hook: the child may write no file beyond ``limit`` bytes (disk full).

    Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk.
    """

    def hook() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return hook


@dataclass
class DiskFullRun:
    """What `watcher start` did when its disk filled up while running."""

    alive_after: bool
    stderr: str
    alerts: list[str]
    stopped_within: float | None  # seconds from SIGTERM to exit, None if it had to be killed
    returncode: int | None


@pytest.fixture(scope="module")
def disk_full(tmp_path_factory) -> DiskFullRun:
    """Run `watcher start` until its database grows past a file-size limit set on the live
    process, for a few seconds, then SIGTERM it (SIGKILL if it does not stop)."""
    return asyncio.run(_disk_full_run(tmp_path_factory.mktemp("disk-full")))


async def _disk_full_run(workdir: Path) -> DiskFullRun:
    (workdir / "trades.json").write_text(json.dumps(TRADES))
    (workdir / "rules.yaml").write_text(RULES)
    key = ed25519.Ed25519PrivateKey.generate()
    key_path = write_key(workdir / "key.pem", key)
    async with (
        SimulatedExchange(public_keys={KEY_ID: key.public_key()}, tick_interval=0.01) as sim,
        HttpRecorder(statuses=[500] * 1000) as hook,  # the sender keeps writing retries
    ):
        proc = await spawn(workdir, watcher_env(sim, key_path, HOOK_URL=hook.url))
        wal = workdir / "w.db-wal"
        await poll(lambda: stored_ticks(workdir) >= 20 and len(hook.requests) >= 1)
        size = wal.stat().st_size + 8192
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (size, size))
        await asyncio.sleep(1.5)
        alive = proc.returncode is None
        loop = asyncio.get_running_loop()
        start = loop.time()
        proc.send_signal(signal.SIGTERM)
        stopped: float | None = None
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
            stopped = loop.time() - start
        except TimeoutError:
            proc.kill()
        _, err = await finish(proc)
        messages = [f"{r.payload.get('title')} {r.payload.get('message')}" for r in hook.requests]
    return DiskFullRun(alive, err, messages, stopped, proc.returncode)


def test_disk_full_at_runtime_keeps_the_service_running_and_the_rows(disk_full):
    """When writes start failing the service neither crashes nor restarts: it logs the
    failure and keeps the unwritten rows to retry them."""
    assert disk_full.alive_after
    assert re.search(r"cannot write \d+ rows to \S*w\.db: .*; keeping them", disk_full.stderr)


def test_disk_full_at_runtime_alerts_the_user(disk_full):
    """The user is told, through the notify targets, that the database cannot be written."""
    assert any("database" in text.lower() for text in disk_full.alerts), disk_full.alerts


def test_sigterm_while_the_disk_is_full_stops_within_a_bounded_time(disk_full):
    """SIGTERM while writes fail still ends the process (reporting the rows it could not
    write) instead of retrying them forever."""
    assert disk_full.stopped_within is not None and disk_full.returncode != 0


def test_sender_logs_a_database_failure_once_without_a_traceback(disk_full):
    """While the outbox cannot be written the sender says so in one line, not a traceback
    every second."""
    failures = [line for line in disk_full.stderr.splitlines() if "alert sender" in line]
    assert "Traceback" not in disk_full.stderr
    assert len(failures) <= 1, failures
