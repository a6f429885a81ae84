"""Optional settlement write-back into ``trades.json`` (off unless ``--write-back``).

When a watched market's result is known, each of its watched entries gets ``status: SETTLED``,
``result`` (``yes``/``no``), ``pnl_dollars`` (the realized paper P&L as an exact decimal
string, like ``"14.40"``) and ``settled_at`` (UTC, RFC 3339) — the shape of a settled entry in
``trades.json.example``. Nothing else changes:

* every other field and entry, and every top-level key, is kept as read, in its order;
* numbers are written back with their original text (``30.5`` stays ``30.5``, never a float);
* the file is re-indented only as ``json.dumps(indent=2)`` must; non-ASCII text stays as is;
* the previous version is kept as ``trades.json.bak``; the new one is written to a temporary
  file in the same folder, flushed to disk, given the original's mode and renamed over it.

The file machinery (raw numbers, backup, atomic replace, :class:`FileChanged`) is
:mod:`watcher.service.jsonfile`'s, shared with paper orders. The hot-reload watcher then
reloads the file like any edit: the settled entries stop being watched.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcher.domain.market import MarketState
from watcher.domain.positions import pnl_dollars
from watcher.domain.trades_file import PositionsError, parse_positions
from watcher.kalshi.fixed import DOLLAR
from watcher.service.jsonfile import BACKUP_SUFFIX, FileChanged, dump_raw, load_raw, replace_file

__all__ = ["BACKUP_SUFFIX", "FileChanged", "SettlementWriter", "write_settlement"]

logger = logging.getLogger("watcher.writeback")

_RESULTS = ("yes", "no")
_ATTEMPTS = 3
_RETRY_PAUSE = 0.2


def write_settlement(
    path: str | os.PathLike[str],
    *,
    ticker: str,
    result: str,
    yes_payout_micros: int,
    settled_at_ms: int,
) -> list[int]:
    """Mark the watched entries of ``ticker`` settled in the positions file (blocking).

    Args:
        path: the positions file.
        ticker: the market that settled.
        result: ``"yes"`` or ``"no"``.
        yes_payout_micros: what one YES contract paid (1_000_000 when YES won).
        settled_at_ms: when, Unix ms (written as ``settled_at``).

    Returns:
        the trade numbers (1-based) updated; empty when no watched entry is in ``ticker``
        (the file is then left untouched).

    Raises:
        ValueError: ``result`` is not yes/no.
        PositionsError: the file is invalid now (nothing is written).
        OSError: the file cannot be read or written.
    """
    if result not in _RESULTS:
        raise ValueError(f"result must be 'yes' or 'no', but got {result!r}")
    real = Path(path).resolve()  # write through a symlink, not over it
    original = real.read_bytes()
    text = original.decode("utf-8")
    new_text, updated = _settled(text, str(path), ticker, result, yes_payout_micros, settled_at_ms)
    if updated:
        replace_file(real, original, new_text.encode("utf-8"))
    return updated


class SettlementWriter:
    """Writes settlements back when enabled; the pipeline's ``on_settled`` hook.

    Args:
        path: the positions file.
        clock: Unix time in seconds (for ``settled_at`` when the event has no time).
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float]) -> None:
        self.path = Path(path)
        self.clock = clock
        self.written: list[str] = []

    def __repr__(self) -> str:
        return f"<SettlementWriter {self.path} written={len(self.written)}>"

    async def __call__(self, market: MarketState, now_ms: int) -> None:
        """Write ``market``'s result into the positions file; errors are logged, not raised."""
        if market.result not in _RESULTS:
            return
        payout = market.settlement_value_micros
        if payout is None:
            payout = DOLLAR if market.result == "yes" else 0
        updated = await self._write(market.ticker, market.result, payout, now_ms)
        if updated:
            self.written.append(market.ticker)
            logger.info(
                "wrote settlement of %s (%s) into %s: trade %s (backup %s%s)",
                market.ticker,
                market.result,
                self.path,
                ", ".join(f"#{n}" for n in updated),
                self.path.name,
                BACKUP_SUFFIX,
            )

    async def _write(self, ticker: str, result: str, payout: int, now_ms: int) -> list[int]:
        """:func:`write_settlement` in a thread, again while the file changes under it."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await asyncio.to_thread(
                    write_settlement,
                    self.path,
                    ticker=ticker,
                    result=result,
                    yes_payout_micros=payout,
                    settled_at_ms=now_ms,
                )
            except FileChanged:
                if attempt == _ATTEMPTS:
                    logger.error(
                        "settlement of %s not written: %s keeps changing", ticker, self.path
                    )
                    return []
                await asyncio.sleep(_RETRY_PAUSE)
            except PositionsError as exc:
                logger.error("settlement of %s not written: %s", ticker, exc.errors[0].located())
                return []
            except (OSError, UnicodeDecodeError) as exc:
                logger.error("settlement of %s not written to %s: %s", ticker, self.path, exc)
                return []
        return []


# Private functions


def _settled(
    text: str, filename: str, ticker: str, result: str, yes_payout_micros: int, settled_at_ms: int
) -> tuple[str, list[int]]:
    """The file's new text with the watched entries of ``ticker`` settled, and their numbers
    (the text unchanged when there are none)."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    portfolio = parse_positions(text, filename=filename)
    data = load_raw(text.removeprefix("\ufeff"))
    entries: list[dict[str, Any]] = data["trades"] if isinstance(data, dict) else data
    settled_at = datetime.fromtimestamp(settled_at_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    updated = []
    for position in portfolio.by_ticker(ticker, watched_only=True):
        payout = yes_payout_micros if position.side == "YES" else DOLLAR - yes_payout_micros
        entry = entries[position.index - 1]
        entry["status"] = "SETTLED"
        entry["result"] = result
        entry["pnl_dollars"] = str(pnl_dollars(position, payout))
        entry["settled_at"] = settled_at
        updated.append(position.index)
    if not updated:
        return text, []
    return bom + dump_raw(data) + ("\n" if text.endswith("\n") else ""), updated
