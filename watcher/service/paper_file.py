"""Paper orders in ``trades.json``: the entries a buy appends and a close changes (issue 12).

``trades.json`` stays the source of truth for positions. One order reads the file once
(:func:`read_trades`), changes its raw JSON in memory (:meth:`TradesFile.add_buy`,
:meth:`TradesFile.close`) and writes it back with :func:`write_trades` through
:mod:`watcher.service.jsonfile`: atomically, keeping every unknown field and number text, with
``trades.json.bak``, and refused with :class:`~watcher.errors.PaperError` when the file changed
on disk since it was read (a hand edit is never overwritten).

A buy appends ``{"id", "ticker", "side", "contracts", "entry_price_dollars", "fees_dollars",
"status": "PENDING", "opened_at", "source": "paper"}``. A full close sets on the entry
``status: CLOSED``, ``exit_price_dollars``, ``exit_fees_dollars``, ``realized_pnl_dollars`` and
``closed_at``. A partial close lowers the entry's size and its ``fees_dollars`` by the share of
the contracts sold, and appends a CLOSED entry for them with ``parent_id``. An entry closed
without an ``id`` gets one (fills and ``parent_id`` name it).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from watcher.domain.paper import CloseResult, at_least_cents
from watcher.domain.paper_ledger import entry_fee
from watcher.domain.positions import Portfolio, Position
from watcher.domain.trades_file import parse_positions
from watcher.errors import PaperError
from watcher.kalshi.fixed import micros_to_decimal
from watcher.service.jsonfile import (
    FileChanged,
    RawNumber,
    atomic_write,
    dump_raw,
    load_raw,
    replace_file,
)

__all__ = [
    "TradesFile",
    "dollars_text",
    "iso_utc",
    "price_text",
    "read_trades",
    "write_trades",
]

_SIZE_KEYS = ("contracts", "quantity", "position_size")
_EMPTY = '{\n  "trades": []\n}\n'


@dataclass
class TradesFile:
    """``trades.json`` as read for one order: its positions, and its raw JSON to change.

    Attributes:
        path: the file (symlinks resolved).
        original: the bytes read; None when the file did not exist (a buy creates it).
        portfolio: the positions, validated.
        data: the raw JSON (numbers as :class:`~watcher.service.jsonfile.RawNumber`).
    """

    path: Path
    original: bytes | None
    portfolio: Portfolio
    data: Any
    bom: str = ""
    newline: str = "\n"
    new_ids: set[str] = field(default_factory=set)

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The list of trades inside :attr:`data` (changes to it are written)."""
        entries: list[dict[str, Any]] = (
            self.data["trades"] if isinstance(self.data, dict) else self.data
        )
        return entries

    # Public methods

    def find_open(self, ref: str) -> Position:
        """The watched position ``ref`` names: its ``id``, ``#N`` (trade number), ``TICKER#id``
        or ``TICKER#N`` (a rule's scope), or a ticker with exactly one watched position.

        Raises:
            PaperError: no such open position, or a ticker with several (asking for an id).
        """
        ref = ref.strip()
        found = [p for p in self.portfolio.positions if self.names(p, ref)]
        if not found:
            found = list(self.portfolio.by_ticker(ref.upper(), watched_only=True))
        watched = [p for p in found if p.is_watched]
        if len(watched) == 1:
            return watched[0]
        if len(watched) > 1:
            names = ", ".join(_label(p) for p in watched)
            raise PaperError(f"{ref} has {len(watched)} open positions ({names}): give an id")
        if found:
            raise PaperError(f"position {ref} is {found[0].status}, not open")
        raise PaperError(f"no open paper position with id or ticker {ref}")

    @staticmethod
    def names(position: Position, ref: str) -> bool:
        """Whether ``ref`` is the position's ``id``, ``#N``, ``TICKER#id`` or ``TICKER#N``."""
        return _names(position, ref.strip())

    def new_id(self) -> str:
        """A new entry id, unique in the file."""
        taken = {p.id for p in self.portfolio.positions} | self.new_ids
        while True:
            candidate = f"paper-{secrets.token_hex(4)}"
            if candidate not in taken:
                self.new_ids.add(candidate)
                return candidate

    def id_of(self, position: Position, *, given: str | None = None) -> str:
        """The position's id, giving the entry one (``given``, else a new one) if it has none."""
        if position.id is not None:
            return position.id
        new = given or self.new_id()
        self.entries[position.index - 1]["id"] = new
        return new

    def add_buy(self, entry: dict[str, Any]) -> None:
        """Append the entry of a paper buy (see the module docstring for its fields)."""
        self.entries.append(entry)

    def close(self, position: Position, result: CloseResult, *, now_ms: int) -> None:
        """Record ``result`` (a close of ``position``, full or partial) in the raw JSON."""
        entry = self.entries[position.index - 1]
        closed = {
            "status": "CLOSED",
            "exit_price_dollars": price_text(result.fill.price),
            "exit_fees_dollars": dollars_text(result.exit_fee),
            "realized_pnl_dollars": dollars_text(result.realized),
            "closed_at": iso_utc(now_ms),
        }
        if result.remaining <= 0:
            entry.update(closed)
            return
        _set_size(entry, result.remaining)
        entry["fees_dollars"] = dollars_text(entry_fee(position) - result.entry_fee)
        self.entries.append(
            {
                "id": result.closed_id,
                "parent_id": result.position_id,
                "ticker": position.ticker,
                "side": position.side,
                "contracts": RawNumber(_number_text(result.fill.contracts)),
                "entry_price_dollars": price_text(micros_to_decimal(position.entry_micros)),
                "fees_dollars": dollars_text(result.entry_fee),
                "opened_at": entry.get("opened_at"),
                "source": "paper",
            }
            | closed
        )
        if self.entries[-1]["opened_at"] is None:
            del self.entries[-1]["opened_at"]

    def render(self) -> bytes:
        """The new file's bytes."""
        return (self.bom + dump_raw(self.data) + self.newline).encode("utf-8")


def read_trades(path: str | Path) -> TradesFile:
    """Read ``trades.json`` for an order; a missing file reads as an empty one.

    Raises:
        PositionsError: the file is invalid (nothing will be written).
        OSError: the file cannot be read.
    """
    real = Path(path).resolve()
    try:
        original: bytes | None = real.read_bytes()
    except FileNotFoundError:
        original = None
    try:
        text = _EMPTY if original is None else original.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PaperError(f"{path} is not UTF-8 text: nothing written") from exc
    portfolio = parse_positions(text, filename=str(path))
    return TradesFile(
        path=real,
        original=original,
        portfolio=portfolio,
        data=load_raw(text.removeprefix("\ufeff")),
        bom="\ufeff" if text.startswith("\ufeff") else "",
        newline="\n" if text.endswith("\n") else "",
    )


def write_trades(trades: TradesFile) -> None:
    """Write the file back: atomically, with ``.bak``, never over a change made since reading.

    Raises:
        PaperError: the file changed on disk since it was read (nothing is written).
        OSError: the file cannot be written.
    """
    data = trades.render()
    try:
        if trades.original is None:
            if trades.path.exists():
                raise FileChanged(f"{trades.path} was created since it was read")
            atomic_write(trades.path, data, 0o644)
        else:
            replace_file(trades.path, trades.original, data)
    except FileChanged as exc:
        raise PaperError(
            f"{trades.path.name} changed on disk since it was read (a hand edit?): "
            "nothing written; run the order again"
        ) from exc


def price_text(price: Decimal) -> str:
    """A price as Kalshi writes it, with at least 4 decimals: ``"0.4500"``, ``"0.456667"``."""
    if price == price.quantize(Decimal("0.0001")):
        return f"{price:.4f}"
    return f"{price.normalize():f}"


def dollars_text(amount: Decimal) -> str:
    """An amount of dollars, exact, with at least two decimals: ``"0.18"``, ``"-11.2500"``."""
    return f"{at_least_cents(amount):f}"


def iso_utc(ms: int) -> str:
    """Unix ms as ISO 8601 UTC to the second: ``"2026-01-15T14:00:00Z"``."""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Private functions


def _names(position: Position, ref: str) -> bool:
    if position.id is not None and ref == position.id:
        return True
    if ref == f"#{position.index}":
        return True
    ticker, _, key = ref.rpartition("#")
    return (
        bool(ticker)
        and ticker.upper() == position.ticker
        and key in (position.id, str(position.index))
    )


def _label(position: Position) -> str:
    return position.id if position.id is not None else f"#{position.index}"


def _set_size(entry: dict[str, Any], contracts: Decimal) -> None:
    """Write the entry's new size under its own key (``position_size`` becomes ``contracts``)."""
    key = next((k for k in _SIZE_KEYS if entry.get(k) is not None), "contracts")
    if key == "position_size":
        del entry[key]
        key = "contracts"
    entry[key] = RawNumber(_number_text(contracts))


def _number_text(count: Decimal) -> str:
    text = f"{count:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
