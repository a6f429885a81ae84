"""Paper positions from ``trades.json``; where each problem is (design.md §4).

``trades.json`` is the user's own file. Both shapes that real users have load::

    {"trades": [{"ticker": "KXCPI-26JAN-T0.3", "side": "no", "entry_price": 38,
                 "contracts": 25, "status": "OPEN", "notes": "kept as is"}],
     "stats": {"wins": 3}}

or the bare list ``[{...}, ...]``. Numbers are read as :class:`~decimal.Decimal` (never binary
floats); prices become integer micro-dollars (see :mod:`watcher.kalshi.fixed`). The entry price
of a NO position is a NO price, and every price shown for it is a NO price:
NO bid = 1 − YES ask, NO ask = 1 − YES bid, NO last = 1 − YES last.

Every problem in the file is reported, each located as
``trades.json:LINE: trade #N (TICKER): what is wrong``, in one :class:`PositionsError`.

Pure: no asyncio, no logging, no environment; only :func:`load_positions` reads a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from watcher.domain.positions import (
    DEFAULT_STATUS,
    SIDES,
    STATUS_LIST,
    STATUSES,
    Portfolio,
    Position,
    Side,
    exact_decimal,
)
from watcher.errors import ConfigError
from watcher.kalshi.fixed import MICROS_PER_UNIT, cents_to_micros, format_cents, to_micros

__all__ = ["PositionsError", "load_positions", "parse_positions"]

_PRICE_FIELDS = ("entry_price", "entry_cents", "entry_price_dollars")
_SIZE_FIELDS = ("contracts", "quantity", "position_size")
_SHAPE = 'expected a list of trades or an object with a "trades" list'
_SEEN_MAX = 40


class PositionsError(ConfigError):
    """``trades.json`` is invalid.

    ``errors`` holds every problem in file order; ``str()`` shows them all, one per line.
    ``message``, ``file``, ``line`` and ``col`` are those of the first problem.
    """

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        if not self.errors:
            raise ValueError("PositionsError needs at least one error, but got none")
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, col=first.col)

    def located(self) -> str:
        return "\n".join(error.located() for error in self.errors)


def load_positions(path: str | Path) -> Portfolio:
    """Read and parse a ``trades.json`` file (UTF-8, with or without a BOM).

    Errors are located with ``str(path)`` as the file name.

    Raises:
        PositionsError: the file cannot be read, is not UTF-8, or is invalid.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        reason = reason[:1].lower() + reason[1:]
        raise PositionsError([ConfigError(f"cannot read file: {reason}", file=name)]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"file is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise PositionsError([ConfigError(message, file=name, line=line)]) from exc
    return parse_positions(text, filename=name)


def parse_positions(text: str, *, filename: str = "trades.json") -> Portfolio:
    """Parse the text of a ``trades.json``.

    Args:
        text: the file's text; a leading BOM is ignored.
        filename: the name errors are located with.

    Returns:
        every entry as a :class:`Position`, watched or not, in file order.

    Raises:
        PositionsError: with every problem found, each a located :class:`ConfigError`.
    """
    text = text.removeprefix("\ufeff")
    data = _decode(text, filename)
    entries, starts = _locate_entries(text, data, filename)
    positions: list[Position] = []
    errors: list[ConfigError] = []
    for index, (entry, line) in enumerate(zip(entries, _lines(text, starts), strict=True), 1):
        result = _parse_entry(entry, index=index, line=line)
        if isinstance(result, Position):
            positions.append(result)
        else:
            errors.extend(ConfigError(problem, file=filename, line=line) for problem in result)
    if errors:
        raise PositionsError(errors)
    return Portfolio(tuple(positions), path=filename)


def _decode(text: str, filename: str) -> Any:
    if not text.strip(" \t\r\n"):
        raise _file_error(filename, 1, f"file is empty: {_SHAPE}")
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg[:1].lower()}{exc.msg[1:]}"
        error = ConfigError(message, file=filename, line=exc.lineno, col=exc.colno)
        raise PositionsError([error]) from exc
    except RecursionError as exc:
        raise _file_error(filename, 1, "invalid JSON: nesting is too deep") from exc


def _locate_entries(text: str, data: Any, filename: str) -> tuple[list[Any], list[int]]:
    """The trades list and the offset where each of its elements starts."""
    tokens = list(_TOKEN.finditer(text))
    if isinstance(data, list):
        return data, [tokens[child].start() for child in _children(tokens, 0)]
    line = _line_at(text, tokens[0].start())
    if not isinstance(data, dict):
        raise _file_error(filename, line, f"{_SHAPE}, but got {_describe(data)}")
    if "trades" not in data:
        keys = ", ".join(json.dumps(key) for key in list(data)[:5]) or "none"
        raise _file_error(filename, line, f"{_SHAPE}, but the object has keys: {keys}")
    # json.loads keeps the last of duplicate keys; so does this. A key is followed by ":".
    value = [key + 2 for key in _children(tokens, 0) if json.loads(tokens[key][0]) == "trades"][-1]
    trades = data["trades"]
    if not isinstance(trades, list):
        message = f'"trades" must be a list, but got {_describe(trades)}'
        raise _file_error(filename, _line_at(text, tokens[value].start()), message)
    return trades, [tokens[child].start() for child in _children(tokens, value)]


def _file_error(filename: str, line: int, message: str) -> PositionsError:
    return PositionsError([ConfigError(message, file=filename, line=line)])


# The json module does not tell where values start, so a tokenizer for text that json.loads
# has accepted finds them. Strings are single tokens, so brackets, commas and escaped quotes
# inside them do not count; whitespace (including CR of CRLF) falls between tokens.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]|[^ \t\n\r\[\]{},:"]+', re.DOTALL)
_OPENERS = ("[", "{")
_CLOSERS = ("]", "}")


def _children(tokens: list[re.Match[str]], opener: int) -> list[int]:
    """Token indices where each element (or key) of the container at ``tokens[opener]`` starts."""
    children: list[int] = []
    depth, pending = 1, True
    for index in range(opener + 1, len(tokens)):
        token = tokens[index][0]
        if pending and token not in _CLOSERS:
            children.append(index)
        pending = depth == 1 and token == ","
        if token in _OPENERS:
            depth += 1
        elif token in _CLOSERS:
            depth -= 1
            if depth == 0:
                break
    return children


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _lines(text: str, offsets: Iterable[int]) -> Iterator[int]:
    """1-based line numbers of increasing offsets (CRLF counts once)."""
    line, last = 1, 0
    for offset in offsets:
        line += text.count("\n", last, offset)
        last = offset
        yield line


# One entry


def _parse_entry(entry: Any, *, index: int, line: int) -> Position | list[str]:
    """A Position, or the located-less messages of every problem in the entry."""
    if not isinstance(entry, dict):
        return [f"trade #{index}: entry must be an object, but got {_describe(entry)}"]
    problems: list[str] = []
    ticker = _ticker(entry, problems)
    side = _side(entry, problems)
    entry_micros = _entry_micros(entry, problems)
    contracts = _contracts(entry, entry_micros, problems)
    status = _status(entry, problems)
    texts = {key: _text(entry, key, problems) for key in ("id", "title", "settles", "expiration")}
    if ticker is None or side is None or entry_micros is None or contracts is None or problems:
        label = f"trade #{index} ({ticker})" if ticker else f"trade #{index}"
        return [f"{label}: {problem}" for problem in problems]
    return Position(
        index=index,
        line=line,
        ticker=ticker,
        side=side,
        entry_micros=entry_micros,
        contracts=contracts,
        status=status,
        id=texts["id"],
        title=texts["title"],
        settles=texts["settles"] or texts["expiration"],
        raw=MappingProxyType(entry),
    )


def _ticker(entry: dict[str, Any], problems: list[str]) -> str | None:
    value = entry.get("ticker")
    if value is None:
        problems.append("ticker is missing")
    elif not isinstance(value, str) or not value.strip():
        problems.append(f"ticker must be a non-empty string, but got {_describe(value)}")
    else:
        return value.strip().upper()
    return None


def _side(entry: dict[str, Any], problems: list[str]) -> Side | None:
    value = entry.get("side")
    if value is None:
        problems.append("side is missing: give YES or NO")
        return None
    if isinstance(value, str):
        for side in SIDES:
            if value.strip().upper() == side:
                return side
    problems.append(f"side must be YES or NO, but got {_describe(value)}")
    return None


def _status(entry: dict[str, Any], problems: list[str]) -> str:
    value = entry.get("status")
    if value is None:
        return DEFAULT_STATUS
    if isinstance(value, str) and value.strip().upper() in STATUSES:
        return value.strip().upper()
    problems.append(f"status must be one of {STATUS_LIST}, but got {_describe(value)}")
    return DEFAULT_STATUS


def _text(entry: dict[str, Any], key: str, problems: list[str]) -> str | None:
    value = entry.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if key == "id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    kind = "a string or a whole number" if key == "id" else "a string"
    problems.append(f"{key} must be {kind}, but got {_describe(value)}")
    return None


def _only_one(entry: dict[str, Any], keys: tuple[str, ...], what: str, problems: list[str]) -> str:
    """The one key of ``keys`` the entry gives (null counts as absent), or "" after a problem."""
    given = [key for key in keys if entry.get(key) is not None]
    if len(given) > 1:
        problems.append(f"{what} is given {len(given)} times ({', '.join(given)}): keep one")
        return ""
    if not given:
        problems.append(f"{what} is missing: give {', '.join(keys[:-1])} or {keys[-1]}")
        return ""
    return given[0]


def _entry_micros(entry: dict[str, Any], problems: list[str]) -> int | None:
    key = _only_one(entry, _PRICE_FIELDS, "entry price", problems)
    if not key:
        return None
    value = entry[key]
    if key == "entry_price_dollars":
        return _dollars_price(value, problems)
    cents = _number(value)
    if cents is None:
        problems.append(
            f"{key} must be a number of cents such as 30 or 30.5, but got {_describe(value)}"
        )
        return None
    if not 0 < cents < 100:
        problems.append(
            f"{key} is in cents and must be more than 0 and less than 100, but got "
            f"{_describe(value)} (30 means 30¢; for dollars use entry_price_dollars)"
        )
        return None
    try:
        return cents_to_micros(cents)
    except ValueError:
        problems.append(f"{key} has more than 4 decimals, but got {_describe(value)}")
        return None


def _dollars_price(value: Any, problems: list[str]) -> int | None:
    dollars = _number(value, text=True)
    if dollars is None or not 0 < dollars < 1:
        problems.append(
            "entry_price_dollars must be more than 0 and less than 1, but got "
            f'{_describe(value)} ("0.30" means 30¢; for cents use entry_price)'
        )
        return None
    try:
        return to_micros(dollars)
    except ValueError:
        problems.append(f"entry_price_dollars has more than 6 decimals, but got {_describe(value)}")
        return None


def _contracts(
    entry: dict[str, Any], entry_micros: int | None, problems: list[str]
) -> Decimal | None:
    key = _only_one(entry, _SIZE_FIELDS, "size", problems)
    if not key:
        return None
    value = entry[key]
    amount = _number(value, text=key == "position_size")
    if amount is None or amount <= 0:
        problems.append(f"{key} must be a number more than 0, but got {_describe(value)}")
        return None
    if key != "position_size":
        return amount
    if entry_micros is None:
        return None  # the entry price problem is already reported
    numerator, denominator = amount.as_integer_ratio()
    hundredths = numerator * 100 * MICROS_PER_UNIT // (denominator * entry_micros)
    if hundredths == 0:
        problems.append(
            f"position_size {_describe(value)} buys less than 0.01 contracts at "
            f"{format_cents(entry_micros)}"
        )
        return None
    return exact_decimal(hundredths, -2)


def _number(value: Any, *, text: bool = False) -> Decimal | None:
    """A finite JSON number (or, with ``text``, a decimal string) as Decimal; else None."""
    if isinstance(value, str) and text:
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    return None


def _describe(value: Any) -> str:
    """A JSON value as the user wrote it, shortened, for error messages."""
    if isinstance(value, str):
        seen = json.dumps(value, ensure_ascii=False)
        return seen if len(seen) <= _SEEN_MAX else f'{seen[: _SEEN_MAX - 4]}..."'
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | Decimal):
        return str(value)
    return "a list" if isinstance(value, list) else "an object"
