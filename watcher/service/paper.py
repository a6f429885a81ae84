"""The paper desk: open and close paper positions at executable prices, with Kalshi's fees.

:class:`PaperDesk` is the one service API for paper orders; the command line (``watcher paper``),
the rules (``action: close``) and later the dashboard and the chat all go through it:

* :meth:`PaperDesk.buy` buys a side at its ask, :meth:`PaperDesk.close` sells it at its bid,
  from the freshest quote (:class:`~watcher.service.paper_quotes.QuoteBoard`), walking the
  order book when the order is larger than the best level; a limit never fills past it and
  there are no partial fills;
* :meth:`PaperDesk.close_position` closes a position in full at a given price, exactly once
  per ``fill_key`` (a rule's close: the fill is recorded first, and a key seen before does
  nothing);
* :meth:`PaperDesk.positions` scores every position (:mod:`watcher.domain.paper_ledger`).

Every order reads ``trades.json``, prices the order, writes the file back
(:mod:`watcher.service.paper_file`: atomic, ``.bak``, refused if the file changed since it was
read) and records the fill in ``paper_fills``. A refused order raises
:class:`~watcher.errors.PaperError` and writes nothing. Fees: :mod:`watcher.domain.fees`, at the
rules' taker rate times the series' ``fee_multiplier`` (:mod:`watcher.service.paper_fees`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from watcher.domain.fees import TAKER_RATE, taker_fee_fills
from watcher.domain.paper import (
    BuyResult,
    CloseResult,
    Fill,
    Level,
    best_level,
    fee_share,
    fill_order,
    realized_pnl,
)
from watcher.domain.paper_ledger import PaperBook, entry_fee, score
from watcher.domain.positions import Position
from watcher.errors import PaperError
from watcher.kalshi.fixed import DOLLAR, format_cents, micros_to_decimal
from watcher.service.paper_fees import PaperSource, SeriesFees
from watcher.service.paper_file import TradesFile, read_trades, write_trades
from watcher.service.paper_orders import (
    SOURCES,
    buy_entry,
    buy_text,
    check_source,
    close_text,
    fill_key,
    order_contracts,
    order_limit,
    order_side,
    order_ticker,
)
from watcher.service.paper_quotes import FRESH_MS, QuoteBoard
from watcher.store.ports import PaperFills, ReadModel
from watcher.store.records import PaperFill

__all__ = ["SOURCES", "BuyResult", "CloseResult", "PaperDesk", "buy_text", "close_text"]

logger = logging.getLogger("watcher.paper")

_ATTEMPTS = 3
#: Fills of a market searched for a rule's key seen before.
_LOOKBACK = 1000


class PaperDesk:
    """Paper orders against Kalshi's (or the simulator's) quotes, written to ``trades.json``.

    Args:
        trades_path: the positions file (created by the first buy when missing).
        rest: Kalshi's REST API, signed when a key is configured (quotes, books, series fees).
        fills: the ``paper_fills`` port.
        read_model: the running service's database, for its latest streamed quotes.
        fee_rate: the base taker fee rate (``fees.taker_rate`` in rules.yaml), times each
            series' ``fee_multiplier``.
        clock: Unix time in seconds.
        fresh_ms: how old a streamed quote may be before REST is asked instead.
        before_write: called after an order is priced and just before ``trades.json`` is
            written (a seam for tests that edit the file "by hand" at that moment).
    """

    def __init__(
        self,
        *,
        trades_path: str | Path,
        rest: PaperSource,
        fills: PaperFills,
        read_model: ReadModel | None = None,
        fee_rate: Decimal = TAKER_RATE,
        clock: Callable[[], float] = time.time,
        fresh_ms: int = FRESH_MS,
        before_write: Callable[[], Any] | None = None,
        series_fees: SeriesFees | None = None,
    ) -> None:
        self.trades_path = Path(trades_path)
        self.fills = fills
        self.fee_rate = fee_rate
        self.clock = clock
        self.board = QuoteBoard(
            rest=rest, read_model=read_model, clock_ms=self._now_ms, fresh_ms=fresh_ms
        )
        self.series_fees = series_fees or SeriesFees(rest)
        self._before_write = before_write
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<PaperDesk {self.trades_path} fee rate {self.fee_rate} {self.board!r}>"

    # Public methods

    async def buy(
        self,
        ticker: str,
        side: str,
        contracts: Decimal | int | str,
        *,
        limit_cents: Decimal | int | str | None = None,
        source: str = "cli",
    ) -> BuyResult:
        """Buy ``contracts`` of ``side`` at its ask (walking the book if needed).

        Raises:
            PaperError: a bad order, no quote, a closed market, a limit that cannot fill, or
                ``trades.json`` changed while the order was priced. Nothing is written.
        """
        ticker, side_name = order_ticker(ticker), order_side(side)
        count, limit = order_contracts(contracts), order_limit(limit_cents)
        check_source(source)
        async with self._lock:
            trades = await self._read()
            quote = await self.board.quote(ticker)
            fill = await self.board.fill(quote, side_name, "buy", count, limit=limit)
            multiplier = await self.series_fees.multiplier(ticker)
            fee = taker_fee_fills(fill.parts, rate=self.fee_rate, multiplier=multiplier)
            now, position_id = self._now_ms(), trades.new_id()
            trades.add_buy(buy_entry(position_id, ticker, fill, fee, now))
            await self._write(trades)
            result = BuyResult(position_id, ticker, fill, fee)
            await self.fills.record(_fill_row(result, now, source, fill_key(source)))
        logger.info("paper buy %s: %s", position_id, buy_text(result))
        return result

    async def close(
        self,
        id_or_ticker: str,
        *,
        contracts: Decimal | int | str | None = None,
        limit_cents: Decimal | int | str | None = None,
        source: str = "cli",
    ) -> CloseResult:
        """Sell (part of) an open position at its side's bid (walking the book if needed).

        Args:
            id_or_ticker: the entry's ``id``, ``#N``, or a ticker with one open position.
            contracts: how many to sell; all of them when None.

        Raises:
            PaperError: as for :meth:`buy`, or no such open position, or a ticker with
                several (give an id), or more contracts than the position holds.
        """
        count = None if contracts is None else order_contracts(contracts)
        limit = order_limit(limit_cents)
        check_source(source)
        async with self._lock:
            trades = await self._read()
            position = trades.find_open(id_or_ticker)
            fill = await self._sell(position, count, limit)
            result, now = await self._closing(trades, position, fill), self._now_ms()
            trades.close(position, result, now_ms=now)
            await self._write(trades)
            await self.fills.record(_fill_row(result, now, source, fill_key(source)))
        logger.info("paper close %s: %s", result.position_id, close_text(result))
        return result

    async def close_position(
        self, position_id: str, *, price_micros: int, fill_key: str, source: str = "rule"
    ) -> CloseResult | None:
        """Close a position in full at ``price_micros`` (its side's bid), exactly once.

        The fill is recorded first under ``fill_key`` (known key: None), then trades.json is
        written (re-applied if it changed meanwhile, 3 tries). A close recorded but never
        written (the process died between) is completed at its price, not made again.

        Args:
            position_id: the entry's ``id``, or a rule's scope ``TICKER#id`` / ``TICKER#N``.
            price_micros: the executable price, micro-dollars of the position's side.
            fill_key: the close's unique key (the rule's alert key).

        Raises:
            PaperError: not open, a price not in 0–1, or the file kept changing.
        """
        check_source(source)
        price, now, given_id = _executable(price_micros), self._now_ms(), None
        async with self._lock:
            for attempt in range(1, _ATTEMPTS + 1):
                trades = await self._read()
                position = await self._still_open(trades, position_id, fill_key)
                if position is None:
                    return None
                pending = await self._unapplied(trades, position)
                if pending is not None:  # recorded, then the process died before the write
                    price, given_id, now = pending.price_dollars, pending.position_id, pending.ts_ms
                fill = fill_order(
                    [Level(price)], position.contracts, side=position.side, action="sell"
                )
                result = await self._closing(trades, position, fill, given_id=given_id)
                row, given_id = _fill_row(result, now, source, fill_key), result.position_id
                if pending is None and attempt == 1 and not await self.fills.record(row):
                    return None
                trades.close(position, result, now_ms=now)
                if await self._written(trades, last=attempt == _ATTEMPTS):
                    logger.info("paper close by %s: %s", source, close_text(result))
                    return result
        return None  # unreachable: the last attempt returns or raises

    async def positions(self) -> PaperBook:
        """Every position of ``trades.json`` scored at the freshest quotes (bids)."""
        trades = await self._read()
        bids: dict[str, Decimal | None] = {}
        multipliers: dict[str, Decimal] = {}
        for position in trades.portfolio.watched():
            key = f"{position.ticker} {position.side}"
            if key not in bids:
                bids[key] = await self._bid(position)
            if bids[key] is not None and position.ticker not in multipliers:
                multipliers[position.ticker] = await self.series_fees.multiplier(position.ticker)
        return score(trades.portfolio.positions, bids, rate=self.fee_rate, multipliers=multipliers)

    # Private methods

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _read(self) -> TradesFile:
        return await asyncio.to_thread(read_trades, self.trades_path)

    async def _write(self, trades: TradesFile) -> None:
        if self._before_write is not None:
            self._before_write()
        await asyncio.to_thread(write_trades, trades)

    async def _was_recorded(self, trades: TradesFile, ref: str, fill_key: str) -> bool:
        """Whether ``fill_key`` is among the fills of the market of the position ``ref`` names."""
        tickers = {p.ticker for p in trades.portfolio.positions if trades.names(p, ref)}
        for ticker in tickers:
            fills = await self.fills.recent(ticker=ticker, limit=_LOOKBACK)
            if any(fill.fill_key == fill_key for fill in fills):
                return True
        return False

    async def _unapplied(self, trades: TradesFile, position: Position) -> PaperFill | None:
        """A rule's close of ``position`` recorded in ``paper_fills`` but never written to
        ``trades.json`` (the process died between the two): it is completed, not made again.

        A recorded close is applied when an entry of ``trades.json`` carries its position id
        (closing writes the id into the entry); an open position with that id, or an id-less
        one of the same side and size while no entry carries the id, is still waiting for it.
        """
        ids = {p.id for p in trades.portfolio.positions if p.id is not None}
        for fill in await self.fills.recent(ticker=position.ticker, limit=_LOOKBACK):
            if fill.source != "rule" or fill.action != "sell" or fill.side != position.side:
                continue
            if position.id is not None and fill.position_id == position.id:
                return fill
            if position.id is None and fill.position_id not in ids:
                if fill.contracts == position.contracts:
                    return fill
        return None

    async def _bid(self, position: Position) -> Decimal | None:
        try:
            quote = await self.board.quote(position.ticker)
            return best_level(quote, position.side, "sell").price
        except PaperError as exc:
            logger.info("no price for %s %s: %s", position.ticker, position.side, exc)
            return None

    async def _closing(
        self, trades: TradesFile, position: Position, fill: Fill, *, given_id: str | None = None
    ) -> CloseResult:
        """The result of selling ``fill`` of ``position``: its fees (the series' multiplier
        asked once) and realized P&L."""
        multiplier = await self.series_fees.multiplier(position.ticker)
        exit_fee = taker_fee_fills(fill.parts, rate=self.fee_rate, multiplier=multiplier)
        share = fee_share(entry_fee(position), fill.contracts, position.contracts)
        entry_price = micros_to_decimal(position.entry_micros)
        remaining = position.contracts - fill.contracts
        position_id = trades.id_of(position, given=given_id)
        return CloseResult(
            position_id=position_id,
            closed_id=position_id if remaining <= 0 else trades.new_id(),
            ticker=position.ticker,
            fill=fill,
            entry_price=entry_price,
            entry_fee=share,
            exit_fee=exit_fee,
            realized=realized_pnl(
                entry_price=entry_price,
                exit_price=fill.price,
                contracts=fill.contracts,
                entry_fee=share,
                exit_fee=exit_fee,
            ),
            remaining=remaining,
        )

    async def _sell(self, position: Position, count: Decimal | None, limit: Decimal | None) -> Fill:
        """Sell ``count`` (all when None) of ``position`` at the freshest bids."""
        count = position.contracts if count is None else count
        if count > position.contracts:
            label = position.id or f"#{position.index}"
            raise PaperError(f"cannot sell {count} contracts: {label} holds {position.contracts}")
        quote = await self.board.quote(position.ticker)
        return await self.board.fill(quote, position.side, "sell", count, limit=limit)

    async def _still_open(self, trades: TradesFile, ref: str, key: str) -> Position | None:
        """The open position ``ref`` names; None when a close with ``key`` was recorded.

        Raises:
            PaperError: no such open position, and ``key`` was never recorded.
        """
        try:
            return trades.find_open(ref)
        except PaperError:
            if await self._was_recorded(trades, ref, key):
                return None  # closed by this key before (a restart, another instance)
            raise

    async def _written(self, trades: TradesFile, *, last: bool) -> bool:
        """Write ``trades``; False when the file changed meanwhile (raises on the last try)."""
        try:
            await self._write(trades)
        except PaperError:
            if last:
                raise
            return False
        return True


def _executable(price_micros: int) -> Decimal:
    """A rule's closing price (micro-dollars) as dollars, if a sell can fill there."""
    if not 0 < price_micros < DOLLAR:
        raise PaperError(f"cannot sell at {format_cents(price_micros)}: no bid")
    return micros_to_decimal(price_micros)


def _fill_row(result: BuyResult | CloseResult, now_ms: int, source: str, key: str) -> PaperFill:
    """The ``paper_fills`` row of a buy or a close."""
    return PaperFill(
        fill_key=key,
        position_id=result.position_id,
        ticker=result.ticker,
        side=result.fill.side,
        action=result.fill.action,
        contracts=result.fill.contracts,
        price_dollars=result.fill.price,
        fee_dollars=result.fee if isinstance(result, BuyResult) else result.exit_fee,
        ts_ms=now_ms,
        source=source,
    )
