"""The sans-I/O session: commands, sid map, seq tracking and recovery, without an event loop."""

from __future__ import annotations

import json

import pytest

from watcher.kalshi import messages as m
from watcher.kalshi.backoff import backoff
from watcher.kalshi.protocol import (
    CommandRejected,
    DecodeFailure,
    KalshiProtocol,
    SequenceGapEvent,
)


def sent(protocol: KalshiProtocol) -> list[dict]:
    return [json.loads(frame) for frame in protocol.data_to_send()]


def feed(protocol: KalshiProtocol, **frame) -> list:
    protocol.receive_text(json.dumps(frame))
    return protocol.events_received()


def open_with_ticker_and_trade() -> KalshiProtocol:
    p = KalshiProtocol()
    p.subscribe(["ticker", "trade"], ["B", "A"])
    p.subscribe(["market_lifecycle_v2"])
    p.connection_made()
    sent(p)
    feed(p, id=1, type="subscribed", msg={"channel": "ticker", "sid": 1})
    feed(p, id=1, type="subscribed", msg={"channel": "trade", "sid": 2})
    feed(p, id=2, type="subscribed", msg={"channel": "market_lifecycle_v2", "sid": 3})
    return p


def trade(seq: int, sid: int = 2, trade_id: str = "t") -> dict:
    return {
        "type": "trade",
        "sid": sid,
        "seq": seq,
        "msg": {
            "trade_id": f"{trade_id}{seq}",
            "market_ticker": "A",
            "yes_price_dollars": "0.4",
            "no_price_dollars": "0.6",
            "count_fp": "1.00",
        },
    }


def test_connection_made_subscribes_everything_wanted_with_explicit_markets() -> None:
    """Ticker and trade go out with the explicit market list; lifecycle without a filter."""
    p = KalshiProtocol()
    p.subscribe(["ticker", "trade"], ["B", "A", "A"])
    p.subscribe(["market_lifecycle_v2"])
    assert sent(p) == []  # not connected yet
    p.connection_made()
    assert sent(p) == [
        {
            "id": 1,
            "cmd": "subscribe",
            "params": {"channels": ["ticker", "trade"], "market_tickers": ["A", "B"]},
        },
        {"id": 2, "cmd": "subscribe", "params": {"channels": ["market_lifecycle_v2"]}},
    ]


def test_subscribed_replies_build_the_sid_map() -> None:
    """Each `subscribed` maps its sid to the channel and its markets."""
    p = open_with_ticker_and_trade()
    assert {s.sid: (s.channel, s.markets) for s in p.subscriptions.values()} == {
        1: ("ticker", {"A", "B"}),
        2: ("trade", {"A", "B"}),
        3: ("market_lifecycle_v2", None),
    }


def test_orderbook_subscriptions_pin_use_yes_price() -> None:
    """use_yes_price is always sent explicitly on order-book subscriptions."""
    p = KalshiProtocol(use_yes_price=False)
    p.connection_made()
    p.subscribe(["orderbook_delta"], ["A"])
    assert sent(p)[0]["params"]["use_yes_price"] is False


def test_reconnect_resubscribes_with_fresh_ids_and_forgets_old_sids() -> None:
    """After a reconnect ids restart at 1, old sids are gone and everything is resubscribed."""
    p = open_with_ticker_and_trade()
    p.connection_lost()
    assert p.subscriptions == {}
    p.connection_made()
    frames = sent(p)
    assert [f["id"] for f in frames] == [1, 2]
    assert frames[0]["params"]["market_tickers"] == ["A", "B"]


def test_contiguous_trade_seq_passes_and_a_gap_is_reported() -> None:
    """seq n, n+1 pass; a jump emits a named SequenceGapEvent and still delivers the frame."""
    p = open_with_ticker_and_trade()
    assert isinstance(feed(p, **trade(1))[0], m.Trade)
    assert isinstance(feed(p, **trade(2))[0], m.Trade)
    events = feed(p, **trade(5))
    assert events[0] == SequenceGapEvent(2, "trade", 3, 5, ("A", "B"))
    assert isinstance(events[1], m.Trade)
    assert isinstance(feed(p, **trade(6))[0], m.Trade)


def test_a_replayed_old_seq_is_dropped() -> None:
    """A frame whose seq is not newer than the last one is dropped, not delivered twice."""
    p = open_with_ticker_and_trade()
    feed(p, **trade(1))
    feed(p, **trade(2))
    assert feed(p, **trade(2)) == []


def test_ticker_frames_are_never_seq_checked() -> None:
    """Ticker frames have no seq; one that carries it anyway is tolerated."""
    p = open_with_ticker_and_trade()
    tick = {
        "type": "ticker",
        "sid": 1,
        "seq": 50,
        "msg": {
            "market_ticker": "A",
            "price_dollars": "0.5",
            "yes_bid_dollars": "0.49",
            "yes_ask_dollars": "0.51",
        },
    }
    assert len(feed(p, **tick)) == 1
    assert len(feed(p, **{**tick, "seq": 1})) == 1


def test_orderbook_gap_requests_a_snapshot() -> None:
    """An order-book gap sends update_subscription get_snapshot for the affected markets."""
    p = KalshiProtocol()
    p.subscribe(["orderbook_delta"], ["A"])
    p.connection_made()
    sent(p)
    feed(p, id=1, type="subscribed", msg={"channel": "orderbook_delta", "sid": 7})
    delta = {
        "type": "orderbook_delta",
        "sid": 7,
        "msg": {"market_ticker": "A", "price_dollars": "0.4", "delta_fp": "1.00", "side": "yes"},
    }
    feed(p, type="orderbook_snapshot", sid=7, seq=1, msg={"market_ticker": "A"})
    feed(p, **delta, seq=2)
    events = feed(p, **delta, seq=4)
    assert isinstance(events[0], SequenceGapEvent)
    assert sent(p) == [
        {
            "id": 2,
            "cmd": "update_subscription",
            "params": {"action": "get_snapshot", "sids": [7], "market_tickers": ["A"]},
        }
    ]
    # The snapshot answering it resets the sequence.
    feed(p, type="orderbook_snapshot", id=2, sid=7, seq=10, msg={"market_ticker": "A"})
    assert isinstance(feed(p, **delta, seq=11)[0], m.OrderbookDelta)


@pytest.mark.parametrize("code", [10, 25])
def test_terminal_channel_errors_resubscribe_that_channel(code: int) -> None:
    """Errors 10 and 25 scoped to a sid drop it and subscribe the channel again."""
    p = open_with_ticker_and_trade()
    feed(p, type="error", sid=2, msg={"code": code, "msg": "Channel error"})
    assert 2 not in p.subscriptions
    assert sent(p) == [
        {
            "id": 3,
            "cmd": "subscribe",
            "params": {"channels": ["trade"], "market_tickers": ["A", "B"]},
        }
    ]


def test_adding_markets_uses_update_subscription_on_the_live_sid() -> None:
    """New markets join the live subscription without a reconnect."""
    p = open_with_ticker_and_trade()
    p.add_markets("ticker", ["C", "A"])
    assert sent(p) == [
        {
            "id": 3,
            "cmd": "update_subscription",
            "params": {"action": "add_markets", "sids": [1], "market_tickers": ["C"]},
        }
    ]
    feed(p, id=3, sid=1, seq=1, type="ok", msg={"market_tickers": ["A", "B", "C"]})
    assert p.subscriptions[1].markets == {"A", "B", "C"}


def test_a_refused_update_falls_back_to_resubscribing_the_channel() -> None:
    """If Kalshi refuses update_subscription (e.g. code 13), the channel is rebuilt."""
    p = open_with_ticker_and_trade()
    p.remove_markets("ticker", ["B"])
    sent(p)
    events = feed(p, id=3, type="error", msg={"code": 13, "msg": "Unsupported action"})
    assert isinstance(events[0], CommandRejected)
    assert sent(p) == [
        {"id": 4, "cmd": "unsubscribe", "params": {"sids": [1]}},
        {"id": 5, "cmd": "subscribe", "params": {"channels": ["ticker"], "market_tickers": ["A"]}},
    ]


def test_removing_the_last_market_unsubscribes_the_channel() -> None:
    """A channel with no market left is unsubscribed instead of subscribed to all markets."""
    p = open_with_ticker_and_trade()
    p.remove_markets("ticker", ["A", "B"])
    assert sent(p) == [{"id": 3, "cmd": "unsubscribe", "params": {"sids": [1]}}]
    assert "ticker" not in p.wanted


def test_garbage_becomes_a_decode_failure_event() -> None:
    """Malformed frames are reported as events; the session keeps going."""
    p = open_with_ticker_and_trade()
    p.receive_text(b"\x00garbage")
    (event,) = p.events_received()
    assert isinstance(event, DecodeFailure)
    assert isinstance(feed(p, **trade(1))[0], m.Trade)


@pytest.mark.parametrize(
    ("rand", "expected"),
    [(0.0, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]), (0.999999, [0.25, 0.5, 1.0, 2.0, 4.0, 4.0])],
)
def test_backoff_grows_to_the_cap_with_bounded_jitter(rand: float, expected: list[float]) -> None:
    """Delays double from min_delay to max_delay; jitter only ever shortens them (≤ 50%)."""
    gen = backoff(min_delay=0.5, max_delay=8.0, rand=lambda: rand)
    assert [round(next(gen), 3) for _ in expected] == expected
