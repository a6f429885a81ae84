"""Paper positions from ``trades.json``; side-aware prices and P&L (design.md §4).

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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from watcher.errors import ConfigError
from watcher.kalshi.fixed import DOLLAR, MICROS_PER_UNIT, cents_to_micros, format_cents, to_micros

__all__ = [
    "DEFAULT_STATUS",
    "SIDES",
    "STATUSES",
    "UNWATCHED",
    "WATCHED_STATUSES",
    "Portfolio",
    "Position",
    "PositionsError",
    "PriceBasis",
    "Side",
    "SideQuote",
    "load_positions",
    "mark_price",
    "move_micros",
    "parse_positions",
    "pnl_dollars",
    "side_quote",
]

Side: TypeAlias = Literal["YES", "NO"]
PriceBasis: TypeAlias = Literal["last", "bid", "mid"]

SIDES: Final[tuple[Side, ...]] = ("YES", "NO")
#: Positions in these states are watched (subscribed to, evaluated by rules).
WATCHED_STATUSES: Final = frozenset({"PENDING", "OPEN"})
#: Positions in these states are kept but not watched.
UNWATCHED: Final = frozenset({"SETTLED", "CLOSED", "CANCELLED"})
STATUSES: Final = WATCHED_STATUSES | UNWATCHED
#: The status of an entry that has none.
DEFAULT_STATUS: Final = "PENDING"

_STATUS_LIST = "PENDING, OPEN, SETTLED, CLOSED, CANCELLED"
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


@dataclass(frozen=True, slots=True)
class Position:
    """One paper position, one entry of ``trades.json``.

    Attributes:
        index: 1-based trade number in the file (``trade #N`` in messages).
        line: line of ``trades.json`` where the entry starts.
        ticker: Kalshi market ticker, stripped and upper-cased.
        side: ``"YES"`` or ``"NO"``.
        entry_micros: entry price of this side in micro-dollars (a NO position's is a NO price).
        contracts: exact number of contracts; from ``contracts``/``quantity``, or
            ``position_size`` dollars divided by the entry price, rounded down to 0.01.
        status: upper-case status; ``PENDING`` when the entry has none.
        id: the entry's ``id`` (a number becomes its text), if any.
        title: the entry's ``title``, if any.
        settles: the entry's ``settles`` (or else ``expiration``) text, if any.
        raw: the entry as read, with every unknown field (numbers are int or Decimal), read-only.
    """

    index: int
    line: int
    ticker: str
    side: Side
    entry_micros: int
    contracts: Decimal
    status: str = DEFAULT_STATUS
    id: str | None = None
    title: str | None = None
    settles: str | None = None
    raw: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be YES or NO, but got {self.side!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {_STATUS_LIST}, but got {self.status!r}")

    @property
    def is_watched(self) -> bool:
        """True when the status is ``PENDING`` or ``OPEN``."""
        return self.status in WATCHED_STATUSES


@dataclass(frozen=True)
class Portfolio:
    """Every position of one ``trades.json``, in file order."""

    positions: tuple[Position, ...]
    path: str = "trades.json"

    def watched(self) -> tuple[Position, ...]:
        """The positions to watch (``PENDING`` or ``OPEN``), in file order."""
        return self._watched

    def tickers(self) -> list[str]:
        """Tickers of the watched positions, each once, in file order (what to subscribe to)."""
        return list(self._watched_index)

    def by_ticker(self, ticker: str, *, watched_only: bool = False) -> tuple[Position, ...]:
        """Every position in ``ticker`` (watched or not, unless ``watched_only``), in file order."""
        index = self._watched_index if watched_only else self._index
        return index.get(ticker, ())

    # Computed once per portfolio: the rule engine asks on every tick.

    @cached_property
    def _watched(self) -> tuple[Position, ...]:
        return tuple(position for position in self.positions if position.is_watched)

    @cached_property
    def _index(self) -> dict[str, tuple[Position, ...]]:
        return _group(self.positions)

    @cached_property
    def _watched_index(self) -> dict[str, tuple[Position, ...]]:
        return _group(self._watched)

    def __repr__(self) -> str:
        return (
            f"Portfolio(path={self.path!r}, positions={len(self.positions)}, "
            f"watched={len(self.watched())})"
        )


def _group(positions: Iterable[Position]) -> dict[str, tuple[Position, ...]]:
    groups: dict[str, list[Position]] = {}
    for position in positions:
        groups.setdefault(position.ticker, []).append(position)
    return {ticker: tuple(group) for ticker, group in groups.items()}


# Loading


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
    problems.append(f"status must be one of {_STATUS_LIST}, but got {_describe(value)}")
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
    return _exact(hundredths, -2)


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


def _exact(coefficient: int, exponent: int) -> Decimal:
    """``coefficient × 10**exponent`` as a Decimal, exactly, whatever the context precision."""
    digits = tuple(int(digit) for digit in str(abs(coefficient)))
    return Decimal((int(coefficient < 0), digits, exponent))


# Side-aware prices and P&L


@dataclass(frozen=True, slots=True)
class SideQuote:
    """Best bid, best ask and last price of one side, in micro-dollars (None when unknown)."""

    bid: int | None
    ask: int | None
    last: int | None


def side_quote(
    side: Side, *, yes_bid: int | None, yes_ask: int | None, yes_last: int | None
) -> SideQuote:
    """The market's quote seen from ``side``.

    Kalshi quotes only the YES side; the book is reciprocal, so for NO:
    NO bid = 1 − YES ask, NO ask = 1 − YES bid, NO last = 1 − YES last.
    YES bid 62¢ / ask 64¢ is NO bid 36¢ / ask 38¢. None stays None.

    Raises:
        ValueError: ``side`` is not ``"YES"`` or ``"NO"``.
    """
    if side == "YES":
        return SideQuote(bid=yes_bid, ask=yes_ask, last=yes_last)
    if side == "NO":
        return SideQuote(bid=_other(yes_ask), ask=_other(yes_bid), last=_other(yes_last))
    raise ValueError(f"side must be YES or NO, but got {side!r}")


def _other(yes_micros: int | None) -> int | None:
    return None if yes_micros is None else DOLLAR - yes_micros


def mark_price(quote: SideQuote, basis: PriceBasis = "last") -> int | None:
    """The price a position is marked at, in micro-dollars, or None when unknown.

    ``mid`` is ``(bid + ask) / 2``; when that falls on half a micro-dollar it is rounded
    half-to-even to a whole micro-dollar (so prices stay integral and unbiased). ``mid`` is
    None unless both bid and ask are known.

    Raises:
        ValueError: ``basis`` is not ``last``, ``bid`` or ``mid``.
    """
    if basis == "last":
        return quote.last
    if basis == "bid":
        return quote.bid
    if basis != "mid":
        raise ValueError(f"price basis must be last, bid or mid, but got {basis!r}")
    if quote.bid is None or quote.ask is None:
        return None
    half, odd = divmod(quote.bid + quote.ask, 2)
    return half + 1 if odd and half % 2 else half


def move_micros(position: Position, mark_micros: int) -> int:
    """How far ``mark_micros`` (a price of the position's side) is from the entry: mark − entry."""
    return mark_micros - position.entry_micros


def pnl_dollars(position: Position, mark_micros: int) -> Decimal:
    """Paper profit or loss in dollars: contracts × (mark − entry), exactly.

    ``mark_micros`` is a price of the position's side (see :func:`side_quote`). The result has
    at least two decimals and no trailing zeros beyond them: ``Decimal("1.45")``,
    ``Decimal("16.6665")``, ``Decimal("0.00")``.
    """
    sign, digits, exponent = position.contracts.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"contracts must be finite, but got {position.contracts}")
    coefficient = int("".join(map(str, digits))) * (-1 if sign else 1)
    product = coefficient * move_micros(position, mark_micros)
    exponent -= 6  # micro-dollars to dollars
    if exponent > -2:
        product, exponent = product * 10 ** (exponent + 2), -2
    while exponent < -2 and product % 10 == 0:
        product, exponent = product // 10, exponent + 1
    return _exact(product, exponent)
