"""``watcher paper buy|close|list``: paper orders at executable prices, with Kalshi's fees.

The ``paper`` command group is defined here and registered by :mod:`watcher.cli` (as the
``db`` group of :mod:`watcher.ops.dbcopy` is). Like the other commands it holds no logic: the
orders are :class:`watcher.service.paper.PaperDesk`'s. It reads the quotes of the service's
database (``--db``) when they are fresh and Kalshi's REST API otherwise (``KALSHI_API_URL``
honoured, signed when ``KALSHI_API_KEY_ID`` and ``KALSHI_PRIVATE_KEY_PATH`` are set), and takes
the fee rate from rules.yaml (``fees.taker_rate``).

Exit codes: 0 filled (or listed); 1 the order was refused (no quote, closed market, a limit that
cannot fill, ``trades.json`` changed or invalid) and nothing was written; 2 a bad option or
variable; 4 the database cannot be used.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import click

from watcher.errors import KalshiError, PaperError, WatcherError
from watcher.ops.cli_run import file_options, run_command

if TYPE_CHECKING:
    from watcher.domain.paper_ledger import LedgerLine, PaperBook
    from watcher.service.paper import PaperDesk
    from watcher.settings import Settings

__all__ = ["paper_group"]

_T = TypeVar("_T")

EXIT_REFUSED = 1


@click.group("paper")
def paper_group() -> None:
    """Paper orders: buy at the ask, close at the bid, pay Kalshi's fees, keep score."""


@paper_group.command("buy")
@click.argument("ticker")
@click.option("--side", type=click.Choice(["yes", "no"], case_sensitive=False), required=True)
@click.option("--qty", metavar="N", required=True, help="contracts to buy")
@click.option("--limit", metavar="CENTS", help="pay at most this many cents a contract")
@file_options
def buy(ticker: str, side: str, qty: str, limit: str | None, **files: Any) -> None:
    """Buy a side of TICKER at its ask (NO ask = $1 - YES bid) and add it to trades.json."""
    from watcher.service.paper import buy_text

    result = _run(files, lambda desk: desk.buy(ticker, side, qty, limit_cents=limit))
    click.echo(buy_text(result))


@paper_group.command("close")
@click.argument("id_or_ticker")
@click.option("--qty", metavar="N", help="contracts to sell (default: all)")
@click.option("--limit", metavar="CENTS", help="take at least this many cents a contract")
@file_options
def close(id_or_ticker: str, qty: str | None, limit: str | None, **files: Any) -> None:
    """Sell an open position at its side's bid (NO bid = $1 - YES ask)."""
    from watcher.service.paper import close_text

    result = _run(files, lambda desk: desk.close(id_or_ticker, contracts=qty, limit_cents=limit))
    click.echo(close_text(result))


@paper_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@file_options
def list_(as_json: bool, **files: Any) -> None:
    """Open and closed positions: entry, exit, fees, realized and unrealized P&L, totals."""
    book = _run(files, lambda desk: desk.positions())
    if as_json:
        click.echo(json.dumps(book.to_json()))
        return
    for line in _render(book):
        click.echo(line)


# Private functions


def _run(files: dict[str, Any], use: Callable[[PaperDesk], Awaitable[_T]]) -> _T:
    """Build the desk from the options and environment, run ``use``, map errors to exits."""
    refused = (PaperError, WatcherError, KalshiError)
    return run_command(
        files,
        lambda settings: _with_desk(settings, use),
        refused=refused,
        refused_code=EXIT_REFUSED,
    )


async def _with_desk(settings: Settings, use: Callable[[PaperDesk], Awaitable[_T]]) -> _T:
    from watcher.kalshi.auth import KalshiSigner
    from watcher.kalshi.rest import KalshiRestClient
    from watcher.service.paper import PaperDesk
    from watcher.store import open_backend

    signer = None
    if settings.api_key_id and settings.private_key_path:
        signer = KalshiSigner.from_file(
            settings.api_key_id, settings.private_key_path, settings.private_key_password
        )
    async with contextlib.AsyncExitStack() as stack:
        rest = await stack.enter_async_context(KalshiRestClient(settings.api_url, signer=signer))
        backend = open_backend(settings.db_path)
        fills = await backend.paper_fills()
        stack.push_async_callback(fills.close)
        model = await backend.read_model()
        stack.push_async_callback(model.close)
        desk = PaperDesk(
            trades_path=settings.trades_path,
            rest=rest,
            fills=fills,
            read_model=model,
            fee_rate=_fee_rate(settings),
        )
        return await use(desk)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the stack may swallow)


def _fee_rate(settings: Settings) -> Decimal:
    """rules.yaml's ``fees.taker_rate``; Kalshi's rate when there is no rules file."""
    from watcher.domain.fees import TAKER_RATE
    from watcher.rules import load_rules

    if not settings.rules_path.exists():
        return TAKER_RATE
    return load_rules(settings.rules_path, env=settings.env).fees.taker_rate


def _render(book: PaperBook) -> list[str]:
    from watcher.rules.wording import dollars_text, signed_dollars

    lines = [_line(line) for line in book.lines] or ["no positions"]
    rate = book.win_rate
    wins = "-" if rate is None else f"{rate * 100:.0f}% ({book.wins} of {book.done})"
    unpriced = f" ({book.unpriced} without a price)" if book.unpriced else ""
    lines.append(
        f"realized {signed_dollars(book.realized)}, unrealized {signed_dollars(book.unrealized)}"
        f"{unpriced}, fees paid {dollars_text(book.fees)}, win rate {wins}"
    )
    return lines


def _line(line: LedgerLine) -> str:
    from watcher.kalshi.fixed import format_cents, to_micros
    from watcher.rules.wording import contracts_text, dollars_text, signed_dollars

    def cents(price: Decimal | None) -> str:
        return "-" if price is None else format_cents(to_micros(price))

    def pnl(value: Decimal | None) -> str:
        return "-" if value is None else signed_dollars(value)

    name = line.id or f"#{line.index}"
    return (
        f"{name:<16} {line.status:<9} {contracts_text(line.contracts):>6} {line.side:<3} "
        f"{line.ticker:<24} entry {cents(line.entry_price):>6} exit {cents(line.exit_price):>6} "
        f"bid {cents(line.mark):>6} fees {dollars_text(line.fees):>6} "
        f"realized {pnl(line.realized):>8} unrealized {pnl(line.unrealized):>8}"
    )
