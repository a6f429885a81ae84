"""Pre-encoded current-format Kalshi frames for the firehose, as complete WebSocket frames.

The frames are made once by the simulator's own market model (:class:`SimMarket` walks, trades
and formats prices exactly as Kalshi does, and :func:`watcher.kalshi.messages.encode` writes
the envelopes), so the firehose sends what ``watcher simulate`` would, only without the per-frame
Python work. Ticker frames are fixed bytes. A trade frame is a template with two holes, the
``trade_id`` and the ``seq``, filled per send: every trade the firehose sends has a fresh id
(the ``trades`` table keeps one row per id) and every ``trade`` subscription sees ``seq`` 1, 2, 3…

Server frames are not masked (RFC 6455 §5.1), so a frame is a 2–10 byte header and the payload.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import msgspec

from watcher.kalshi import messages as m
from watcher.kalshi.sim.market import SimMarket, TradeRecord

__all__ = [
    "BIG_TRADE_CONTRACTS",
    "TICKER_SID",
    "TRADE_SID",
    "FrameCycle",
    "Stream",
    "TradeTemplate",
    "market_tickers",
    "text_frame",
]

#: The sids the firehose gives the ``ticker`` and ``trade`` channels on every connection.
TICKER_SID = 1
TRADE_SID = 2
#: Count of the probe trades (no simulated trade is this big: the largest is 1,000).
BIG_TRADE_CONTRACTS = 100_000
#: At most this many market steps are pre-encoded (rounds × markets).
MAX_STEPS = 24_000

_ID_HOLE = "@@trade-id@@"
_SEQ_HOLE = 987_654_321_012


def market_tickers(count: int) -> list[str]:
    """The tickers of the firehose's ``count`` markets (``KXBENCH-26DEC-M00000``, …)."""
    return [f"KXBENCH-26DEC-M{i:05d}" for i in range(count)]


def text_frame(payload: bytes, *, compressed: bool = False) -> bytes:
    """One unmasked, final text frame (RSV1 set when the payload is deflated)."""
    first = 0xC1 if compressed else 0x81
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65_536:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


def trade_id(number: int) -> bytes:
    """A UUID-shaped trade id that is unique for every trade the firehose sends."""
    return b"00000000-0000-4000-8000-%012x" % number


@dataclass(frozen=True, slots=True)
class TradeTemplate:
    """An encoded trade frame with holes for its ``seq`` and ``trade_id``.

    msgspec writes fields in declaration order, so the envelope's ``seq`` comes before the
    payload's ``trade_id``.
    """

    head: bytes  # up to the seq
    middle: bytes  # between the seq and the trade id
    tail: bytes  # after the trade id

    def payload(self, number: int, seq: int) -> bytes:
        """The frame's JSON with trade id ``number`` and ``seq``."""
        return b"".join((self.head, b"%d" % seq, self.middle, trade_id(number), self.tail))


def _trade_template(record: TradeRecord, sending_ts_ms: int) -> TradeTemplate:
    msg = msgspec.structs.replace(record.to_msg(), trade_id=_ID_HOLE)
    encoded = m.encode(m.Trade(sid=TRADE_SID, seq=_SEQ_HOLE, msg=msg, sending_ts_ms=sending_ts_ms))
    head, rest = encoded.split(b"%d" % _SEQ_HOLE)
    middle, tail = rest.split(_ID_HOLE.encode())
    return TradeTemplate(head, middle, tail)


class FrameCycle:
    """A repeating sequence of ticker and trade frames over ``markets`` markets.

    Args:
        markets: how many markets (tickers from :func:`market_tickers`).
        trade_probability: chance that a market step also makes a trade.
        seed: seed of the random walk.
    """

    def __init__(self, markets: int, *, trade_probability: float = 0.25, seed: int = 1) -> None:
        if markets < 1:
            raise ValueError(f"markets must be at least 1, but got {markets}")
        rng = random.Random(seed)
        now = time.time_ns() // 1_000_000
        self.tickers = market_tickers(markets)
        self.rounds = max(1, min(8, MAX_STEPS // markets))
        # Each item: bytes (a complete ticker frame) or a trade template.
        self.items: list[bytes | TradeTemplate] = []
        self.payloads: list[bytes] = []  # plain payloads, for the deflated variant
        sims = [SimMarket(t, None, rng, now) for t in self.tickers]
        #: The market model behind the frames, by ticker (REST answers come from it).
        self.markets = {sim.ticker: sim for sim in sims}
        for _ in range(self.rounds):
            # A fresh order each round: watched markets (the first tickers) are spread through
            # the stream as on a real exchange, not sent in one burst per round.
            for sim in rng.sample(sims, len(sims)):
                update = sim.step(rng, now, trade_probability)
                assert update.ticker is not None
                ticker = m.encode(m.Ticker(sid=TICKER_SID, msg=update.ticker, sending_ts_ms=now))
                self.items.append(text_frame(ticker))
                self.payloads.append(ticker)
                for record in update.trades:
                    template = _trade_template(record, now)
                    self.items.append(template)
                    self.payloads.append(template.payload(0, 1))
        self.probes = [
            _trade_template(
                sim.record_trade(sim.yes_ask, BIG_TRADE_CONTRACTS * 1_000_000, "yes", now, "-"),
                now,
            )
            for sim in sims
        ]
        self._deflated: dict[int, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def deflated(self, window_bits: int) -> list[bytes]:
        """The cycle as permessage-deflate frames, compressed once with context takeover.

        Replaying it in a loop stays valid: the first frame was compressed with an empty
        window, so it refers to nothing before it, and every later frame refers only to frames
        of the same pass, which precede it again on every replay.
        """
        if window_bits not in self._deflated:
            encoder = zlib.compressobj(wbits=-window_bits, memLevel=5)
            frames = []
            for payload in self.payloads:
                data = encoder.compress(payload) + encoder.flush(zlib.Z_SYNC_FLUSH)
                frames.append(text_frame(data.removesuffix(b"\x00\x00\xff\xff"), compressed=True))
            self._deflated[window_bits] = frames
        return self._deflated[window_bits]


class Stream:
    """Where one connection is in the cycle: the next frames, with fresh ids and ``seq``.

    Args:
        cycle: the frames.
        numbers: the firehose-wide trade counter (an ``itertools.count``) for unique ids.
        tickers: send ticker frames.
        trades: send trade frames.
        window_bits: send the deflated cycle (``None``: plain frames).
    """

    def __init__(
        self,
        cycle: FrameCycle,
        numbers: Iterator[int],
        *,
        tickers: bool,
        trades: bool,
        window_bits: int | None = None,
    ) -> None:
        self.cycle = cycle
        self.numbers = numbers
        self.tickers = tickers
        self.trades = trades
        self.deflated = cycle.deflated(window_bits) if window_bits else None
        self.position = 0
        self.seq = 0
        self.sent = 0
        self.probe_index = 0

    def take(self, count: int) -> bytes:
        """The next ``count`` frames (of the subscribed channels), concatenated."""
        items, size = self.cycle.items, len(self.cycle.items)
        out: list[bytes] = []
        while len(out) < count:
            i = self.position
            self.position = (i + 1) % size
            item = items[i]
            if isinstance(item, bytes):
                if self.tickers:
                    out.append(self.deflated[i] if self.deflated else item)
            elif self.trades:
                if self.deflated:
                    out.append(self.deflated[i])
                else:
                    self.seq += 1
                    out.append(text_frame(item.payload(next(self.numbers), self.seq)))
        self.sent += len(out)
        return b"".join(out)

    def probe(self, markets: int) -> tuple[str, bytes]:
        """A big trade on the next of the first ``markets`` markets in turn, and its ticker."""
        index = self.probe_index % min(markets, len(self.cycle.probes))
        self.probe_index += 1
        self.seq += 1
        payload = self.cycle.probes[index].payload(next(self.numbers), self.seq)
        self.sent += 1
        return self.cycle.tickers[index], text_frame(payload)
