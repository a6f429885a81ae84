"""The bot's commands: ``/help``, ``/status``, ``/alerts``, ``/mute``, ``/unmute``, ``/pause``,
``/resume``, ``/buy`` and ``/close``.

They hold no logic: they read through the store's read model and
:func:`~watcher.ops.status.read_status`, silence through the running service's
:class:`~watcher.service.controls.Controls`, and trade through its paper desk after a Confirm
press (:mod:`watcher.faces.telegram.orders`). Only allowed chats get here (the guard runs
first, :mod:`watcher.faces.telegram.bot`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import BaseHandler, CommandHandler, ContextTypes, MessageHandler, filters

from watcher.errors import WatcherError
from watcher.faces.telegram.confirm import CANCEL, CONFIRM, Pending
from watcher.faces.telegram.orders import CLOSE_USAGE, Order, buy_order, close_order
from watcher.faces.telegram.replies import HELP, alerts_text, esc, mute_text, status_text
from watcher.faces.telegram.session import STANDING_BY, BotSession
from watcher.ops.status import read_status
from watcher.rules.fields import parse_duration

if TYPE_CHECKING:
    from watcher.service.controls import Controls

__all__ = ["ALERTS_DEFAULT", "ALERTS_MAX", "Commands", "reply"]

ALERTS_DEFAULT, ALERTS_MAX = 5, 30
_ALERTS_USAGE = f"usage: /alerts [N], N from 1 to {ALERTS_MAX}"
_MUTE_USAGE = "usage: /mute DURATION [MARKET|RULE], e.g. /mute 1h or /mute 30m KXCPI-26JAN-T0.3"
_PAUSED = "paused: only critical alerts are sent until /resume (mutes stay as they are)"

Context = ContextTypes.DEFAULT_TYPE


async def reply(
    update: Update, text: str, markup: InlineKeyboardMarkup | None = None, *, html: bool = False
) -> None:
    """Answer in the update's chat (plain text is escaped; ``html`` text is sent as is)."""
    chat = update.effective_chat
    if chat is not None:
        body = text if html else esc(text)
        await chat.send_message(body, parse_mode=ParseMode.HTML, reply_markup=markup)


def by(update: Update) -> str:
    """Who acted, as mutes and pauses record it: ``telegram:<chat id>``."""
    chat = update.effective_chat
    return f"telegram:{chat.id if chat is not None else '?'}"


class Commands:
    """The command handlers of one bot."""

    def __init__(self, session: BotSession) -> None:
        self.session = session

    def __repr__(self) -> str:
        return f"<Commands {self.session!r}>"

    def handlers(self) -> list[BaseHandler[Update, Context, None]]:
        """Every command, then "unknown command" for any other message."""
        named = {
            "help": self.help,
            "start": self.help,
            "status": self.status,
            "alerts": self.alerts,
            "mute": self.mute,
            "unmute": self.unmute,
            "pause": self.pause,
            "resume": self.resume,
            "buy": self.buy,
            "close": self.close,
        }
        found: list[BaseHandler[Update, Context, None]] = [
            CommandHandler(name, callback) for name, callback in named.items()
        ]
        found.append(MessageHandler(filters.ALL, self.unknown))
        return found

    # Reading

    async def help(self, update: Update, context: Context) -> None:
        await reply(update, HELP, html=True)

    async def unknown(self, update: Update, context: Context) -> None:
        await reply(update, "unknown command; /help lists them")

    async def status(self, update: Update, context: Context) -> None:
        active = self.session.active()
        controls = active[0].controls if active is not None else None
        if active is None or controls is None:
            await reply(update, STANDING_BY)
            return
        service, model = active
        table, _ = await read_status(model, service.pipeline.portfolio)  # its marks and P&L
        state = await controls.active()
        s = self.session
        text = status_text(table, service.live_health(), state, now_ms=s.now_ms(), tz=s.tz)
        await reply(update, text, html=True)

    async def alerts(self, update: Update, context: Context) -> None:
        args = context.args or []
        count = int(args[0]) if len(args) == 1 and args[0].isdigit() else None
        active = self.session.active()
        if len(args) > 1 or (args and not (count and count <= ALERTS_MAX)):
            await reply(update, _ALERTS_USAGE)
        elif active is None:
            await reply(update, STANDING_BY)
        else:
            records = await active[1].recent_alerts(limit=count or ALERTS_DEFAULT)
            await reply(update, alerts_text(records, self.session.tz), html=True)

    # Silencing: answered with what Controls did, or why it refused

    async def mute(self, update: Update, context: Context) -> None:
        args = context.args or []
        try:
            duration = parse_duration(args[0]) if args else timedelta(0)
        except ValueError:
            duration = timedelta(0)
        if not duration:
            await reply(update, _MUTE_USAGE)
            return
        target = " ".join(args[1:]) or None
        await self._control(update, lambda c: self._mute(c, duration, target, by(update)))

    async def unmute(self, update: Update, context: Context) -> None:
        target = " ".join(context.args or []) or None
        await self._control(update, lambda c: self._unmute(c, target))

    async def pause(self, update: Update, context: Context) -> None:
        async def pause(controls: Controls) -> str:
            await controls.pause(by=by(update))
            return _PAUSED

        await self._control(update, pause)

    async def resume(self, update: Update, context: Context) -> None:
        async def resume(controls: Controls) -> str:
            return "resumed: alerts are sent again" if await controls.resume() else "was not paused"

        await self._control(update, resume)

    async def _control(self, update: Update, use: Callable[[Controls], Awaitable[str]]) -> None:
        """Answer with what ``use`` did through the running service's controls."""
        service = self.session.host.service
        controls = service.controls if service is not None else None
        if controls is None:
            await reply(update, STANDING_BY)
            return
        try:
            text = await use(controls)
        except (ValueError, WatcherError) as exc:  # an unknown target; the database failed
            text = f"refused: {exc}"
        await reply(update, text)

    async def _mute(
        self, controls: Controls, duration: timedelta, target: str | None, who: str
    ) -> str:
        done = await controls.mute(duration.total_seconds(), target, by=who)
        return mute_text(done, now_ms=self.session.now_ms(), tz=self.session.tz)

    @staticmethod
    async def _unmute(controls: Controls, target: str | None) -> str:
        ended = await controls.unmute(target)
        what = f" of {target}" if target else ""
        if not ended:
            return f"there was no mute{what}"
        return f"ended {ended} mute{'' if ended == 1 else 's'}{what}"

    # Trading (after a Confirm press)

    async def buy(self, update: Update, context: Context) -> None:
        try:
            order = buy_order(self.session, context.args or [])
        except (ValueError, WatcherError) as exc:  # the usage; a bad ticker, side, qty, limit
            await reply(update, str(exc))
            return
        await self.ask(update, order)

    async def close(self, update: Update, context: Context) -> None:
        args = context.args or []
        try:
            if len(args) not in (1, 2):
                raise ValueError(CLOSE_USAGE)
            order = close_order(self.session, args[0], args[1] if len(args) == 2 else None)
        except (ValueError, WatcherError) as exc:
            await reply(update, str(exc))
            return
        await self.ask(update, order)

    async def ask(self, update: Update, order: Order) -> None:
        """Keep ``order`` for a Confirm press and ask for it (Confirm / Cancel buttons)."""
        chat = update.effective_chat
        if chat is None:
            return
        what, act = order
        pending = Pending(chat.id, what, act, self.session.clock())
        token = self.session.confirmations.ask(pending)
        buttons = [
            InlineKeyboardButton("Confirm", callback_data=f"{CONFIRM}:{token}"),
            InlineKeyboardButton("Cancel", callback_data=f"{CANCEL}:{token}"),
        ]
        ttl = f"{self.session.confirmations.ttl:g}"
        await reply(update, f"{what}? (confirm within {ttl} s)", InlineKeyboardMarkup([buttons]))
