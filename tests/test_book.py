"""The local order book: pure tests, no event loop."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import watcher.kalshi.book as book_module
from watcher.errors import ProtocolError
from watcher.kalshi.book import OrderBook, OrderBooks
from watcher.kalshi.fixed import DOLLAR, parse_micros
from watcher.kalshi.messages import (
    OrderbookDelta,
    OrderbookDeltaMsg,
    OrderbookSnapshot,
    OrderbookSnapshotMsg,
    RestOrderbookResponse,
    decode_message,
    decode_rest,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kalshi"
VARIANTS = ["", "2026-08", "legacy-2026-03"]
TICKER = "FED-23DEC-T3.00"

D = Decimal


def m(text: str) -> int:
    """Micro-units of a decimal string."""
    return parse_micros(text)


def to_m(value: Decimal) -> int:
    """Micro-units of a Decimal."""
    return parse_micros(str(value))


def load_snapshot(variant: str = "") -> OrderbookSnapshot:
    frame = decode_message((FIXTURES / variant / "orderbook_snapshot.json").read_bytes())
    assert isinstance(frame, OrderbookSnapshot)
    return frame


def load_delta(variant: str = "") -> OrderbookDelta:
    frame = decode_message((FIXTURES / variant / "orderbook_delta.json").read_bytes())
    assert isinstance(frame, OrderbookDelta)
    return frame


def snapshot(
    yes: list[tuple[str, str]], no: list[tuple[str, str]], ticker: str = TICKER
) -> OrderbookSnapshotMsg:
    return OrderbookSnapshotMsg(
        market_ticker=ticker,
        yes_dollars_fp=[(D(p), D(c)) for p, c in yes],
        no_dollars_fp=[(D(p), D(c)) for p, c in no],
    )


def delta(side: str, price: str, change: str, ticker: str = TICKER) -> OrderbookDeltaMsg:
    return OrderbookDeltaMsg(
        market_ticker=ticker,
        price_dollars=D(price),
        delta_fp=D(change),
        side=side,  # type: ignore[arg-type]
    )


def fixture_book(variant: str = "") -> OrderBook:
    book = OrderBook(TICKER)
    book.apply_snapshot(load_snapshot(variant).msg)
    return book


# Published fixtures


@pytest.mark.parametrize("variant", VARIANTS)
def test_published_snapshot_gives_best_bids_and_asks(variant):
    """Kalshi's example snapshot: best YES bid 22¢, best NO bid 56¢, so YES ask 44¢, NO ask 78¢."""
    book = fixture_book(variant)
    assert book.is_valid
    assert book.best_yes_bid == m("0.22")
    assert book.best_no_bid == m("0.56")
    assert book.best_yes_ask == m("0.44")
    assert book.best_no_ask == m("0.78")
    assert book.levels("yes") == [(m("0.22"), m("333")), (m("0.08"), m("300"))]
    assert book.levels("no") == [(m("0.56"), m("146")), (m("0.54"), m("20"))]


@pytest.mark.parametrize("variant", VARIANTS)
def test_published_delta_applies_to_a_book_holding_its_level(variant):
    """The example delta (YES 96¢, −54) empties a 54-contract level at 96¢ and removes it."""
    frame = load_delta(variant)
    assert frame.msg.price_dollars == D("0.96")
    book = OrderBook(TICKER)
    book.apply_snapshot(snapshot([("0.22", "333"), ("0.96", "54")], [("0.02", "10")]))
    assert book.best_yes_bid == m("0.96")
    assert book.apply_delta(frame.msg) is True
    assert m("0.96") not in book.yes_bids
    assert book.best_yes_bid == m("0.22")
    assert book.best_no_ask == m("0.78")


@pytest.mark.parametrize("variant", VARIANTS)
def test_published_delta_does_not_fit_the_published_snapshot(variant):
    """Kalshi's example pair is inconsistent (no YES 96¢ level to remove 54 from): error, resync."""
    book = fixture_book(variant)
    with pytest.raises(ProtocolError, match=r"FED-23DEC-T3\.00.*side yes.*price 0\.96"):
        book.apply_delta(load_delta(variant).msg)
    assert not book.is_valid


# Levels and reciprocity


def test_delta_adds_a_new_level_and_moves_the_best_bid():
    """A delta at an empty price creates the level; a higher bid becomes the best bid."""
    book = fixture_book()
    assert book.apply_delta(delta("yes", "0.3000", "12.00"))
    assert book.yes_bids[m("0.30")] == m("12")
    assert book.best_yes_bid == m("0.30")
    assert book.best_no_ask == m("0.70")


def test_delta_adds_fractional_contracts_exactly():
    """Counts are exact micro-units: 146 + 0.01 contracts is 146.01, not a float."""
    book = fixture_book()
    book.apply_delta(delta("no", "0.56", "0.01"))
    assert book.no_bids[m("0.56")] == m("146.01")


def test_level_that_reaches_zero_is_removed():
    """A delta that brings a level to exactly zero removes it; the next level becomes best."""
    book = fixture_book()
    book.apply_delta(delta("no", "0.5600", "-146.00"))
    assert m("0.56") not in book.no_bids
    assert book.best_no_bid == m("0.54")
    assert book.best_yes_ask == m("0.46")


def test_emptied_side_has_no_best_bid_and_no_opposite_ask():
    """With no NO bids there is no YES ask (and the reverse)."""
    book = fixture_book()
    book.apply_delta(delta("no", "0.56", "-146"))
    book.apply_delta(delta("no", "0.54", "-20"))
    assert book.best_no_bid is None
    assert book.best_yes_ask is None
    assert book.best_no_ask == m("0.78")


@pytest.mark.parametrize(
    ("yes", "no", "yes_ask", "no_ask"),
    [
        ([("0.45", "10")], [("0.53", "5")], "0.47", "0.55"),
        ([("0.01", "1")], [("0.99", "1")], "0.01", "0.99"),
        ([("0.4550", "1")], [("0.5425", "1")], "0.4575", "0.5450"),
        ([("0.000100", "1")], [("0.999900", "1")], "0.0001", "0.9999"),
    ],
)
def test_asks_are_one_dollar_minus_the_opposite_best_bid(yes, no, yes_ask, no_ask):
    """YES ask = $1 − best NO bid; NO ask = $1 − best YES bid, exactly, sub-penny included."""
    book = OrderBook(TICKER)
    book.apply_snapshot(snapshot(yes, no))
    assert book.best_yes_ask == m(yes_ask)
    assert book.best_no_ask == m(no_ask)


def test_empty_snapshot_is_a_valid_empty_book():
    """A snapshot without either side (keys absent) is valid and has no prices."""
    book = OrderBook(TICKER)
    book.apply_snapshot(OrderbookSnapshotMsg(market_ticker=TICKER))
    assert book.is_valid
    assert (book.best_yes_bid, book.best_no_bid, book.best_yes_ask, book.best_no_ask) == (
        None,
        None,
        None,
        None,
    )


def test_snapshot_drops_zero_levels_and_adds_duplicate_prices():
    """A zero count in a snapshot is no level; a price listed twice holds both counts."""
    book = OrderBook(TICKER)
    book.apply_snapshot(snapshot([("0.10", "0"), ("0.20", "5"), ("0.20", "2.5")], []))
    assert book.levels("yes") == [(m("0.20"), m("7.5"))]


# Errors and invalid books


def test_negative_level_raises_protocol_error_naming_everything_and_invalidates():
    """Removing more than a level holds is an inconsistency: no clamping, an error, a dead book."""
    book = fixture_book()
    with pytest.raises(ProtocolError) as info:
        book.apply_delta(delta("yes", "0.2200", "-334.00"))
    message = str(info.value)
    for part in (TICKER, "side yes", "price 0.22", "333 contracts", "delta -334.00", "= -1"):
        assert part in message
    assert not book.is_valid
    assert book.levels("yes") == []
    assert book.best_yes_bid is None


def test_invalid_book_ignores_deltas_until_the_next_snapshot():
    """After an error or a gap, deltas are reported as ignored; a snapshot makes the book live."""
    book = fixture_book()
    book.invalidate()
    assert not book.is_valid
    assert book.apply_delta(delta("yes", "0.30", "5")) is False
    assert book.levels("yes") == []
    book.apply_snapshot(load_snapshot().msg)
    assert book.apply_delta(delta("yes", "0.30", "5")) is True
    assert book.best_yes_bid == m("0.30")


def test_delta_before_the_first_snapshot_is_ignored_and_reported():
    """A new book is invalid: deltas return False and change nothing."""
    book = OrderBook(TICKER)
    assert not book.is_valid
    assert book.apply_delta(delta("no", "0.40", "10")) is False
    assert book.no_bids == {}


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        ("0", "out of range"),
        ("1.00", "out of range"),
        ("-0.10", "out of range"),
        ("0.12345678", "not exact"),
    ],
)
def test_bad_price_in_a_delta_is_a_protocol_error(price, reason):
    """Prices must be exact and strictly between 0 and 1 dollar; otherwise the book is dropped."""
    book = fixture_book()
    with pytest.raises(ProtocolError, match=reason):
        book.apply_delta(delta("yes", price, "1"))
    assert not book.is_valid


def test_bad_snapshot_leaves_no_half_applied_book():
    """A snapshot with a negative count raises and leaves the book invalid and empty."""
    book = fixture_book()
    with pytest.raises(ProtocolError, match=r"negative level.*side no.*price 0\.30"):
        book.apply_snapshot(snapshot([("0.10", "5")], [("0.30", "-1")]))
    assert not book.is_valid
    assert book.levels("yes") == []


def test_frame_for_another_market_is_refused():
    """A book only takes frames of its own market (a routing bug, not a protocol error)."""
    book = OrderBook(TICKER)
    with pytest.raises(ValueError, match="OTHER-1"):
        book.apply_snapshot(snapshot([], [], ticker="OTHER-1"))


def test_views_are_read_only():
    """yes_bids/no_bids are views: callers cannot corrupt the book through them."""
    book = fixture_book()
    with pytest.raises(TypeError):
        book.yes_bids[m("0.5")] = 1  # type: ignore[index]


# use_yes_price


def test_yes_price_convention_gives_the_same_book():
    """NO prices reported in yes-leg terms are stored at 1 − p, so both conventions agree."""
    default = fixture_book()
    yes_priced = OrderBook(TICKER)
    yes_priced.apply_snapshot(
        snapshot([("0.0800", "300"), ("0.2200", "333")], [("0.4600", "20"), ("0.4400", "146")]),
        use_yes_price=True,
    )
    assert yes_priced == default
    default.apply_delta(delta("no", "0.60", "7"))
    yes_priced.apply_delta(delta("no", "0.40", "7"), use_yes_price=True)
    default.apply_delta(delta("yes", "0.22", "-3"))
    yes_priced.apply_delta(delta("yes", "0.22", "-3"), use_yes_price=True)
    assert yes_priced == default
    assert yes_priced.best_no_bid == m("0.60")
    assert yes_priced.best_yes_ask == m("0.40")


# REST resync


def rest_fixture() -> RestOrderbookResponse:
    body = (FIXTURES / "rest_get_market_orderbook_response.json").read_bytes()
    result: RestOrderbookResponse = decode_rest(body, RestOrderbookResponse)
    return result


def test_rest_resync_equals_the_server_book():
    """After apply_rest the book holds exactly the REST levels, best (last listed) first."""
    server = rest_fixture().orderbook_fp
    assert server.yes_dollars is not None
    assert server.no_dollars is not None
    book = fixture_book()
    book.invalidate()
    book.apply_rest(server)
    assert book.is_valid
    assert book.levels("yes") == [(to_m(p), to_m(c)) for p, c in reversed(server.yes_dollars)]
    assert book.levels("no") == [(to_m(p), to_m(c)) for p, c in reversed(server.no_dollars)]
    assert book.best_yes_bid == m("0.42")
    assert book.best_no_bid == m("0.56")
    assert book.best_yes_ask == m("0.44")
    same_via_ws = OrderBook(TICKER)
    same_via_ws.apply_snapshot(
        OrderbookSnapshotMsg(
            market_ticker=TICKER, yes_dollars_fp=server.yes_dollars, no_dollars_fp=server.no_dollars
        )
    )
    assert book == same_via_ws
    assert book.state() == same_via_ws.state()


# The registry


def test_registry_creates_books_on_snapshots_and_routes_deltas():
    """OrderBooks keeps one book per market and applies frames to the right one."""
    books = OrderBooks()
    assert books.apply(load_snapshot()) is True
    assert TICKER in books
    assert len(books) == 1
    assert books.apply(OrderbookDelta(sid=2, seq=3, msg=delta("yes", "0.30", "1"))) is True
    book = books.get(TICKER)
    assert book is not None
    assert book.best_yes_bid == m("0.30")
    assert list(books) == [TICKER]


def test_registry_reports_deltas_for_markets_without_a_snapshot():
    """A delta for a market never snapshotted is ignored and reported (False)."""
    books = OrderBooks()
    assert books.apply(OrderbookDelta(msg=delta("yes", "0.30", "1", ticker="NEW-1"))) is False
    assert books.get("NEW-1") is None


def test_registry_invalidates_all_books_after_a_gap():
    """invalidate() with no argument kills every book; deltas are then ignored."""
    books = OrderBooks()
    books.apply(load_snapshot())
    books.apply_rest("OTHER-1", rest_fixture().orderbook_fp)
    books.invalidate()
    assert all(not book.is_valid for ticker in books if (book := books.get(ticker)))
    assert books.apply(OrderbookDelta(msg=delta("yes", "0.30", "1"))) is False
    books.remove("OTHER-1")
    assert "OTHER-1" not in books


def test_registry_uses_its_price_convention():
    """OrderBooks(use_yes_price=True) converts NO prices of every frame."""
    books = OrderBooks(use_yes_price=True)
    books.apply(OrderbookSnapshot(msg=snapshot([], [("0.46", "20")])))
    book = books.get(TICKER)
    assert book is not None
    assert book.best_no_bid == m("0.54")


def test_reprs_are_informative():
    """A book's repr names the market, validity and best bids; the registry's counts books."""
    book = fixture_book()
    assert repr(book) == (
        "<OrderBook FED-23DEC-T3.00 valid yes=2 levels best 22¢ no=2 levels best 56¢>"
    )
    books = OrderBooks()
    books.apply(load_snapshot())
    assert repr(books) == "<OrderBooks 1 markets, 1 valid, use_yes_price=False>"


def test_book_module_is_sans_io():
    """book.py imports neither asyncio nor any network library."""
    assert book_module.__file__ is not None
    tree = ast.parse(Path(book_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported.isdisjoint({"asyncio", "socket", "websockets", "httpx"})


# Property: random delta sequences


deltas = st.lists(
    st.tuples(
        st.sampled_from(["yes", "no"]),
        st.integers(min_value=1, max_value=99),  # cents
        st.integers(min_value=-40_000, max_value=40_000),  # hundredths of a contract
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, database=None)
@given(deltas)
def test_random_deltas_keep_levels_positive_and_sides_reciprocal(steps):
    """Any delta sequence leaves only positive levels, matches a model, keeps asks = $1 − bids,
    and both NO price conventions build the same book."""
    book, mirrored = fixture_book(), OrderBook(TICKER)
    mirrored.apply_snapshot(
        snapshot([("0.08", "300"), ("0.22", "333")], [("0.46", "20"), ("0.44", "146")]),
        use_yes_price=True,
    )
    model = {"yes": dict(book.yes_bids), "no": dict(book.no_bids)}
    for side, cents, hundredths in steps:
        price, change = D(cents) / 100, D(hundredths) / 100
        yes_leg = price if side == "yes" else 1 - price
        after = model[side].get(m(str(price)), 0) + m(str(change))
        if after < 0:
            with pytest.raises(ProtocolError):
                book.apply_delta(delta(side, str(price), str(change)))
            assert not book.is_valid
            return
        book.apply_delta(delta(side, str(price), str(change)))
        mirrored.apply_delta(delta(side, str(yes_leg), str(change)), use_yes_price=True)
        model[side][m(str(price))] = after
        model[side] = {p: c for p, c in model[side].items() if c}
        check_invariants(book, model)
        assert mirrored == book


def check_invariants(book: OrderBook, model: dict[str, dict[int, int]]) -> None:
    assert book.is_valid
    assert dict(book.yes_bids) == model["yes"]
    assert dict(book.no_bids) == model["no"]
    assert all(count > 0 for count in (*book.yes_bids.values(), *book.no_bids.values()))
    if book.best_no_bid is not None:
        assert book.best_yes_ask == DOLLAR - book.best_no_bid
    if book.best_yes_bid is not None:
        assert book.best_no_ask == DOLLAR - book.best_yes_bid
