"""Kalshi feed frames → the decision step's events (the boundary of :mod:`watcher.rules.session`).

The live pipeline turns every ticker, trade and lifecycle frame into a
:mod:`watcher.rules.events` value here; ``watcher replay`` does the same for the lifecycle frames
it stored (ticks and trades are stored as rows, which it converts itself). An event's time is the
frame's own (``ts_ms``, else ``ts``, else the envelope's ``sending_ts_ms``), else ``fallback_ms``.
"""

from __future__ import annotations

from watcher.kalshi import messages as m
from watcher.kalshi.fixed import to_micros
from watcher.rules.events import LifecycleEvent, TickEvent, TradeEvent

__all__ = ["lifecycle_event", "tick_event", "trade_event"]


def tick_event(frame: m.Ticker, fallback_ms: int) -> TickEvent:
    """The ``ticker`` frame as a :class:`TickEvent` (YES bid, ask and last in micro-dollars;
    cumulative volume, open interest and the sizes at the bid and ask in micro-contracts)."""
    msg = frame.msg
    volume, interest = msg.volume_fp, msg.open_interest_fp
    bid_size, ask_size = msg.yes_bid_size_fp, msg.yes_ask_size_fp
    return TickEvent(
        msg.market_ticker,
        m.timestamp_ms(msg.ts_ms, msg.ts, frame.sending_ts_ms) or fallback_ms,
        to_micros(msg.yes_bid_dollars),
        to_micros(msg.yes_ask_dollars),
        to_micros(msg.price_dollars),
        None if volume is None else to_micros(volume),
        None if interest is None else to_micros(interest),
        None if bid_size is None else to_micros(bid_size),
        None if ask_size is None else to_micros(ask_size),
    )


def trade_event(frame: m.Trade, fallback_ms: int, *, late: bool) -> TradeEvent:
    """The ``trade`` frame as a :class:`TradeEvent`; ``late`` marks a REST backfill."""
    msg = frame.msg
    return TradeEvent(
        msg.market_ticker,
        m.timestamp_ms(msg.ts_ms, msg.ts, frame.sending_ts_ms) or fallback_ms,
        msg.trade_id,
        to_micros(msg.yes_price_dollars),
        to_micros(msg.count_fp),
        msg.taker_side,
        late,
    )


def lifecycle_event(frame: m.MarketLifecycle, fallback_ms: int) -> LifecycleEvent:
    """The ``market_lifecycle_v2`` frame as a :class:`LifecycleEvent`.

    Its time is the settlement or determination time, else the frame's sending time, else
    ``fallback_ms`` (the receive time live, the stored time in a replay).
    """
    msg = frame.msg
    ts = m.timestamp_ms(None, msg.settled_ts or msg.determination_ts, frame.sending_ts_ms)
    value = msg.settlement_value
    return LifecycleEvent(
        msg.market_ticker,
        ts or fallback_ms,
        msg.event_type,
        msg.result,
        to_micros(value) if value is not None else None,
        msg.close_ts * 1000 if msg.close_ts is not None else None,
    )
