"""Paper orders from the chat: ``/buy``, ``/close`` and an alert's Close button.

Each is checked at once (the desk's own checks of ticker, side, quantity and limit) and then
waits for a Confirm press (:mod:`watcher.faces.telegram.confirm`); confirmed, it goes through the
running service's :class:`~watcher.service.paper.PaperDesk` (``source="chat"``), exactly as
``watcher paper buy|close`` does, and the answer is the desk's own wording (``buy_text``,
``close_text``) or its reason for refusing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

from watcher.errors import KalshiError, WatcherError
from watcher.faces.telegram.session import STANDING_BY, BotSession
from watcher.rules.wording import contracts_text
from watcher.service.paper import buy_text, close_text
from watcher.service.paper_orders import order_contracts, order_limit, order_side, order_ticker

__all__ = ["BUY_USAGE", "CLOSE_USAGE", "Order", "buy_order", "close_order"]

BUY_USAGE = (
    "usage: /buy TICKER yes|no QTY [LIMIT] (LIMIT in cents), e.g. /buy KXCPI-26JAN-T0.3 yes 10 45"
)
CLOSE_USAGE = "usage: /close ID|TICKER [QTY], e.g. /close paper-0001 or /close KXCPI-26JAN-T0.3 5"

#: An order: what the question says, and what places it (returning the reply).
Order = tuple[str, Callable[[], Awaitable[str]]]


def buy_order(session: BotSession, args: Sequence[str]) -> Order:
    """``/buy TICKER yes|no QTY [LIMIT]``.

    Raises:
        PaperError: a bad ticker, side, quantity or limit (nothing is asked).
        ValueError: the wrong number of words (the usage is the message).
    """
    if len(args) not in (3, 4):
        raise ValueError(BUY_USAGE)
    ticker, side, count = order_ticker(args[0]), order_side(args[1]), order_contracts(args[2])
    limit = args[3] if len(args) == 4 else None
    order_limit(limit)
    what = f"buy {contracts_text(count)} {side} {ticker} at the ask"
    if limit is not None:
        what += f", paying at most {limit}¢"

    async def act() -> str:
        service = session.host.service
        if service is None or service.desk is None:
            return STANDING_BY
        try:
            result = await service.desk.buy(ticker, side, count, limit_cents=limit, source="chat")
        except (WatcherError, KalshiError) as exc:
            return f"refused: {exc}"
        return buy_text(result)

    return what, act


def close_order(session: BotSession, ref: str, count: str | None = None) -> Order:
    """``/close ID|TICKER [QTY]``, or an alert's Close button (``ref`` is ``TICKER#id``).

    Raises:
        PaperError: a bad quantity (nothing is asked).
    """
    contracts: Decimal | None = None if count is None else order_contracts(count)
    amount = "all of" if contracts is None else f"{contracts_text(contracts)} of"
    what = f"close {amount} {ref} at the bid"

    async def act() -> str:
        service = session.host.service
        if service is None or service.desk is None:
            return STANDING_BY
        try:
            result = await service.desk.close(ref, contracts=contracts, source="chat")
        except (WatcherError, KalshiError) as exc:
            return f"refused: {exc}"
        return close_text(result)

    return what, act
