"""Tests of watcher.domain.positions: trades.json, located errors, side-aware prices, P&L."""

from __future__ import annotations

import ast
import json
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest

from watcher.domain.positions import (
    UNWATCHED,
    WATCHED_STATUSES,
    Portfolio,
    Position,
    SideQuote,
    mark_price,
    move_micros,
    pnl_dollars,
    side_quote,
)
from watcher.domain.trades_file import PositionsError, load_positions, parse_positions
from watcher.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "trades.json.example"
DOMAIN = Path(__file__).resolve().parents[1] / "watcher" / "domain"
MODULES = (DOMAIN / "positions.py", DOMAIN / "trades_file.py")

BASE: dict[str, Any] = {"ticker": "KXCPI-26JAN-T0.3", "side": "YES", "entry_price": 40}


def entry(**fields: Any) -> dict[str, Any]:
    """A valid entry (10 contracts of YES at 40¢) with ``fields`` changed; None removes a field."""
    merged = {**BASE, "contracts": 10, **fields}
    return {key: value for key, value in merged.items() if value is not None}


def one(text_entry: dict[str, Any] | str) -> Position:
    """Parse a file holding the single entry (a dict, or its JSON text) and return it."""
    text = text_entry if isinstance(text_entry, str) else json.dumps(text_entry)
    (position,) = parse_positions(f"[{text}]").positions
    return position


def problems(text: str) -> list[str]:
    """Every located message that parsing ``text`` reports."""
    with pytest.raises(PositionsError) as caught:
        parse_positions(text)
    return [error.located() for error in caught.value.errors]


# Shapes


def test_object_shape_loads_trades_and_ignores_other_keys() -> None:
    """{"trades": [...], "stats": {...}} loads the trades; other top-level keys are ignored."""
    text = json.dumps({"stats": {"wins": 3}, "trades": [entry(), entry(side="NO")], "v": 2})
    portfolio = parse_positions(text)
    assert [p.side for p in portfolio.positions] == ["YES", "NO"]
    assert [p.index for p in portfolio.positions] == [1, 2]


def test_bare_list_shape_loads() -> None:
    """A bare list of entries is the other accepted shape."""
    portfolio = parse_positions(json.dumps([entry(), entry(ticker="KXFEDDECISION-26DEC-H0")]))
    assert [p.ticker for p in portfolio.positions] == ["KXCPI-26JAN-T0.3", "KXFEDDECISION-26DEC-H0"]


@pytest.mark.parametrize("text", ["[]", '{"trades": []}', '{"trades": [], "stats": {}}'])
def test_empty_trades_list_is_an_empty_portfolio(text: str) -> None:
    """An empty trades list is valid and holds no positions."""
    assert parse_positions(text).positions == ()


def test_portfolio_keeps_the_filename_as_path() -> None:
    """The portfolio remembers the name it was parsed under."""
    portfolio = parse_positions("[]", filename="my/trades.json")
    assert portfolio.path == "my/trades.json"
    assert repr(portfolio) == "Portfolio(path='my/trades.json', positions=0, watched=0)"


# Field variants


@pytest.mark.parametrize(
    ("fields", "micros"),
    [
        ({"entry_price": 30}, 300_000),
        ({"entry_price": 30.5}, 305_000),
        ({"entry_price": 0.3}, 3_000),  # strict: entry_price is always cents
        ({"entry_price": 99.99}, 999_900),
        ({"entry_price": None, "entry_cents": 30}, 300_000),
        ({"entry_price": None, "entry_cents": 17.25}, 172_500),
        ({"entry_price": None, "entry_cents": 0.0125}, 125),
        ({"entry_price": None, "entry_price_dollars": "0.30"}, 300_000),
        ({"entry_price": None, "entry_price_dollars": "0.6150"}, 615_000),
        ({"entry_price": None, "entry_price_dollars": " 0.000001 "}, 1),
        ({"entry_price": None, "entry_price_dollars": 0.45}, 450_000),
        ({"entry_price": 30, "entry_cents": None}, 300_000),  # null counts as absent
    ],
)
def test_entry_price_variants_give_exact_micros(fields: dict[str, Any], micros: int) -> None:
    """entry_price/entry_cents are cents, entry_price_dollars is dollars; all exact."""
    assert one(entry(**fields)).entry_micros == micros


def test_float_lookalike_cents_are_read_without_binary_floats() -> None:
    """A number such as 30.1 is read as the decimal the user wrote, not a binary float."""
    assert one(
        '{"ticker": "T", "side": "YES", "entry_price": 30.1, "contracts": 1}'
    ).entry_micros == (301_000)


@pytest.mark.parametrize(
    ("fields", "contracts"),
    [
        ({"contracts": 10}, Decimal(10)),
        ({"contracts": 2.5}, Decimal("2.5")),
        ({"contracts": None, "quantity": 120}, Decimal(120)),
        ({"contracts": None, "position_size": 100}, Decimal("250.00")),  # $100 at 40¢
        ({"contracts": None, "position_size": 100, "entry_price": 30}, Decimal("333.33")),
        ({"contracts": None, "position_size": 100, "entry_price": 30.5}, Decimal("327.86")),
        ({"contracts": None, "position_size": 10, "entry_price": 30.5}, Decimal("32.78")),
        ({"contracts": None, "position_size": "12.34", "entry_price": 1}, Decimal("1234.00")),
        ({"contracts": None, "position_size": 0.0041}, Decimal("0.01")),
    ],
)
def test_size_variants_give_exact_contracts(fields: dict[str, Any], contracts: Decimal) -> None:
    """contracts/quantity are counts; position_size dollars convert, rounded down to 0.01."""
    position = one(entry(**fields))
    assert position.contracts == contracts
    assert str(position.contracts) == str(contracts)


def test_position_size_conversion_is_exact_beyond_the_decimal_context() -> None:
    """Converting position_size never loses digits, even with a tiny decimal precision."""
    with localcontext() as context:
        context.prec = 3
        position = one(entry(contracts=None, position_size=123456789, entry_price=30))
    assert position.contracts == Decimal("411522630.00")


@pytest.mark.parametrize(
    ("side", "expected"), [("YES", "YES"), ("yes", "YES"), ("No", "NO"), (" no ", "NO")]
)
def test_side_is_normalised_to_upper_case(side: str, expected: str) -> None:
    """side is YES or NO in any case."""
    assert one(entry(side=side)).side == expected


@pytest.mark.parametrize(
    ("status", "expected", "watched"),
    [
        (None, "PENDING", True),
        ("PENDING", "PENDING", True),
        ("open", "OPEN", True),
        ("Settled", "SETTLED", False),
        ("CLOSED", "CLOSED", False),
        ("cancelled", "CANCELLED", False),
    ],
)
def test_status_decides_whether_a_position_is_watched(
    status: str | None, expected: str, watched: bool
) -> None:
    """PENDING/OPEN (or no status) are watched; SETTLED/CLOSED/CANCELLED are not."""
    position = one(entry(status=status))
    assert position.status == expected
    assert position.is_watched is watched


def test_status_sets_partition_every_status() -> None:
    """The watched and unwatched status sets are disjoint."""
    assert WATCHED_STATUSES == {"PENDING", "OPEN"}
    assert UNWATCHED == {"SETTLED", "CLOSED", "CANCELLED"}


@pytest.mark.parametrize(
    ("fields", "attrs"),
    [
        ({}, {"id": None, "title": None, "settles": None}),
        ({"id": "t-1", "title": "CPI above 0.3%"}, {"id": "t-1", "title": "CPI above 0.3%"}),
        ({"id": 7}, {"id": "7"}),
        ({"settles": "2026-02-11"}, {"settles": "2026-02-11"}),
        ({"expiration": "2026-02-11T13:30:00Z"}, {"settles": "2026-02-11T13:30:00Z"}),
        ({"settles": "2026-02-11", "expiration": "2026-03-01"}, {"settles": "2026-02-11"}),
        ({"title": ""}, {"title": None}),
    ],
)
def test_optional_fields_are_read(fields: dict[str, Any], attrs: dict[str, Any]) -> None:
    """id, title and settles (or expiration) are optional; an integer id becomes text."""
    position = one(entry(**fields))
    assert {name: getattr(position, name) for name in attrs} == attrs


def test_ticker_is_stripped_and_upper_cased() -> None:
    """Kalshi tickers are upper case; a lower-case one in the file is normalised."""
    assert one(entry(ticker=" kxcpi-26jan-t0.3 ")).ticker == "KXCPI-26JAN-T0.3"


def test_unknown_fields_are_kept_in_raw_read_only() -> None:
    """Every field, known or not, is kept as read (numbers as int/Decimal) for write-back."""
    text = (
        '{"ticker": "T", "side": "NO", "entry_price": 30.5, "contracts": 3, '
        '"notes": "n", "tags": ["a"], "pnl_dollars": 1.10, "description": "d"}'
    )
    raw = one(text).raw
    assert raw["notes"] == "n"
    assert raw["tags"] == ["a"]
    assert raw["description"] == "d"
    assert raw["entry_price"] == Decimal("30.5")
    assert str(raw["pnl_dollars"]) == "1.10"
    with pytest.raises(TypeError):
        raw["notes"] = "changed"  # type: ignore[index]


def test_positions_compare_by_parsed_values_and_are_hashable() -> None:
    """Two entries that differ only in unknown fields give equal, hashable positions."""
    first = one(entry(notes="a"))
    second = one(entry(notes="b"))
    assert first == second
    assert len({first, second}) == 1


def test_line_is_where_each_entry_starts() -> None:
    """Each position records the line where its entry opens."""
    text = '{\n  "trades": [\n    {"ticker": "A", "side": "YES", "entry_price": 1,\n'
    text += '     "contracts": 1},\n\n    {"ticker": "B", "side": "NO", "entry_price": 2, '
    text += '"contracts": 2}\n  ]\n}\n'
    assert [p.line for p in parse_positions(text).positions] == [3, 6]


# Portfolio views


def make_portfolio() -> Portfolio:
    entries = [
        entry(ticker="A"),
        entry(ticker="B", status="SETTLED"),
        entry(ticker="C", status="OPEN"),
        entry(ticker="A", side="NO"),
        entry(ticker="B", status="OPEN"),
        entry(ticker="D", status="CANCELLED"),
    ]
    return parse_positions(json.dumps({"trades": entries}))


def test_watched_keeps_pending_and_open_in_file_order() -> None:
    """watched() returns the PENDING and OPEN positions in file order."""
    assert [p.index for p in make_portfolio().watched()] == [1, 3, 4, 5]


def test_tickers_lists_each_watched_market_once_in_file_order() -> None:
    """tickers() is what to subscribe to: watched markets, unique, in file order."""
    assert make_portfolio().tickers() == ["A", "C", "B"]


def test_by_ticker_returns_every_position_in_a_market() -> None:
    """by_ticker() returns all positions in a market; watched_only drops the unwatched."""
    portfolio = make_portfolio()
    assert [p.index for p in portfolio.by_ticker("A")] == [1, 4]
    assert [p.index for p in portfolio.by_ticker("B")] == [2, 5]
    assert [p.index for p in portfolio.by_ticker("B", watched_only=True)] == [5]
    assert portfolio.by_ticker("D", watched_only=True) == ()
    assert portfolio.by_ticker("Z") == ()


def test_position_rejects_an_invalid_side_or_status_when_built_directly() -> None:
    """A Position built in code is checked like one read from the file."""
    with pytest.raises(ValueError, match="side must be YES or NO, but got 'yes'"):
        Position(index=1, line=1, ticker="T", side="yes", entry_micros=1, contracts=Decimal(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status must be one of"):
        Position(
            index=1, line=1, ticker="T", side="NO", entry_micros=1, contracts=Decimal(1), status="x"
        )


# Side-aware prices


C = 10_000  # one cent in micro-dollars


@pytest.mark.parametrize(
    ("side", "yes", "expected"),
    [
        ("YES", (62 * C, 64 * C, 63 * C), SideQuote(bid=62 * C, ask=64 * C, last=63 * C)),
        ("NO", (62 * C, 64 * C, 63 * C), SideQuote(bid=36 * C, ask=38 * C, last=37 * C)),
        ("NO", (1 * C, 99 * C, 50 * C), SideQuote(bid=1 * C, ask=99 * C, last=50 * C)),
        ("NO", (455_000, 530_000, 480_000), SideQuote(bid=470_000, ask=545_000, last=520_000)),
        ("NO", (None, 40 * C, None), SideQuote(bid=60 * C, ask=None, last=None)),
        ("NO", (40 * C, None, 41 * C), SideQuote(bid=None, ask=60 * C, last=59 * C)),
        ("YES", (None, None, None), SideQuote(bid=None, ask=None, last=None)),
    ],
)
def test_side_quote_reflects_the_yes_book_for_no(
    side: Any, yes: tuple[int | None, int | None, int | None], expected: SideQuote
) -> None:
    """NO bid = 1 − YES ask, NO ask = 1 − YES bid, NO last = 1 − YES last; None stays None."""
    quote = side_quote(side, yes_bid=yes[0], yes_ask=yes[1], yes_last=yes[2])
    assert quote == expected


def test_side_quote_rejects_an_unknown_side() -> None:
    """Only YES and NO have quotes."""
    with pytest.raises(ValueError, match="side must be YES or NO, but got 'MAYBE'"):
        side_quote("MAYBE", yes_bid=1, yes_ask=2, yes_last=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("quote", "basis", "expected"),
    [
        (SideQuote(36 * C, 38 * C, 37 * C), "last", 37 * C),
        (SideQuote(36 * C, 38 * C, 37 * C), "bid", 36 * C),
        (SideQuote(36 * C, 38 * C, 40 * C), "mid", 37 * C),
        (SideQuote(36 * C, 37 * C, None), "mid", 365_000),
        (SideQuote(1, 2, None), "mid", 2),  # 1.5 rounds half-even to 2
        (SideQuote(2, 3, None), "mid", 2),  # 2.5 rounds half-even to 2
        (SideQuote(4, 7, None), "mid", 6),  # 5.5 rounds half-even to 6
        (SideQuote(None, 38 * C, 37 * C), "mid", None),
        (SideQuote(36 * C, None, 37 * C), "mid", None),
        (SideQuote(None, 38 * C, 37 * C), "bid", None),
        (SideQuote(36 * C, 38 * C, None), "last", None),
    ],
)
def test_mark_price_by_basis(quote: SideQuote, basis: Any, expected: int | None) -> None:
    """last/bid pick that price; mid averages bid and ask, rounding half-even to 1 micro."""
    assert mark_price(quote, basis) == expected


def test_mark_price_defaults_to_last() -> None:
    """The default price basis is last."""
    assert mark_price(SideQuote(1, 3, 2)) == 2


def test_mark_price_rejects_an_unknown_basis() -> None:
    """Only last, bid and mid are price bases."""
    with pytest.raises(ValueError, match="price basis must be last, bid or mid, but got 'ask'"):
        mark_price(SideQuote(1, 2, 3), "ask")  # type: ignore[arg-type]


# P&L


@pytest.mark.parametrize(
    ("fields", "mark", "move", "pnl"),
    [
        ({"contracts": 10, "entry_price": 30.5}, 45 * C, 145_000, "1.45"),
        ({"contracts": 10, "entry_price": 45}, 30 * C, -150_000, "-1.50"),
        ({"contracts": 10, "entry_price": 45}, 45 * C, 0, "0.00"),
        ({"contracts": 3, "entry_price": None, "entry_cents": 30.25}, 305_000, 2_500, "0.0075"),
        ({"contracts": 2.5, "entry_price": 30}, 31 * C, 10_000, "0.025"),
        ({"contracts": None, "position_size": 100, "entry_price": 30}, 35 * C, 50_000, "16.6665"),
        ({"side": "NO", "contracts": 25, "entry_price": 38}, 36 * C, -20_000, "-0.50"),
        (
            {"side": "NO", "contracts": 100, "entry_price": None, "entry_price_dollars": "0.6150"},
            1,
            -614_999,
            "-61.4999",
        ),
        ({"contracts": 1000000, "entry_price": 1}, 99 * C, 980_000, "980000.00"),
    ],
)
def test_pnl_and_move_are_exact(fields: dict[str, Any], mark: int, move: int, pnl: str) -> None:
    """P&L = contracts × (mark − entry) in exact dollars; move = mark − entry in micros."""
    position = one(entry(**fields))
    assert move_micros(position, mark) == move
    result = pnl_dollars(position, mark)
    assert isinstance(result, Decimal)
    assert str(result) == pnl


def test_pnl_of_a_no_position_uses_no_prices() -> None:
    """A NO bought at 38¢ gains when the YES price falls (NO last = 1 − YES last)."""
    position = one(entry(side="NO", entry_price=38, contracts=25))
    quote = side_quote("NO", yes_bid=55 * C, yes_ask=57 * C, yes_last=56 * C)
    mark = mark_price(quote)
    assert mark == 44 * C
    assert pnl_dollars(position, mark) == Decimal("1.50")


def test_pnl_is_exact_beyond_the_decimal_context() -> None:
    """pnl_dollars never rounds, even with a tiny decimal precision."""
    position = Position(
        index=1, line=1, ticker="T", side="YES", entry_micros=1, contracts=Decimal("123456789.01")
    )
    with localcontext() as context:
        context.prec = 3
        assert str(pnl_dollars(position, 999_999)) == "123456542.09642198"


# Errors


def bad(fields: dict[str, Any] | str) -> str:
    """The entry as the 2nd trade of a file, so messages carry line 3 and trade #2."""
    text = fields if isinstance(fields, str) else json.dumps(fields)
    return '{"trades": [\n' + json.dumps(entry()) + ",\n" + text + "\n]}"


T = "trades.json:3: trade #2 (KXCPI-26JAN-T0.3): "


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (entry(ticker=None), "trades.json:3: trade #2: ticker is missing"),
        (
            entry(ticker=""),
            'trades.json:3: trade #2: ticker must be a non-empty string, but got ""',
        ),
        (
            entry(ticker=42),
            "trades.json:3: trade #2: ticker must be a non-empty string, but got 42",
        ),
        (entry(side=None), T + "side is missing: give YES or NO"),
        (entry(side="maybe"), T + 'side must be YES or NO, but got "maybe"'),
        (entry(side=True), T + "side must be YES or NO, but got true"),
        (
            entry(entry_price=None),
            T + "entry price is missing: give entry_price, entry_cents or entry_price_dollars",
        ),
        (
            entry(entry_cents=40),
            T + "entry price is given 2 times (entry_price, entry_cents): keep one",
        ),
        (
            entry(entry_price=0),
            T + "entry_price is in cents and must be more than 0 and less than 100, but got 0 "
            "(30 means 30¢; for dollars use entry_price_dollars)",
        ),
        (
            entry(entry_price=100),
            T + "entry_price is in cents and must be more than 0 and less than 100, but got 100 "
            "(30 means 30¢; for dollars use entry_price_dollars)",
        ),
        (
            entry(entry_price=None, entry_cents=-5),
            T + "entry_cents is in cents and must be more than 0 and less than 100, but got -5 "
            "(30 means 30¢; for dollars use entry_price_dollars)",
        ),
        (
            entry(entry_price="30"),
            T + 'entry_price must be a number of cents such as 30 or 30.5, but got "30"',
        ),
        (
            entry(entry_price=None, entry_price_dollars="30"),
            T + 'entry_price_dollars must be more than 0 and less than 1, but got "30" '
            '("0.30" means 30¢; for cents use entry_price)',
        ),
        (
            entry(entry_price=None, entry_price_dollars="$0.30"),
            T + 'entry_price_dollars must be more than 0 and less than 1, but got "$0.30" '
            '("0.30" means 30¢; for cents use entry_price)',
        ),
        (
            entry(entry_price=None, entry_price_dollars="0.1234567"),
            T + 'entry_price_dollars has more than 6 decimals, but got "0.1234567"',
        ),
        (entry(contracts=None), T + "size is missing: give contracts, quantity or position_size"),
        (
            entry(quantity=5, position_size=10),
            T + "size is given 3 times (contracts, quantity, position_size): keep one",
        ),
        (entry(contracts=0), T + "contracts must be a number more than 0, but got 0"),
        (entry(contracts="ten"), T + 'contracts must be a number more than 0, but got "ten"'),
        (
            entry(contracts=None, quantity=-1),
            T + "quantity must be a number more than 0, but got -1",
        ),
        (
            entry(contracts=None, position_size=[1]),
            T + "position_size must be a number more than 0, but got a list",
        ),
        (
            entry(contracts=None, position_size=0.001),
            T + "position_size 0.001 buys less than 0.01 contracts at 40¢",
        ),
        (
            entry(status="DONE"),
            T + 'status must be one of PENDING, OPEN, SETTLED, CLOSED, CANCELLED, but got "DONE"',
        ),
        (
            entry(status=1),
            T + "status must be one of PENDING, OPEN, SETTLED, CLOSED, CANCELLED, but got 1",
        ),
        (entry(id={"a": 1}), T + "id must be a string or a whole number, but got an object"),
        (entry(title=5), T + "title must be a string, but got 5"),
        (entry(id=True), T + "id must be a string or a whole number, but got true"),
        (
            entry(entry_price=30.12345),
            T + "entry_price has more than 4 decimals, but got 30.12345",
        ),
        (
            entry(contracts=None, position_size="lots"),
            T + 'position_size must be a number more than 0, but got "lots"',
        ),
        (entry(settles=20260211), T + "settles must be a string, but got 20260211"),
        (
            entry(side="x" * 60),
            T + 'side must be YES or NO, but got "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."',
        ),
        ("5", "trades.json:3: trade #2: entry must be an object, but got 5"),
        ('"KXCPI"', 'trades.json:3: trade #2: entry must be an object, but got "KXCPI"'),
        ("null", "trades.json:3: trade #2: entry must be an object, but got null"),
        ("[1, 2]", "trades.json:3: trade #2: entry must be an object, but got a list"),
    ],
)
def test_each_bad_entry_gives_one_located_message(
    fields: dict[str, Any] | str, message: str
) -> None:
    """A bad entry is reported as trades.json:LINE: trade #N (TICKER): what is wrong."""
    assert problems(bad(fields)) == [message]


SHAPE = 'expected a list of trades or an object with a "trades" list'
EXPECTING_NAME = "invalid JSON: expecting property name enclosed in double quotes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"trades.json:1: file is empty: {SHAPE}"),
        (" \r\n\t\n", f"trades.json:1: file is empty: {SHAPE}"),
        ("\ufeff", f"trades.json:1: file is empty: {SHAPE}"),
        ('\n\n"trades"', f'trades.json:3: {SHAPE}, but got "trades"'),
        ("\n42\n", f"trades.json:2: {SHAPE}, but got 42"),
        (
            '{"stats": {"trades": []}, "positions": []}',
            f'trades.json:1: {SHAPE}, but the object has keys: "stats", "positions"',
        ),
        ("{}", f"trades.json:1: {SHAPE}, but the object has keys: none"),
        (
            '{\n  "stats": {},\n  "trades":\n    {"a": 1}\n}',
            'trades.json:4: "trades" must be a list, but got an object',
        ),
        ('{"trades": null}', 'trades.json:1: "trades" must be a list, but got null'),
        ('[\n  {"ticker": "A",}\n]', f"trades.json:2:18: {EXPECTING_NAME}"),
        ("[\r\n  {\r\n  \r\n", f"trades.json:4:1: {EXPECTING_NAME}"),
        ('{"trades": [1, 2]\n"x"', "trades.json:2:1: invalid JSON: expecting ',' delimiter"),
        ("[1] [2]", "trades.json:1:5: invalid JSON: extra data"),
        ("[" * 100_000, "trades.json:1: invalid JSON: nesting is too deep"),
    ],
)
def test_file_level_problems_are_located(text: str, message: str) -> None:
    """Empty files, wrong shapes and JSON syntax errors are located (JSON ones with a column)."""
    assert problems(text) == [message]


def test_every_problem_in_the_file_is_reported_in_order() -> None:
    """All problems are reported, several per entry and across entries, not just the first."""
    text = (
        '{"stats": {}, "trades": [\n'
        '  {"ticker": "A", "side": "YES", "entry_price": 40, "contracts": 1},\n'
        '  {"ticker": "KXB", "side": "up", "entry_price": 140, "contracts": 1},\n'
        "\n"
        '  {"side": "NO", "entry_cents": 40, "quantity": 1, "status": "done"},\n'
        '  {"ticker": "C", "side": "NO", "entry_price": 40, "contracts": 1}\n'
        "]}\n"
    )
    with pytest.raises(PositionsError) as caught:
        parse_positions(text, filename="paper/trades.json")
    error = caught.value
    assert str(error) == (
        'paper/trades.json:3: trade #2 (KXB): side must be YES or NO, but got "up"\n'
        "paper/trades.json:3: trade #2 (KXB): entry_price is in cents and must be more than 0 "
        "and less than 100, but got 140 (30 means 30¢; for dollars use entry_price_dollars)\n"
        "paper/trades.json:5: trade #3: ticker is missing\n"
        "paper/trades.json:5: trade #3: status must be one of PENDING, OPEN, SETTLED, CLOSED, "
        'CANCELLED, but got "done"'
    )
    assert isinstance(error, ConfigError)
    assert (error.file, error.line, error.col) == ("paper/trades.json", 3, None)
    assert error.message == 'trade #2 (KXB): side must be YES or NO, but got "up"'
    assert all(isinstance(e, ConfigError) and e.col is None for e in error.errors)
    assert [e.line for e in error.errors] == [3, 3, 5, 5]


def test_position_size_with_a_bad_price_reports_only_the_price() -> None:
    """position_size cannot convert at a bad price; only the price problem is reported."""
    assert problems(bad(entry(entry_price=0, contracts=None, position_size=10))) == [
        T + "entry_price is in cents and must be more than 0 and less than 100, but got 0 "
        "(30 means 30¢; for dollars use entry_price_dollars)"
    ]


def test_non_finite_numbers_are_refused() -> None:
    """NaN and Infinity (which json accepts) are not prices or sizes."""
    text = bad('{"ticker": "T", "side": "NO", "entry_cents": NaN, "contracts": Infinity}')
    assert problems(text) == [
        "trades.json:3: trade #2 (T): entry_cents must be a number of cents such as 30 or 30.5, "
        "but got NaN",
        "trades.json:3: trade #2 (T): contracts must be a number more than 0, but got Infinity",
    ]


def test_positions_error_needs_at_least_one_error() -> None:
    """An empty PositionsError would hide the problem, so it cannot be built."""
    with pytest.raises(ValueError, match="at least one error"):
        PositionsError([])


# The scanner that locates entries


def located_lines(text: str) -> list[int]:
    """Lines of the single problem each bad entry (with side "?") reports, in order."""
    return [int(message.split(":")[1]) for message in problems(text)]


def bad_side(ticker: str = "T") -> str:
    return json.dumps({"ticker": ticker, "side": "?", "entry_price": 1, "contracts": 1})


REST = '"side": "?", "entry_price": 1, "contracts": 1}'  # the rest of a bad entry


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        # brackets, braces, commas and colons inside strings
        ('[\n{"ticker": "a]},{[:", ' + REST + ",\n" + bad_side() + "]", [2, 3]),
        # escaped quotes and an escaped backslash just before a closing quote
        ('[\n{"ticker": "a\\"]\\\\", "n": "\\\\", ' + REST + ",\n" + bad_side() + "]", [2, 3]),
        # an escaped newline inside a string is not a line
        ('[{"ticker": "a\\nb", ' + REST + ",\n" + bad_side() + "]", [1, 2]),
        # CRLF line endings count once
        ("[\r\n" + bad_side() + ",\r\n\r\n" + bad_side() + "\r\n]", [2, 4]),
        # entries on one line, nested values between them
        (
            "["
            + bad_side()
            + ', {"x": [[{}], {"y": [1, {"z": "]"}]}], "ticker": "T", '
            + REST
            + "]",
            [1, 1],
        ),
        # a "trades" key nested in stats before the real one
        ('{"stats": {"trades": [\n1, 2]},\n "trades": [\n\n' + bad_side() + "]}", [5]),
        # an escaped key that decodes to "trades"
        ('{"tr\\u0061des": [\n' + bad_side() + "]}", [2]),
        # a duplicate "trades" key: json keeps the last, and so does the scanner
        ('{"trades": [\n1],\n"trades": [\n\n' + bad_side() + "]}", [5]),
        # non-ASCII text and surrogate escapes before the entry do not shift lines
        ('{"note": "été ☀ \\ud83d\\ude00", "trades":\n[\n' + bad_side() + "]}", [3]),
        # numbers, literals and exponents between entries
        (
            '{"a": -1.5e+3, "b": true, "c": null, "trades": [\n'
            + bad_side()
            + ",\n"
            + bad_side()
            + "]}",
            [2, 3],
        ),
    ],
)
def test_scanner_locates_entries_in_tricky_json(text: str, lines: list[int]) -> None:
    """Each entry's line is where it starts, whatever the strings and nesting around it hold."""
    assert located_lines(text) == lines


def test_bom_is_ignored() -> None:
    """A UTF-8 byte order mark at the start of the text does not break parsing or lines."""
    text = "\ufeff[\n" + json.dumps(entry()) + ",\n" + bad_side() + "]"
    assert located_lines(text) == [3]
    assert parse_positions("\ufeff" + json.dumps([entry()])).positions[0].line == 1


# Files


def test_load_positions_reads_a_file(tmp_path: Path) -> None:
    """load_positions reads UTF-8 (with a BOM too) and uses the path as the name."""
    path = tmp_path / "trades.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"trades": [entry()]}).encode())
    portfolio = load_positions(path)
    assert portfolio.path == str(path)
    assert portfolio.tickers() == ["KXCPI-26JAN-T0.3"]
    assert load_positions(str(path)).positions == portfolio.positions


def test_load_positions_locates_errors_with_the_path(tmp_path: Path) -> None:
    """Errors from a file name the file as given."""
    path = tmp_path / "trades.json"
    path.write_text('[\n{"ticker": "X"}\n]', encoding="utf-8")
    with pytest.raises(PositionsError) as caught:
        load_positions(path)
    assert (
        caught.value.errors[0].located()
        == f"{path}:2: trade #1 (X): side is missing: give YES or NO"
    )


def test_missing_file_is_a_positions_error(tmp_path: Path) -> None:
    """A file that cannot be read is a located error, not an OSError."""
    path = tmp_path / "missing.json"
    with pytest.raises(PositionsError) as caught:
        load_positions(path)
    assert str(caught.value) == f"{path}: cannot read file: no such file or directory"


def test_non_utf8_file_is_a_located_error(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported with their line and offset."""
    path = tmp_path / "trades.json"
    path.write_bytes(b'[\n{"ticker": "caf\xe9"}]')
    with pytest.raises(PositionsError) as caught:
        load_positions(path)
    assert str(caught.value) == f"{path}:2: file is not UTF-8 text: byte 0xe9 at offset 17"


def test_example_file_loads() -> None:
    """trades.json.example at the repository root is valid and shows every variant."""
    portfolio = load_positions(EXAMPLE)
    positions = portfolio.positions
    assert len(positions) == 6
    assert {p.side for p in positions} == {"YES", "NO"}
    assert {p.status for p in positions} >= {"OPEN", "PENDING", "SETTLED", "CANCELLED"}
    assert portfolio.tickers() == [
        "KXCPI-26JAN-T0.3",
        "KXFEDDECISION-26DEC-H0",
        "KXHIGHNY-26NOV21-B53.5",
        "KXBTCD-26NOV2117-T98999.99",
    ]
    raw_keys = set().union(*(p.raw for p in positions))
    assert {"entry_price", "entry_cents", "entry_price_dollars"} <= raw_keys
    assert {"contracts", "quantity", "position_size"} <= raw_keys
    assert positions[1].contracts == Decimal("327.86")
    assert positions[1].entry_micros == 305_000


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_module_is_pure(module: Path) -> None:
    """positions.py and trades_file.py import no asyncio, logging or os: they are pure."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert not imported & {"asyncio", "logging", "os"}
