"""The firehose: a Kalshi-compatible WebSocket server that streams pre-encoded frames.

Run it as a separate process (``make bench`` does)::

    python -m bench.firehose --markets 1000 [--rate 5000] [--public-key KEY_ID=PEM]
        [--probe-interval 0.05 --probe-markets 100]

It prints one JSON line when it listens (``{"event": "listening", "ws_url": ..., "api_url": ...}``)
and then one JSON line per event (``subscribed``, ``dropped``, ``probe``, ``closed``) with the
wall-clock time ``t`` in seconds, so the runner can time reconnects and alerts.

What it speaks: the signed handshake of ``GET /trade-api/ws/v2`` (verified when
``--public-key`` is given, otherwise ignored), ``subscribe`` (a ``subscribed`` reply per channel;
``ticker`` gets sid 1 and ``trade`` sid 2), ``unsubscribe``, ``update_subscription`` and
``list_subscriptions`` (``ok``). Market filters are accepted and ignored: every connection
subscribed to ``ticker`` or ``trade`` gets the frames of all the firehose's markets. REST GETs
(``/markets/{ticker}``, ``/markets/trades``, ``/markets/{ticker}/orderbook``) are answered from
the simulator's market model, one request per connection.

The handshake goes through websockets' sans-I/O ``ServerProtocol``; the data frames are
pre-encoded WebSocket frames written straight to the transport in large chunks, paused by TCP
flow control (``pause_writing``), so the server costs little CPU and the client under test is
the bottleneck. A client that negotiates permessage-deflate (the naive baseline) gets deflated
frames, as Kalshi would send them; replies are always sent uncompressed.

Signals: SIGUSR1 drops every connection at once (no close frame) while the port keeps
accepting — a server restart with no downtime; SIGTERM/SIGINT stop the firehose.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    enable_server_permessage_deflate,
)
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from bench.frames import TICKER_SID, TRADE_SID, FrameCycle, Stream, text_frame
from watcher.errors import DecodeError
from watcher.kalshi import messages as m
from watcher.kalshi.auth import PublicKey, load_public_key
from watcher.kalshi.sim.http import auth_problem, json_response
from watcher.kalshi.sim.market import SimMarket, SimMarketSpec
from watcher.kalshi.sim.rest import route_rest
from watcher.kalshi.sim.wire import REST_PREFIX, WS_PATH

__all__ = ["Firehose", "emit", "main"]

#: Bytes written per chunk at full speed (about 250 frames).
CHUNK_FRAMES = 256
#: Pacing step of a rate-limited stream, in seconds.
PACE = 0.001
_SIDS = {"ticker": TICKER_SID, "trade": TRADE_SID}


def emit(event: str, **fields: Any) -> None:
    """Print one JSON event line with the wall-clock time."""
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


class _Connection(asyncio.Protocol):
    """One TCP connection: handshake and commands through websockets, data straight out."""

    def __init__(self, firehose: Firehose) -> None:
        self.firehose = firehose
        self.ws = ServerProtocol(extensions=enable_server_permessage_deflate(None))
        self.transport: asyncio.Transport | None = None
        self.channels: dict[str, int] = {}  # channel → sid
        self.stream: Stream | None = None
        self.writer: asyncio.Task[None] | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.number = next(firehose.connection_numbers)

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.firehose.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._command(bytes(event.data))
        if self.ws.state is not State.OPEN and self.writer is not None:
            self.writer.cancel()  # no data frame may follow a close frame
            self.writer = None
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.firehose.connections.discard(self)
        self.can_write.set()
        if self.writer is not None:
            self.writer.cancel()
        if self.stream is not None:
            emit("closed", connection=self.number, sent=self.stream.sent)

    # Handshake and commands

    def _handshake(self, request: Request) -> None:
        path, _, query = request.path.partition("?")
        if path.startswith(REST_PREFIX + "/"):
            self.ws.send_response(self.firehose.rest(path, query))
            return
        if path != WS_PATH:
            message = {"code": "not_found", "message": path}
            self.ws.send_response(json_response(404, {"error": message}))
            return
        problem = auth_problem(self.firehose.public_keys, request.headers, WS_PATH, required=True)
        if problem is not None:
            message = {"code": "unauthorized", "message": problem}
            self.ws.send_response(json_response(401, {"error": message}))
            return
        self.ws.send_response(self.ws.accept(request))

    def _command(self, data: bytes) -> None:
        try:
            command = m.decode_command(data)
        except DecodeError:
            self._reply(m.ErrorReply(msg=m.ErrorMsg(code=1, msg="Unable to process message")))
            return
        if isinstance(command, m.Subscribe):
            for channel in command.params.channels:
                sid = self.channels.setdefault(channel, _SIDS.get(channel, 3 + len(self.channels)))
                msg = m.SubscribedMsg(channel=channel, sid=sid)
                self._reply(m.Subscribed(id=command.id, msg=msg))
            emit("subscribed", connection=self.number, channels=sorted(self.channels))
            self._start_stream()
        elif isinstance(command, m.Unsubscribe):
            for sid in command.params.sids:
                self.channels = {c: s for c, s in self.channels.items() if s != sid}
                self._reply(m.Unsubscribed(id=command.id, sid=sid))
            self._update_stream()
        else:
            self._reply(m.Ok(id=command.id, msg=m.OkMarkets()))

    def _reply(self, frame: Any) -> None:
        if self.transport is not None:
            self.transport.write(text_frame(m.encode(frame)))

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            else:
                transport.close()

    # The data stream

    def _window_bits(self) -> int | None:
        for extension in self.ws.extensions:
            if isinstance(extension, PerMessageDeflate):
                return extension.local_max_window_bits or 15
        return None

    def _start_stream(self) -> None:
        if self.stream is None and self.channels & _SIDS.keys():
            self.stream = Stream(
                self.firehose.cycle,
                self.firehose.trade_numbers,
                tickers="ticker" in self.channels,
                trades="trade" in self.channels,
                window_bits=self._window_bits(),
            )
            self.writer = asyncio.get_running_loop().create_task(self._write_stream(self.stream))
        self._update_stream()

    def _update_stream(self) -> None:
        if self.stream is not None:
            self.stream.tickers = "ticker" in self.channels
            self.stream.trades = "trade" in self.channels
            if not self.channels & _SIDS.keys() and self.writer is not None:
                self.writer.cancel()
                self.writer = None

    async def _write_stream(self, stream: Stream) -> None:
        rate = self.firehose.rate
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_probe = started + self.firehose.probe_interval
        while self.transport is not None and not self.transport.is_closing():
            await self.can_write.wait()
            if not rate:
                self.transport.write(stream.take(CHUNK_FRAMES))
                await asyncio.sleep(0)
                continue
            await asyncio.sleep(PACE)
            now = loop.time()
            due = int((now - started) * rate) - stream.sent
            if due > 0:
                self.transport.write(stream.take(due))
            if self.firehose.probe_interval and now >= next_probe and stream.trades:
                next_probe += self.firehose.probe_interval
                ticker, frame = stream.probe(self.firehose.probe_markets)
                self.transport.write(frame)
                emit("probe", connection=self.number, market=ticker)


class Firehose:
    """The server: one frame cycle shared by every connection.

    Args:
        cycle: the pre-encoded frames.
        rate: frames per second per connection; 0 sends as fast as the socket takes them.
        public_keys: verify handshake signatures with these keys (``None``: ignore them).
        probe_interval: seconds between probe trades (``BIG_TRADE_CONTRACTS``); 0 for none.
        probe_markets: the probes go round the first this many markets.
    """

    def __init__(
        self,
        cycle: FrameCycle,
        *,
        rate: float = 0,
        public_keys: dict[str, PublicKey] | None = None,
        probe_interval: float = 0,
        probe_markets: int = 0,
    ) -> None:
        self.cycle = cycle
        self.rate = rate
        self.public_keys = public_keys
        self.probe_interval = probe_interval
        self.probe_markets = probe_markets or len(cycle.tickers)
        self.connections: set[_Connection] = set()
        self.connection_numbers: Iterator[int] = itertools.count(1)
        self.trade_numbers: Iterator[int] = itertools.count(1)

    def __repr__(self) -> str:
        return f"<Firehose markets={len(self.cycle.tickers)} rate={self.rate or 'max'}>"

    def rest(self, path: str, query: str) -> Response:
        """Answer a REST GET from the market model (signatures are not checked here)."""
        status, body = route_rest(
            path[len(REST_PREFIX) :],
            parse_qs(query),
            market=self._market,
            every=lambda: self.cycle.markets.values(),
            now_ms=time.time_ns() // 1_000_000,
        )
        return json_response(status, body)

    def _market(self, ticker: str) -> SimMarket:
        known = self.cycle.markets.get(ticker)
        if known is not None:
            return known
        return SimMarket(ticker, SimMarketSpec(unknown=True), random.Random(0), 0)

    def drop(self) -> None:
        """Abort every connection (no close frame); the listening socket stays open."""
        emit("dropped", connections=len(self.connections))
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()

    async def serve(self, host: str, port: int) -> None:
        """Listen until SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), host, port)
        bound = server.sockets[0].getsockname()[1]
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.drop)
        emit(
            "listening",
            ws_url=f"ws://{host}:{bound}{WS_PATH}",
            api_url=f"http://{host}:{bound}{REST_PREFIX}",
            markets=len(self.cycle.tickers),
            cycle=len(self.cycle),
        )
        async with server:
            await stop.wait()
            for connection in list(self.connections):
                if connection.transport is not None:
                    connection.transport.abort()


def _public_keys(items: list[str]) -> dict[str, PublicKey] | None:
    keys = {}
    for item in items:
        key_id, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--public-key must be KEY_ID=PEM, but got {item!r}")
        with open(path, "rb") as fh:
            keys[key_id] = load_public_key(fh.read())
    return keys or None


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.firehose``: serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.firehose", description=__doc__)
    parser.add_argument("--markets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0, help="frames/s per connection; 0: max")
    parser.add_argument("--probe-interval", type=float, default=0, help="seconds; 0: no probes")
    parser.add_argument("--probe-markets", type=int, default=0, help="probe the first N; 0: all")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--public-key", action="append", default=[], metavar="KEY_ID=PEM")
    args = parser.parse_args(argv)
    firehose = Firehose(
        FrameCycle(args.markets),
        rate=args.rate,
        public_keys=_public_keys(args.public_key),
        probe_interval=args.probe_interval,
        probe_markets=args.probe_markets,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(firehose.serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
