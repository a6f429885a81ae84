"""Button presses: Confirm / Cancel of a paper order, and an alert's "Mute 1h" and "Close".

Every press is answered (Telegram shows a spinner until then). A Confirm or Cancel press that
is late, repeated or from another chat changes nothing and is answered "expired"; so is one that
Telegram delivers again after a takeover (its order waited in the old active's memory), whose
answer Telegram may refuse (a press is answered once): that refusal is only logged. An alert's
"Mute 1h" mutes that rule on that market for an hour at once (a mute is undone with
``/unmute``); its "Close" asks for a Confirm like ``/close``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import CallbackQuery, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import CallbackQueryHandler

from watcher.domain.controls import pair_target
from watcher.errors import WatcherError
from watcher.faces.telegram.commands import Commands, Context, by, reply
from watcher.faces.telegram.confirm import CANCEL, CONFIRM
from watcher.faces.telegram.notifier import CLOSE, MUTE, AlertRef, alert_ref
from watcher.faces.telegram.orders import close_order
from watcher.faces.telegram.replies import esc, mute_text
from watcher.faces.telegram.session import STANDING_BY, BotSession
from watcher.faces.telegram.wire import error_text

if TYPE_CHECKING:
    from watcher.service.controls import Controls

__all__ = ["EXPIRED", "MUTE_FOR", "Presses"]

logger = logging.getLogger("watcher.telegram")

_HTML = ParseMode.HTML
#: The answer to a press that does nothing.
EXPIRED = "expired"
#: How long an alert's "Mute 1h" button mutes, in seconds.
MUTE_FOR = 3600.0
#: Alerts searched for a button's alert the bot does not remember (sent before a restart).
_LOOKBACK = 500


class Presses:
    """The callback query handler of one bot."""

    def __init__(self, session: BotSession, commands: Commands) -> None:
        self.session = session
        self.commands = commands

    def __repr__(self) -> str:
        return f"<Presses {self.session!r}>"

    def handler(self) -> CallbackQueryHandler[Context, None]:
        return CallbackQueryHandler(self.press)

    async def press(self, update: Update, context: Context) -> None:
        """Dispatch on the callback data's prefix (``ok``, ``no``, ``mute``, ``close``)."""
        query = update.callback_query
        chat = update.effective_chat
        if query is None or chat is None:
            return
        kind, _, rest = (query.data or "").partition(":")
        if kind in (CONFIRM, CANCEL):
            await self._decide(query, chat.id, rest, confirmed=kind == CONFIRM)
        elif kind in (MUTE, CLOSE) and rest.isdigit():
            await self._alert_button(update, query, kind, int(rest))
        else:
            await _expired(query)

    # Private methods

    async def _decide(
        self, query: CallbackQuery, chat_id: int, token: str, *, confirmed: bool
    ) -> None:
        pending = self.session.confirmations.take(token, chat_id, self.session.clock())
        if pending is None:
            await _expired(query)
            return
        if not confirmed:
            await query.answer("cancelled")
            await query.edit_message_text(esc(f"cancelled: {pending.what}"), parse_mode=_HTML)
            return
        await query.answer("placing the order")
        await query.edit_message_reply_markup(None)  # the buttons go: one press only
        answer = await pending.act()
        await query.edit_message_text(esc(answer), parse_mode=_HTML)

    async def _alert_button(
        self, update: Update, query: CallbackQuery, kind: str, alert_id: int
    ) -> None:
        ref = await self._ref(alert_id)
        service = self.session.host.service
        controls = service.controls if service is not None else None
        if ref is None or (kind == CLOSE and ref.position is None):
            await _expired(query)
        elif controls is None:
            await query.answer(STANDING_BY[:200])
        elif kind == CLOSE and ref.position is not None:
            await query.answer()
            await self.commands.ask(update, close_order(self.session, ref.position))
        else:
            await query.answer("muting for 1h")
            await self._mute(update, controls, ref)

    async def _mute(self, update: Update, controls: Controls, ref: AlertRef) -> None:
        """Mute that rule on that market for :data:`MUTE_FOR` seconds, and say so."""
        target = pair_target(ref.rule, ref.market) if ref.market else ref.rule
        try:
            mute = await controls.mute(MUTE_FOR, target, by=by(update))
        except (ValueError, WatcherError) as exc:
            await reply(update, f"refused: {exc}")
            return
        s = self.session
        await reply(update, mute_text(mute, now_ms=s.now_ms(), tz=s.tz))

    async def _ref(self, alert_id: int) -> AlertRef | None:
        """The alert's button target: remembered when it was sent, else looked up."""
        found = self.session.refs.get(alert_id)
        if found is not None or self.session.read_model is None:
            return found
        for record in await self.session.read_model.recent_alerts(limit=_LOOKBACK):
            if record.id == alert_id:
                return alert_ref(record.rule, record.market_ticker, record.key)
        return None


async def _expired(query: CallbackQuery) -> None:
    """Answer a press that does nothing "expired"; Telegram refuses an answer to a press that
    was already answered (one delivered again after a takeover) or is too old."""
    try:
        await query.answer(EXPIRED)
    except BadRequest as exc:
        logger.info(
            "telegram: a stale button press (answered before a restart or takeover, or too old)"
            " did nothing; Telegram refused its answer: %s",
            error_text(exc),
        )
