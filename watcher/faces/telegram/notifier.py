"""The ``bot`` notify target: alerts from the outbox, sent by the bot with buttons.

:class:`BotNotifier` is a :class:`~watcher.notify.ports.TargetNotifier`: the outbox sender
(:class:`~watcher.notify.sender.Sender`) hands it the due deliveries of the ``bot`` target while
the bot runs, and marks, retries or gives them up from its answer like any other target's. It
sends one message to every allowed chat, in HTML with the text escaped, carrying per alert a
"Mute 1h" button (that rule on that market) and, for a position's alert, "Close". A chat that
got the message is not sent it again when another chat's send is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError

from watcher.faces.telegram.replies import clip, esc
from watcher.faces.telegram.wire import error_text
from watcher.notify.ports import SendStatus
from watcher.notify.sender import compose_message
from watcher.store.records import DeliveryRef, PendingDelivery

__all__ = ["AlertRef", "AlertRefs", "BotNotifier", "alert_ref"]

logger = logging.getLogger("watcher.telegram")

#: Callback data prefixes of the alert buttons: ``mute:<alert id>``, ``close:<alert id>``.
MUTE, CLOSE = "mute", "close"
#: Rows of buttons at most (a coalesced message of many alerts keeps the first ones').
_MAX_ROWS = 8
_MAX_REFS = 2_000


@dataclass(frozen=True, slots=True)
class AlertRef:
    """What an alert's buttons act on.

    Attributes:
        rule: the rule's name.
        market: the market ticker.
        position: the position's scope (``TICKER#id`` or ``TICKER#N``) for a position's
            alert, else None.
    """

    rule: str
    market: str
    position: str | None


def alert_ref(rule: str, market: str, key: str) -> AlertRef:
    """The buttons' target of an alert, from its key ``rule|scope|ident`` (a position rule's
    scope is ``TICKER#id``)."""
    scope = key.removeprefix(f"{rule}|").partition("|")[0] if key.startswith(f"{rule}|") else ""
    is_position = bool(market) and scope.startswith(f"{market}#")
    return AlertRef(rule, market, scope if is_position else None)


class AlertRefs:
    """The targets of the alerts the bot sent lately, by alert id (a bounded memory)."""

    def __init__(self) -> None:
        self._refs: OrderedDict[int, AlertRef] = OrderedDict()

    def __repr__(self) -> str:
        return f"<AlertRefs {len(self._refs)}>"

    def remember(self, alert_id: int, ref: AlertRef) -> None:
        self._refs[alert_id] = ref
        self._refs.move_to_end(alert_id)
        while len(self._refs) > _MAX_REFS:
            self._refs.popitem(last=False)

    def get(self, alert_id: int) -> AlertRef | None:
        return self._refs.get(alert_id)


class BotNotifier:
    """Sends the ``bot`` target's alerts to the allowed chats.

    Args:
        bot: the running bot.
        chats: the chats in force (they follow a reloaded rules.yaml).
        refs: where the buttons' targets are remembered.
        timeout: the longest one message may take to all chats.
    """

    def __init__(
        self,
        bot: Bot,
        chats: Callable[[], Sequence[int]],
        refs: AlertRefs,
        *,
        timeout: float = 15.0,
    ) -> None:
        self._bot = bot
        self._chats = chats
        self.refs = refs
        self._timeout = timeout
        self._done: dict[DeliveryRef, set[int]] = {}

    def __repr__(self) -> str:
        return f"<BotNotifier chats={len(self._chats())}>"

    async def deliver(self, items: Sequence[PendingDelivery]) -> tuple[SendStatus, str]:
        """Send ``items`` as one message to each allowed chat that has not had it."""
        chats = list(self._chats())
        if not chats:
            return SendStatus.CONFIG_ERROR, "control.telegram lists no chat"
        for item in items:
            self.refs.remember(item.alert_id, alert_ref(item.rule, item.market_ticker, item.key))
        text, markup = alert_message(items)
        refs = [item.ref for item in items]
        todo = [c for c in chats if not all(c in self._done.get(ref, ()) for ref in refs)]
        results = await asyncio.gather(*(self._send(chat, text, markup) for chat in todo))
        for chat, (status, _) in zip(todo, results, strict=True):
            if status is SendStatus.DELIVERED:
                for ref in refs:
                    self._done.setdefault(ref, set()).add(chat)
        status, error = _combined(results)
        if status is not SendStatus.FAILED:
            for ref in refs:
                self._done.pop(ref, None)
        return status, error

    async def _send(
        self, chat: int, text: str, markup: InlineKeyboardMarkup | None
    ) -> tuple[SendStatus, str]:
        try:
            async with asyncio.timeout(self._timeout):
                await self._bot.send_message(
                    chat, text, parse_mode=ParseMode.HTML, reply_markup=markup
                )
        except (Forbidden, BadRequest, InvalidToken) as exc:
            return SendStatus.CONFIG_ERROR, f"chat {chat}: {error_text(exc)}"
        except (TelegramError, TimeoutError) as exc:
            return SendStatus.FAILED, f"chat {chat}: {error_text(exc) or 'timed out'}"
        return SendStatus.DELIVERED, ""


def alert_message(items: Sequence[PendingDelivery]) -> tuple[str, InlineKeyboardMarkup | None]:
    """The HTML text of one message carrying ``items`` and its buttons."""
    title, body, _ = compose_message(items)
    rows = [_buttons(item, many=len(items) > 1) for item in items[:_MAX_ROWS]]
    return clip(f"<b>{esc(title)}</b>\n{esc(body)}"), InlineKeyboardMarkup(rows)


def _buttons(item: PendingDelivery, *, many: bool) -> list[InlineKeyboardButton]:
    ref = alert_ref(item.rule, item.market_ticker, item.key)
    suffix = f" {item.market_ticker}"[:28] if many and item.market_ticker else ""
    row = [InlineKeyboardButton(f"Mute 1h{suffix}", callback_data=f"{MUTE}:{item.alert_id}")]
    if ref.position is not None:
        row.append(InlineKeyboardButton(f"Close{suffix}", callback_data=f"{CLOSE}:{item.alert_id}"))
    return row


def _combined(results: Sequence[tuple[SendStatus, str]]) -> tuple[SendStatus, str]:
    """One status for all chats: any retryable failure retries; all refused is a config error."""
    errors = "; ".join(error for status, error in results if status is not SendStatus.DELIVERED)
    if any(status is SendStatus.FAILED for status, _ in results):
        return SendStatus.FAILED, errors
    if results and all(status is SendStatus.CONFIG_ERROR for status, _ in results):
        return SendStatus.CONFIG_ERROR, errors
    return SendStatus.DELIVERED, ""
