"""Property tests (Hypothesis): the parsers of untrusted input never crash, and the order book
stays consistent whatever frames arrive.

- The frame decoder (and the sans-I/O protocol around it) raises nothing but its own
  :class:`~watcher.errors.DecodeError` on any bytes, text or JSON-shaped input, including
  real Kalshi frames with fields removed, retyped or cut short.
- The rules loader and the positions loader return a model or their own located error, on
  any text and any YAML- or JSON-shaped document.
- The order books stay consistent under random snapshot, delta, REST resync and gap
  sequences: no level at zero or below, YES/NO reciprocity, both price conventions agree.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from watcher.domain.positions import Portfolio
from watcher.domain.trades_file import PositionsError, parse_positions
from watcher.errors import DecodeError, ProtocolError
from watcher.kalshi import messages as m
from watcher.kalshi.book import OrderBooks
from watcher.kalshi.fixed import DOLLAR
from watcher.kalshi.protocol import CommandRejected, DecodeFailure, KalshiProtocol, SequenceGapEvent
from watcher.rules import RulesConfig, RulesError, parse_rules

from .conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
FRAMES = [
    json.loads(path.read_text())
    for path in sorted((FIXTURES / "kalshi").glob("*.json"))
    if not path.name.startswith(("cmd_", "rest_"))
]
FRAME_TYPES = sorted({frame["type"] for frame in FRAMES})
MSG_KEYS = sorted(
    {key for frame in FRAMES if isinstance(frame.get("msg"), dict) for key in frame["msg"]}
)
# Derandomized: the same examples on every run, so CI never flakes on a new find.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

# JSON-shaped values, with the awkward numbers and strings Kalshi fields could carry.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["0.4500", "1e400", "-0.01", "NaN", "", "yes", "no", "2026-01-01T00:00:00Z"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def check_decoded(data: str | bytes) -> None:
    """decode_message returns a frame or raises DecodeError (keeping at most 200 raw bytes)."""
    try:
        frame = m.decode_message(data)
    except DecodeError as exc:
        assert len(exc.raw) <= 200
    else:
        assert isinstance(frame, msgspec.Struct)


# The frame decoder


@FUZZ
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_decoder_refuses_any_bytes_or_text_with_its_own_error_only(data):
    """Arbitrary bytes or text: a frame, or a DecodeError; never another exception."""
    check_decoded(data)


frame_like = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(FRAME_TYPES), st.text(max_size=10))},
    optional={
        "sid": st.one_of(st.integers(-5, 2**64), json_values),
        "seq": st.one_of(st.integers(-5, 2**64), json_values),
        "id": json_values,
        "msg": st.one_of(
            st.dictionaries(st.sampled_from(MSG_KEYS), json_values, max_size=8), json_values
        ),
    },
)


@FUZZ
@given(st.one_of(frame_like, json_values))
def test_decoder_refuses_any_json_shaped_frame_with_its_own_error_only(obj):
    """Any JSON document, and frames with known types and field names but random values:
    a frame, or a DecodeError."""
    check_decoded(json.dumps(obj))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A published Kalshi frame with one field dropped or retyped, or its bytes cut/corrupted."""
    frame = json.loads(json.dumps(draw(st.sampled_from(FRAMES))))
    target = frame["msg"] if isinstance(frame.get("msg"), dict) and draw(st.booleans()) else frame
    how = draw(st.sampled_from(["drop", "retype", "cut", "corrupt"]))
    if how in ("drop", "retype") and target:
        key = draw(st.sampled_from(sorted(target)))
        if how == "drop":
            del target[key]
        else:
            target[key] = draw(json_values)
    data = json.dumps(frame).encode()
    if how == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if how == "corrupt":  # any bytes: the client hands frames over undecoded
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + draw(st.binary(min_size=1, max_size=3)) + data[at + 1 :]
    return data


@FUZZ
@given(mutated_frames())
def test_decoder_refuses_damaged_real_frames_with_its_own_error_only(data):
    """Real frames with a field missing or of the wrong type, cut short or corrupted."""
    check_decoded(data)


@settings(FUZZ, max_examples=60)
@given(st.lists(st.one_of(mutated_frames(), frame_like.map(json.dumps)), max_size=12))
def test_protocol_survives_any_frame_sequence(frames):
    """The sans-I/O protocol turns any sequence of frames into events without raising:
    typed frames, decode failures, gaps and rejections; every command it sends decodes."""
    protocol = KalshiProtocol()
    protocol.subscribe(["ticker", "trade", "orderbook_delta"], ["KXA", "KXB"])
    protocol.connection_made()
    known = (msgspec.Struct, DecodeFailure, SequenceGapEvent, CommandRejected)
    for data in frames:
        protocol.receive_text(data)
        assert all(isinstance(event, known) for event in protocol.events_received())
        for command in protocol.data_to_send():
            m.decode_command(command)


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "error", "msg": {"\x80ode": 7, "msg": "x"}}',
        b'{"type": "ticker", "sid": 1, "msg": {"market_ticker": "A", "x\xff": 1}}',
        b'{"type": "ticker", "msg": "\xff\xfe"}',
        b'{"id": 1, "type": "\x80rror", "msg": {}}',
        b'{"type": "tick\xffer", "sid": 1}',
    ],
)
def test_decoder_refuses_invalid_utf8_inside_a_well_formed_frame(data):
    """Invalid UTF-8 anywhere in a well-formed frame (a skipped key, a value, the type) is a
    DecodeError: the client hands frames to the decoder as bytes, unchecked by websockets."""
    with pytest.raises(DecodeError):
        m.decode_message(data)


# The rules and positions loaders


RULE_KEYS = [
    "name", "type", "markets", "notify", "cooldown", "rearm_cents", "severity", "price",
    "message", "enabled", "expires", "max_cents", "min_cents", "cents", "direction",
    "below_dollars", "above_dollars", "min_contracts", "within", "before", "after", "side",
]  # fmt: skip
RULE_WORDS = st.sampled_from(
    [
        "spread", "move_from_entry", "pnl", "price_cross", "velocity", "trade_size",
        "closing_soon", "settled", "stale", "5m", "0", "-3", "1.5", "23:00", "up", "down",
        "critical", "last", "mid", "KXCPI-*", "${HOOK}", "${NOPE}", "${A:-x}", "json://h/x",
        "{market} {price}", "{market.x}", "2026-01-01", "UTC", "Mars/Olympus",
    ]
)  # fmt: skip
yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), RULE_WORDS, st.text(max_size=8)
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.one_of(st.sampled_from(RULE_KEYS), st.text(max_size=6)), inner, max_size=4
        )
    ),
    max_leaves=10,
)
rules_docs = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.just(1), yaml_scalars),
        "timezone": yaml_scalars,
        "notify": st.dictionaries(st.sampled_from(["a", "b", "hook"]), yaml_values, max_size=3),
        "defaults": st.dictionaries(st.sampled_from(RULE_KEYS), yaml_values, max_size=4),
        "quiet_hours": st.dictionaries(
            st.sampled_from(["start", "end", "except", "x"]), yaml_scalars, max_size=3
        ),
        "rules": st.lists(
            st.dictionaries(st.sampled_from(RULE_KEYS), yaml_values, max_size=6), max_size=4
        ),
    },
)


def check_rules(text: str) -> None:
    """parse_rules gives a RulesConfig, or a RulesError whose every error has a line."""
    try:
        config = parse_rules(text, env={"HOOK": "json://127.0.0.1:9/", "EMPTY": ""})
    except RulesError as error:
        assert error.errors and all(e.line is not None and e.line >= 1 for e in error.errors)
    else:
        assert isinstance(config, RulesConfig)


@FUZZ
@given(st.one_of(rules_docs, yaml_values), st.booleans())
def test_rules_loader_gives_a_model_or_located_errors_for_any_yaml_document(doc, flow):
    """Any YAML document, rules-shaped or not, in block or flow style."""
    check_rules(yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True))


SHIPPED_RULES = (ROOT / "rules" / "rules.yaml").read_text()


@FUZZ
@given(st.data())
def test_rules_loader_gives_a_model_or_located_errors_for_damaged_shipped_rules(data):
    """The shipped rules.yaml with lines dropped, duplicated or re-indented, or cut short
    (a half-saved file)."""
    lines = SHIPPED_RULES.splitlines()
    how = data.draw(st.sampled_from(["drop", "duplicate", "indent", "cut"]))
    at = data.draw(st.integers(0, len(lines) - 1))
    if how == "drop":
        del lines[at]
    elif how == "duplicate":
        lines.insert(at, lines[at])
    elif how == "indent":
        lines[at] = " " * data.draw(st.integers(1, 3)) + lines[at]
    text = "\n".join(lines) + "\n"
    if how == "cut":
        text = text[: data.draw(st.integers(0, len(text)))]
    check_rules(text)


TRADE_KEYS = [
    "ticker", "side", "entry_price", "entry_cents", "entry_price_dollars", "contracts",
    "quantity", "position_size", "status", "id", "title", "settles", "expiration",
]  # fmt: skip
trade_values = st.one_of(
    json_values,
    st.sampled_from(["YES", "no", "KXA-1", "0.45", "45", "OPEN", "SETTLED", "-1", "1e9"]),
)
trades_docs = st.one_of(
    st.lists(st.dictionaries(st.sampled_from(TRADE_KEYS), trade_values, max_size=6), max_size=4),
    st.fixed_dictionaries(
        {
            "trades": st.lists(
                st.dictionaries(st.sampled_from(TRADE_KEYS), trade_values), max_size=4
            )
        },
        optional={"stats": json_values},
    ),
    json_values,
)


@FUZZ
@given(st.one_of(trades_docs.map(json.dumps), st.text(max_size=200)))
def test_positions_loader_gives_a_portfolio_or_located_errors_for_any_input(text):
    """Any text, and any JSON document shaped like trades.json or not."""
    try:
        portfolio = parse_positions(text)
    except PositionsError as error:
        assert error.errors and all(e.line is not None and e.line >= 1 for e in error.errors)
    else:
        assert isinstance(portfolio, Portfolio)


# The order book


MARKETS = ("KXA", "KXB")
prices = st.integers(1, 999)  # tenths of a cent
counts = st.integers(0, 5_000)  # hundredths of a contract
levels = st.lists(st.tuples(prices, counts), max_size=6)


def dollars(tenths_of_cent: int) -> Decimal:
    return Decimal(tenths_of_cent) / 1000


def contracts(hundredths: int) -> Decimal:
    return Decimal(hundredths) / 100


class BookMachine(RuleBasedStateMachine):
    """Two registries fed the same frames, one with NO prices in NO-leg terms and one with
    them in YES-leg terms (``use_yes_price``), checked against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.no_leg = OrderBooks(use_yes_price=False)
        self.yes_leg = OrderBooks(use_yes_price=True)
        # market -> {"yes"/"no": {price micros: count micros}}, or None while out of sync
        self.model: dict[str, dict[str, dict[int, int]] | None] = {}

    @rule(market=st.sampled_from(MARKETS), yes=levels, no=levels)
    def snapshot(self, market: str, yes: list[tuple[int, int]], no: list[tuple[int, int]]) -> None:
        for books, flip in ((self.no_leg, False), (self.yes_leg, True)):
            msg = m.OrderbookSnapshotMsg(
                market_ticker=market,
                yes_dollars_fp=[(dollars(p), contracts(c)) for p, c in yes],
                no_dollars_fp=[(dollars(1000 - p if flip else p), contracts(c)) for p, c in no],
            )
            assert books.apply(m.OrderbookSnapshot(sid=1, seq=1, msg=msg))
        self.model[market] = {"yes": _summed(yes), "no": _summed(no)}

    @rule(
        market=st.sampled_from(MARKETS),
        side=st.sampled_from(["yes", "no"]),
        price=prices,
        change=st.integers(-3_000, 3_000),
    )
    def delta(self, market: str, side: str, price: int, change: int) -> None:
        model = self.model.get(market)
        outcomes: list[bool | None] = []
        for books, flip in ((self.no_leg, False), (self.yes_leg, True)):
            leg = 1000 - price if flip and side == "no" else price
            msg = m.OrderbookDeltaMsg(
                market_ticker=market,
                price_dollars=dollars(leg),
                delta_fp=contracts(change),
                side=side,  # type: ignore[arg-type]
            )
            try:
                outcomes.append(books.apply(m.OrderbookDelta(sid=1, seq=2, msg=msg)))
            except ProtocolError:
                outcomes.append(None)
        if model is None:
            assert outcomes == [False, False]  # no snapshot yet, or out of sync: ignored
            return
        key = price * 1000
        after = model[side].get(key, 0) + change * 10_000
        if after < 0:
            assert outcomes == [None, None]  # refused; both books now wait for a snapshot
            self.model[market] = None
            return
        assert outcomes == [True, True]
        model[side][key] = after
        model[side] = {p: c for p, c in model[side].items() if c}

    @rule(market=st.sampled_from(MARKETS))
    def gap(self, market: str) -> None:
        self.no_leg.invalidate([market])
        self.yes_leg.invalidate([market])
        if market in self.model:
            self.model[market] = None

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def rest_resync(self, data: st.DataObject) -> None:
        market = data.draw(st.sampled_from(sorted(self.model)))
        yes, no = data.draw(levels), data.draw(levels)
        rest = m.RestOrderbook(
            yes_dollars=[(dollars(p), contracts(c)) for p, c in yes],
            no_dollars=[(dollars(p), contracts(c)) for p, c in no],
        )
        self.no_leg.apply_rest(market, rest)
        self.yes_leg.apply_rest(market, rest)  # REST always uses NO-leg prices
        self.model[market] = {"yes": _summed(yes), "no": _summed(no)}

    @invariant()
    def books_match_the_model_and_each_other(self) -> None:
        for market, model in self.model.items():
            book, mirror = self.no_leg.get(market), self.yes_leg.get(market)
            assert book is not None and mirror is not None
            assert book == mirror
            assert book.is_valid is (model is not None)
            if model is None:
                assert not book.yes_bids and not book.no_bids
                continue
            assert dict(book.yes_bids) == model["yes"] and dict(book.no_bids) == model["no"]
            assert all(count > 0 for count in (*book.yes_bids.values(), *book.no_bids.values()))
            if book.best_no_bid is not None:
                assert book.best_yes_ask == DOLLAR - book.best_no_bid
            else:
                assert book.best_yes_ask is None
            if book.best_yes_bid is not None:
                assert book.best_no_ask == DOLLAR - book.best_yes_bid
            else:
                assert book.best_no_ask is None


def _summed(levels: list[tuple[int, int]]) -> dict[int, int]:
    """Snapshot levels as the book keeps them: duplicate prices added, empty ones dropped."""
    total: dict[int, int] = {}
    for price, count in levels:
        total[price * 1000] = total.get(price * 1000, 0) + count * 10_000
    return {p: c for p, c in total.items() if c}


def test_order_books_stay_consistent_under_random_frame_sequences():
    """Snapshots, deltas (some driving a level below zero), gaps and REST resyncs in any
    order: levels stay positive, asks are $1 minus the opposite best bid, an out-of-sync
    book ignores deltas until resynced, and both NO price conventions give the same book."""
    run_state_machine_as_test(
        BookMachine,
        settings=settings(max_examples=150, stateful_step_count=30, deadline=None, database=None),
    )


@pytest.mark.parametrize("frame", FRAMES, ids=[f["type"] for f in FRAMES])
def test_every_published_frame_still_decodes(frame: dict[str, Any]) -> None:
    """The fuzz corpus is real: each published frame decodes as a typed frame."""
    assert not isinstance(m.decode_message(json.dumps(frame)), m.UnknownMessage)
