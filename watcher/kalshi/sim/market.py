"""The market model behind the simulated Kalshi exchange: prices, book, trades, REST bodies.

Sans-I/O: no asyncio, no sockets. A :class:`SimMarket` holds one market's live state in exact
micro-units (see :mod:`watcher.kalshi.fixed`) and turns every change into a
:class:`MarketUpdate` of typed payloads (:mod:`watcher.kalshi.messages`) that the server wraps
into frames. Prices walk on a half-cent grid in YES terms (``0.4550`` happens), with
``0.01 <= yes_bid < yes_ask <= 0.99`` and a spread of 1–5¢ most of the time. The book keeps
bids only, as Kalshi publishes it: YES bids at ``yes_bid`` and below, NO bids (NO-leg prices) at
``1 - yes_ask`` and below.

Value types and wire formatting live in :mod:`watcher.kalshi.sim.values`; their public names
are re-exported here. REST routing (:mod:`watcher.kalshi.sim.rest`) builds on this module.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from watcher.kalshi.fixed import CENT, DOLLAR, parse_micros
from watcher.kalshi.messages import (
    MarketLifecycleMsg,
    OrderbookDeltaMsg,
    OrderbookSnapshotMsg,
    TickerMsg,
)
from watcher.kalshi.sim.values import (
    BOOK_DEPTH,
    CONTRACT,
    GRID,
    MAX_PRICE,
    MAX_SPREAD,
    MAX_TRADES,
    MIN_PRICE,
    SIZES,
    SPREADS,
    MarketUpdate,
    Side,
    SimMarketSpec,
    TradeRecord,
    contracts,
    dollars,
    random_uuid,
    rfc3339,
    yes_leg,
)

__all__ = [
    "GRID",
    "MAX_TRADES",
    "MarketUpdate",
    "SimMarket",
    "SimMarketSpec",
    "TradeRecord",
    "contracts",
    "dollars",
    "random_uuid",
    "rfc3339",
    "yes_leg",
]

_MOVES = (-2, -1, -1, 0, 0, 0, 1, 1, 2)


class SimMarket:
    """The live state of one simulated market (mutable; owned by the simulator).

    Prices (``yes_bid``, ``yes_ask``, ``last``) are micro-dollars; sizes, ``volume`` and
    ``open_interest`` are micro-contracts. ``book_yes`` maps YES bid prices to sizes and
    ``book_no`` maps NO bid prices (NO-leg pricing) to sizes.
    """

    def __init__(
        self, ticker: str, spec: SimMarketSpec | None, rng: random.Random, now_ms: int
    ) -> None:
        spec = spec or SimMarketSpec()
        self.ticker = ticker
        self.market_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"kalshi-sim:{ticker}"))
        self.event_ticker = ticker.rsplit("-", 1)[0]
        self.title = spec.title or f"Simulated market {ticker}"
        self.status = spec.status
        self.result = ""
        self.unknown = spec.unknown or "UNKNOWN" in ticker.upper()
        self.pinned = spec.pinned
        self.created_ms = now_ms
        close = spec.close_time or datetime.fromtimestamp(now_ms / 1000, UTC) + timedelta(days=1)
        self.close_ms = int(close.timestamp() * 1000)
        self.yes_bid, self.yes_ask = _initial_quote(spec, rng)
        #: The walk's centre and how far the YES bid may stray from it (None: free).
        self.anchor, self.band = self.yes_bid, parse_micros(spec.band) if spec.band else None
        self.last = parse_micros(spec.last) if spec.last else self.yes_bid
        self.last_trade_size = rng.choice(SIZES) * CONTRACT
        self.volume = rng.randint(1_000, 50_000) * CONTRACT
        self.open_interest = rng.randint(500, 20_000) * CONTRACT
        self.dollar_volume = self.volume // 2
        self.settlement_value: int | None = None
        self.book_yes: dict[int, int] = {}
        self.book_no: dict[int, int] = {}
        self.trades: deque[TradeRecord] = deque(maxlen=MAX_TRADES)
        self.rebuild_book(rng, now_ms)

    def __repr__(self) -> str:
        return (
            f"<SimMarket {self.ticker} {self.status} bid={dollars(self.yes_bid)}"
            f" ask={dollars(self.yes_ask)} trades={len(self.trades)}>"
        )

    # Public methods

    def is_trading(self, now_ms: int) -> bool:
        """True while the market is known, active and before its close time."""
        return not self.unknown and self.status == "active" and now_ms < self.close_ms

    def step(self, rng: random.Random, now_ms: int, trade_probability: float) -> MarketUpdate:
        """Advance the random walk one tick; maybe trade; always report a ticker."""
        self._walk(rng)
        deltas = self.rebuild_book(rng, now_ms)
        trades: tuple[TradeRecord, ...] = ()
        if rng.random() < trade_probability:
            side: Side = rng.choice(("yes", "no"))
            price = self.yes_ask if side == "yes" else self.yes_bid
            count = rng.choice(SIZES) * CONTRACT
            trades = (self.record_trade(price, count, side, now_ms, random_uuid(rng)),)
        return MarketUpdate(self.ticker, self.ticker_msg(now_ms), trades, deltas)

    def set_quote(
        self, yes_bid: str, yes_ask: str, last: str | None, rng: random.Random, now_ms: int
    ) -> MarketUpdate:
        """Pin the quote to the given dollar strings and report the change."""
        self.yes_bid, self.yes_ask = _checked_quote(parse_micros(yes_bid), parse_micros(yes_ask))
        if last is not None:
            self.last = parse_micros(last)
        self.pinned = True
        deltas = self.rebuild_book(rng, now_ms)
        return MarketUpdate(self.ticker, self.ticker_msg(now_ms), deltas=deltas)

    def record_trade(
        self, yes_price: int, count: int, taker_side: Side, now_ms: int, trade_id: str
    ) -> TradeRecord:
        """Record one trade (kept for REST) and move last price, volume and open interest."""
        if not 0 < yes_price < DOLLAR or count <= 0:
            raise ValueError(
                f"trade needs 0 < price < 1 and count > 0, but got {yes_price}, {count}"
            )
        record = TradeRecord(trade_id, self.ticker, yes_price, count, taker_side, now_ms)
        self.trades.append(record)
        self.last, self.last_trade_size = yes_price, count
        self.volume += count
        self.open_interest += count // 2
        self.dollar_volume += count * yes_price // CONTRACT
        return record

    def rebuild_book(self, rng: random.Random, now_ms: int) -> tuple[OrderbookDeltaMsg, ...]:
        """Reshape both sides of the book around the quote; return the deltas."""
        yes = self._rebuild_side("yes", self.book_yes, self.yes_bid, rng, now_ms)
        no = self._rebuild_side("no", self.book_no, DOLLAR - self.yes_ask, rng, now_ms)
        return yes + no

    def ticker_msg(self, now_ms: int) -> TickerMsg:
        """The ``ticker`` payload with every field of Kalshi's ``ticker.json``."""
        return TickerMsg(
            market_ticker=self.ticker,
            market_id=self.market_id,
            price_dollars=dollars(self.last),
            yes_bid_dollars=dollars(self.yes_bid),
            yes_ask_dollars=dollars(self.yes_ask),
            volume_fp=contracts(self.volume),
            open_interest_fp=contracts(self.open_interest),
            dollar_volume=self.dollar_volume // DOLLAR,
            dollar_open_interest=self.open_interest * self.last // (CONTRACT * DOLLAR),
            yes_bid_size_fp=contracts(self.book_yes.get(self.yes_bid, 0)),
            yes_ask_size_fp=contracts(self.book_no.get(DOLLAR - self.yes_ask, 0)),
            last_trade_size_fp=contracts(self.last_trade_size),
            ts=now_ms // 1000,
            ts_ms=now_ms,
            time=rfc3339(now_ms),
        )

    def snapshot(self, use_yes_price: bool) -> OrderbookSnapshotMsg:
        """The ``orderbook_snapshot`` payload; NO prices in YES-leg terms if asked."""
        no = sorted(((DOLLAR - p) if use_yes_price else p, s) for p, s in self.book_no.items())
        return OrderbookSnapshotMsg(
            market_ticker=self.ticker,
            market_id=self.market_id,
            yes_dollars_fp=[(dollars(p), contracts(s)) for p, s in sorted(self.book_yes.items())],
            no_dollars_fp=[(dollars(p), contracts(s)) for p, s in no],
        )

    def created(self, now_ms: int) -> MarketUpdate:
        """A ``created`` lifecycle event, like Kalshi's ``market_lifecycle_v2_created.json``."""
        event = MarketLifecycleMsg(
            market_ticker=self.ticker,
            event_type="created",
            exchange_index=0,
            open_ts=now_ms // 1000,
            close_ts=self.close_ms // 1000,
            price_level_structure="linear_cent",
            additional_metadata={
                "name": self.title,
                "title": self.title,
                "yes_sub_title": self.title,
                "no_sub_title": self.title,
                "rules_primary": f"Resolves YES if {self.title} happens.",
                "rules_secondary": "",
                "can_close_early": True,
                "event_ticker": self.event_ticker,
                "expected_expiration_ts": self.close_ms // 1000,
            },
        )
        return MarketUpdate(self.ticker, lifecycle=(event,))

    def settle(self, result: Side, now_ms: int) -> MarketUpdate:
        """Determine and settle the market: ``determined`` then ``settled`` events."""
        self.result = result
        self.settlement_value = DOLLAR if result == "yes" else 0
        determined = MarketLifecycleMsg(
            market_ticker=self.ticker,
            event_type="determined",
            result=result,
            determination_ts=now_ms // 1000,
            settlement_value=dollars(self.settlement_value),
        )
        settled = MarketLifecycleMsg(
            market_ticker=self.ticker, event_type="settled", settled_ts=now_ms // 1000
        )
        self.status = "finalized"
        return MarketUpdate(self.ticker, lifecycle=(determined, settled))

    def rest_market(self, now_ms: int) -> dict[str, Any]:
        """The ``market`` object of ``GET /markets/{ticker}`` (§11.1 fields)."""
        closed = self.status == "active" and now_ms >= self.close_ms
        body: dict[str, Any] = {
            "ticker": self.ticker,
            "event_ticker": self.event_ticker,
            "market_type": "binary",
            "title": self.title,
            "subtitle": "",
            "yes_sub_title": self.title,
            "no_sub_title": self.title,
            "created_time": rfc3339(self.created_ms),
            "updated_time": rfc3339(now_ms),
            "open_time": rfc3339(self.created_ms),
            "close_time": rfc3339(self.close_ms),
            "latest_expiration_time": rfc3339(self.close_ms),
            "settlement_timer_seconds": 300,
            "status": "closed" if closed else self.status,
            "result": self.result,
            "can_close_early": True,
            "expiration_value": "",
            "rules_primary": "",
            "rules_secondary": "",
            "price_level_structure": "linear_cent",
            "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0050"}],
        }
        if self.settlement_value is not None:
            body["settlement_value_dollars"] = str(dollars(self.settlement_value))
        return body | self._rest_quote()

    def rest_orderbook(self, depth: int) -> dict[str, Any]:
        """``GET /markets/{ticker}/orderbook``: ascending levels, best bid last."""

        def levels(book: dict[int, int]) -> list[list[str]]:
            rows = [[str(dollars(p)), str(contracts(s))] for p, s in sorted(book.items())]
            return rows[-depth:] if depth > 0 else rows

        return {
            "orderbook_fp": {
                "yes_dollars": levels(self.book_yes),
                "no_dollars": levels(self.book_no),
            }
        }

    # Private methods

    def _rest_quote(self) -> dict[str, str]:
        bid, ask, last = dollars(self.yes_bid), dollars(self.yes_ask), dollars(self.last)
        return {
            "notional_value_dollars": "1.0000",
            "yes_bid_dollars": str(bid),
            "yes_ask_dollars": str(ask),
            "no_bid_dollars": str(1 - ask),
            "no_ask_dollars": str(1 - bid),
            "yes_bid_size_fp": str(contracts(self.book_yes.get(self.yes_bid, 0))),
            "yes_ask_size_fp": str(contracts(self.book_no.get(DOLLAR - self.yes_ask, 0))),
            "last_price_dollars": str(last),
            "previous_yes_bid_dollars": str(bid),
            "previous_yes_ask_dollars": str(ask),
            "previous_price_dollars": str(last),
            "volume_fp": str(contracts(self.volume)),
            "volume_24h_fp": str(contracts(self.volume)),
            "open_interest_fp": str(contracts(self.open_interest)),
        }

    def _walk(self, rng: random.Random) -> None:
        spread = self.yes_ask - self.yes_bid
        if spread > MAX_SPREAD or rng.random() < 0.25:
            spread = rng.choice(SPREADS)
        bid = self.yes_bid + rng.choice(_MOVES) * GRID
        if self.band is not None:  # wander around the start, within the band
            bid = max(self.anchor - self.band, min(bid, self.anchor + self.band))
        bid = max(MIN_PRICE, min(bid, MAX_PRICE - spread))
        self.yes_bid, self.yes_ask = bid, bid + spread

    def _rebuild_side(
        self, side: Side, book: dict[int, int], best: int, rng: random.Random, now_ms: int
    ) -> tuple[OrderbookDeltaMsg, ...]:
        # The best level plus whole-cent levels below it, so a half-cent move touches few levels.
        below = best - best % CENT if best % CENT else best - CENT
        target = {best} | {below - k * CENT for k in range(BOOK_DEPTH - 1) if below - k * CENT > 0}
        deltas = []
        for price in sorted(set(book) | target):
            old = book.get(price, 0)
            new = (old or rng.choice(SIZES) * CONTRACT) if price in target else 0
            if price == best and rng.random() < 0.3:
                new = rng.choice(SIZES) * CONTRACT  # activity at the touch
            if new == old:
                continue
            if new:
                book[price] = new
            else:
                del book[price]
            deltas.append(
                OrderbookDeltaMsg(
                    market_ticker=self.ticker,
                    market_id=self.market_id,
                    price_dollars=dollars(price),
                    delta_fp=contracts(new - old),
                    side=side,
                    ts=rfc3339(now_ms),
                    ts_ms=now_ms,
                )
            )
        return tuple(deltas)


def _checked_quote(bid: int, ask: int) -> tuple[int, int]:
    if not 0 < bid < ask < DOLLAR:
        raise ValueError(
            f"quote must satisfy 0 < yes_bid < yes_ask < 1, but got {dollars(bid)}/{dollars(ask)}"
        )
    return bid, ask


def _initial_quote(spec: SimMarketSpec, rng: random.Random) -> tuple[int, int]:
    if (spec.yes_bid is None) != (spec.yes_ask is None):
        raise ValueError(f"give both yes_bid and yes_ask, but got {spec.yes_bid}/{spec.yes_ask}")
    if spec.yes_bid is not None and spec.yes_ask is not None:
        return _checked_quote(parse_micros(spec.yes_bid), parse_micros(spec.yes_ask))
    bid = rng.randrange(10 * CENT, 85 * CENT, GRID)
    return bid, bid + rng.choice(SPREADS)
