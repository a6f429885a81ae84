"""The live market view: quotes, last price, metadata and bounded price history."""

from __future__ import annotations

from watcher.domain.market import Markets, MarketState, PricePoint

T = "KXCPI-26JAN-T0.3"


def test_a_ticker_update_sets_prices_and_none_leaves_them():
    """apply_ticker stores YES bid/ask/last in micro-dollars; None keeps the previous value."""
    markets = Markets()
    markets.apply_ticker(T, 1000, 450_000, 470_000, 460_000)
    state = markets.apply_ticker(T, 2000, None, 480_000, None)
    assert (state.yes_bid, state.yes_ask, state.yes_last, state.last_tick_ms) == (
        450_000,
        480_000,
        460_000,
        2000,
    )
    assert markets[T] is state and T in markets and len(markets) == 1


def test_an_older_ticker_update_is_ignored():
    """Ticker frames have no seq: one older than the newest applied is dropped."""
    markets = Markets()
    markets.apply_ticker(T, 2000, 450_000, 470_000, 460_000)
    state = markets.apply_ticker(T, 1000, 100_000, 200_000, 150_000)
    assert (state.yes_bid, state.last_tick_ms) == (450_000, 2000)


def test_a_trade_sets_the_last_price_unless_it_is_late_or_older():
    """A fresh trade is the new last price; late or out-of-order trades are not."""
    markets = Markets()
    markets.apply_ticker(T, 2000, 450_000, 470_000, 460_000)
    assert markets.apply_trade(T, 1500, 400_000).yes_last == 460_000
    assert markets.apply_trade(T, 3000, 400_000, late=True).yes_last == 460_000
    state = markets.apply_trade(T, 3000, 470_000)
    assert (state.yes_last, state.last_trade_ms, state.last_tick_ms) == (470_000, 3000, 2000)


def test_history_keeps_the_window_plus_one_point_before_it():
    """Only the longest velocity window is kept, plus the last point before it."""
    markets = Markets(history_ms=10_000)
    for ts, last in [(0, 1), (4_000, 2), (8_000, 3), (12_000, 4), (16_000, 5)]:
        markets.apply_ticker(T, ts, None, None, last)
    assert [p.ts_ms for p in markets[T].history] == [4_000, 8_000, 12_000, 16_000]
    assert markets[T].price_at(16_000 - 10_000) == PricePoint(4_000, None, None, 2)
    assert markets[T].price_at(0) == PricePoint(4_000, None, None, 2)  # older than kept: oldest


def test_no_history_is_kept_without_a_velocity_rule():
    """history_ms 0 keeps nothing; points at the same ms replace each other."""
    markets = Markets()
    markets.apply_ticker(T, 0, 1, 2, 3)
    assert not markets[T].history and markets[T].price_at(0) is None
    markets.history_ms = 60_000
    markets.apply_ticker(T, 5, 1, 2, 3)
    markets.apply_ticker(T, 5, 1, 2, 4)
    assert list(markets[T].history) == [PricePoint(5, 1, 2, 4)]


def test_lifecycle_events_set_status_result_close_time_and_payout():
    """determined/settled set status and result; a late determined does not undo finalized."""
    markets = Markets()
    markets.apply_lifecycle(T, 1, "close_date_updated", close_time_ms=9_000)
    state = markets.apply_lifecycle(
        T, 2, "determined", result="yes", settlement_value_micros=1_000_000
    )
    assert (state.status, state.result, state.close_time_ms) == ("determined", "yes", 9_000)
    assert state.settlement_value_micros == 1_000_000
    markets.apply_lifecycle(T, 3, "settled")
    assert markets.apply_lifecycle(T, 4, "determined").status == "finalized"


def test_metadata_fills_title_status_close_time_and_result():
    """apply_metadata sets what REST says and leaves what it does not."""
    markets = Markets()
    markets.apply_metadata(T, title="CPI above 0.3%", status="active", close_time_ms=5)
    state = markets.apply_metadata(T, result="")
    assert (state.title, state.status, state.close_time_ms, state.result) == (
        "CPI above 0.3%",
        "active",
        5,
        None,
    )


def test_watch_records_when_watching_began_once_and_forget_drops_the_market():
    """watch() is idempotent; forget() removes the market."""
    markets = Markets()
    assert markets.watch(T, 100).watched_since_ms == 100
    assert markets.watch(T, 200).watched_since_ms == 100
    assert markets.tickers() == [T] and [s.ticker for s in markets] == [T]
    markets.forget(T)
    assert markets.get(T) is None


def test_reprs_are_informative():
    """Reprs name the market and its prices, or the registry's size."""
    markets = Markets(history_ms=60_000)
    markets.apply_ticker(T, 1, 450_000, 470_000, None)
    assert repr(markets) == "Markets(1 markets, history_ms=60000)"
    assert repr(markets[T]).startswith(f"MarketState('{T}', yes_bid=450000, yes_ask=470000")
    assert isinstance(markets[T], MarketState)
