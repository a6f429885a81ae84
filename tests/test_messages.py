"""Decoding Kalshi's published frames, and refusing bad ones clearly."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.errors import DecodeError
from watcher.kalshi import messages as m
from watcher.kalshi.fixed import (
    cents_to_micros,
    format_cents,
    format_dollars,
    parse_micros,
    to_micros,
)

from .conftest import FIXTURES, KALSHI_MESSAGES

FRAME_FILES = sorted(
    p for p in (FIXTURES / "kalshi").rglob("*.json") if not p.name.startswith(("cmd_", "rest_"))
)
COMMAND_FILES = sorted((FIXTURES / "kalshi").rglob("cmd_*.json"))


@pytest.mark.parametrize("path", FRAME_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_published_frame_decodes(path: Path) -> None:
    """Every example frame Kalshi published (current, 2026-08 and legacy) decodes without error."""
    message = m.decode_message(path.read_bytes())
    if "ticker_v2" in path.name:
        assert isinstance(message, m.UnknownMessage)
        assert message.type == "ticker_v2"
    else:
        assert not isinstance(message, m.UnknownMessage)


def test_the_shared_folder_holds_the_same_frames_as_the_fixtures() -> None:
    """The fixture copy stays in step with ../shared/kalshi-messages when it is present."""
    if not KALSHI_MESSAGES.is_dir():
        pytest.skip("../shared is not beside the repository")
    for path in KALSHI_MESSAGES.rglob("*.json"):
        copy = FIXTURES / "kalshi" / path.relative_to(KALSHI_MESSAGES)
        assert copy.read_bytes() == path.read_bytes(), copy


@pytest.mark.parametrize("path", COMMAND_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_published_command_decodes(path: Path) -> None:
    """Kalshi's example commands decode as commands (the simulator relies on it)."""
    assert isinstance(
        m.decode_command(path.read_bytes()),
        m.Subscribe | m.Unsubscribe | m.UpdateSubscription | m.ListSubscriptions,
    )


def test_ticker_prices_are_exact_decimals() -> None:
    """Dollar strings become Decimals exactly, never floats."""
    frame = m.decode_message((FIXTURES / "kalshi" / "ticker.json").read_bytes())
    assert isinstance(frame, m.Ticker)
    assert frame.msg.yes_bid_dollars == Decimal("0.4500")
    assert frame.msg.yes_ask_dollars == Decimal("0.5300")
    assert frame.seq is None
    assert frame.sending_ts_ms == 1669149841123


def test_trade_frame_has_seq_and_both_prices() -> None:
    """A current trade frame keeps seq, YES and NO prices and the count."""
    frame = m.decode_message((FIXTURES / "kalshi" / "trade.json").read_bytes())
    assert isinstance(frame, m.Trade)
    assert (frame.seq, frame.msg.yes_price_dollars, frame.msg.count_fp) == (
        2,
        Decimal("0.3600"),
        Decimal("136.00"),
    )


def test_list_subscriptions_answer_is_an_ok_with_a_list() -> None:
    """`list_subscriptions` answers with type ok and a list of {channel, sid}."""
    frame = m.decode_message(
        (FIXTURES / "kalshi" / "list_subscriptions_response.json").read_bytes()
    )
    assert isinstance(frame, m.Ok)
    assert isinstance(frame.msg, list)
    assert [(s.channel, s.sid) for s in frame.msg] == [
        ("orderbook_delta", 1),
        ("ticker", 2),
        ("fill", 3),
    ]


def test_unknown_fields_are_ignored() -> None:
    """A field Kalshi adds tomorrow does not break decoding."""
    frame = m.decode_message(
        b'{"type":"ticker","sid":1,"msg":{"market_ticker":"A","price_dollars":"0.5",'
        b'"yes_bid_dollars":"0.49","yes_ask_dollars":"0.51","brand_new":{"x":1}}}'
    )
    assert isinstance(frame, m.Ticker)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{not json", "frame is not valid JSON"),
        (b"[1,2]", "frame is not a JSON object but list"),
        (b'{"sid":1}', "frame has no string 'type' field"),
        (b'{"type":"ticker","sid":1,"msg":{"market_ticker":"A"}}', "invalid ticker frame"),
        (
            b'{"type":"ticker","sid":1,"msg":{"market_ticker":"A","price_dollars":"abc",'
            b'"yes_bid_dollars":"0.4","yes_ask_dollars":"0.5"}}',
            "invalid ticker frame",
        ),
        (b"\xff\xfe{}", "frame is not valid JSON"),
        (b"", "frame is not valid JSON"),
    ],
)
def test_malformed_frames_raise_a_clear_decode_error(data: bytes, expected: str) -> None:
    """Malformed input raises only DecodeError, with a message that says what is wrong."""
    with pytest.raises(DecodeError) as info:
        m.decode_message(data)
    assert expected in str(info.value)
    assert info.value.raw == data[:200]


def test_unknown_type_keeps_the_raw_object() -> None:
    """An unknown type is handed on with its sid, seq and raw JSON, not raised."""
    frame = m.decode_message(b'{"type":"multivariate_lookup","sid":4,"seq":9,"msg":{}}')
    assert frame == m.UnknownMessage(
        type="multivariate_lookup",
        sid=4,
        seq=9,
        raw={"type": "multivariate_lookup", "sid": 4, "seq": 9, "msg": {}},
    )


def test_commands_encode_without_empty_fields() -> None:
    """Commands encode compactly and keep use_yes_price=false when pinned."""
    cmd = m.Subscribe(
        id=1,
        params=m.SubscribeParams(
            channels=["orderbook_delta"], market_tickers=["A"], use_yes_price=False
        ),
    )
    assert m.encode(cmd) == (
        b'{"cmd":"subscribe","id":1,"params":{"channels":["orderbook_delta"],'
        b'"market_tickers":["A"],"use_yes_price":false}}'
    )


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0.48", 480_000),
        ("0.4800", 480_000),
        ("0.480", 480_000),
        ("0.4550", 455_000),
        ("0.010000", 10_000),
        ("1", 1_000_000),
        ("136.00", 136_000_000),
        ("-54.00", -54_000_000),
        ("0.000001", 1),
    ],
)
def test_dollar_strings_with_2_to_6_decimals_parse_exactly(text: str, micros: int) -> None:
    """Fixed-point strings of any width parse to exact micro-units."""
    assert parse_micros(text) == micros


@pytest.mark.parametrize("text", ["0.0000001", "abc", "NaN", "Infinity", ""])
def test_inexact_or_non_numeric_strings_are_refused(text: str) -> None:
    """More than 6 decimals or non-numbers raise ValueError instead of rounding."""
    with pytest.raises(ValueError):
        parse_micros(text)


def test_converted_values_are_remembered_and_bad_ones_are_still_refused() -> None:
    """The conversion cache gives the same answer for equal values of any width, never keeps
    a refused value, and stays bounded."""
    from watcher.kalshi import fixed

    assert to_micros(Decimal("0.45")) == to_micros(Decimal("0.4500")) == 450_000
    for bad in ("NaN", "sNaN", "Infinity", "0.0000001"):
        for _ in range(2):  # the second time is not answered from the cache either
            with pytest.raises(ValueError):
                to_micros(Decimal(bad))
    for n in range(fixed._CONVERTED_MAX + 10):
        assert to_micros(Decimal(n).scaleb(-6)) == n
    assert len(fixed._CONVERTED) <= fixed._CONVERTED_MAX


def test_cents_and_dollar_formatting() -> None:
    """People see cents and dollars; fractional cents are kept."""
    assert cents_to_micros(30.5) == 305_000
    assert cents_to_micros("45") == 450_000
    assert format_cents(455_000) == "45.5¢"
    assert format_cents(450_000) == "45¢"
    assert format_dollars(-1_500_000) == "-$1.50"
    assert format_dollars(12_345) == "$0.012345"


def test_sans_io_modules_do_not_import_asyncio() -> None:
    """messages, protocol, book and backoff stay sans-I/O (style.md habit 1)."""
    code = (
        "import sys\n"
        "import watcher.kalshi.messages, watcher.kalshi.protocol, watcher.kalshi.book,"
        " watcher.kalshi.backoff, watcher.kalshi.fixed\n"
        "bad = [n for n in ('asyncio', 'websockets') if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
