"""The python-telegram-bot application: its transport, the guard in front of every handler, the
commands, the button presses and the error handler.

The guard (handler group -1) runs first for every update: a chat not on the list is dropped
without an answer (and logged once), a chat over the rate limit gets one "slow down"; only then
do the commands (:mod:`~watcher.faces.telegram.commands`) and presses
(:mod:`~watcher.faces.telegram.presses`) see it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    TypeHandler,
)

from watcher.faces.telegram.commands import Commands, Context, reply
from watcher.faces.telegram.guard import Verdict
from watcher.faces.telegram.presses import Presses
from watcher.faces.telegram.session import BotSession
from watcher.faces.telegram.wire import PLACEHOLDER, ApiHealth, TokenRequest, error_text

__all__ = ["ALLOWED_UPDATES", "SLOW_DOWN", "BotApp", "build_application"]

logger = logging.getLogger("watcher.telegram")

#: The updates the bot asks for (others, such as edited messages, are never fetched).
ALLOWED_UPDATES = ("message", "callback_query")
SLOW_DOWN = "slow down: too many commands in a minute; try again shortly"

BotApp = Application[Any, Context, Any, Any, Any, Any]


def build_application(
    session: BotSession,
    *,
    token: str,
    api_root: str,
    health: ApiHealth,
    send_timeout: float = 10.0,
) -> BotApp:
    """An application on ``{api_root}/bot{token}/`` with the guard, commands and presses.

    python-telegram-bot is given :data:`~watcher.faces.telegram.wire.PLACEHOLDER` as the
    token; the transport puts the real one into the URL.
    """
    root = api_root.rstrip("/")
    timeouts = {"connect_timeout": 5.0, "read_timeout": send_timeout, "write_timeout": 10.0}
    app: BotApp = (
        ApplicationBuilder()
        .token(PLACEHOLDER)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .request(TokenRequest(token, health, connection_pool_size=8, **timeouts))
        .get_updates_request(TokenRequest(token, health, connection_pool_size=2, **timeouts))
        .job_queue(None)
        .build()
    )
    commands = Commands(session)
    app.add_handler(TypeHandler(Update, _guard(session)), group=-1)
    app.add_handlers(commands.handlers())
    app.add_handler(Presses(session, commands).handler())
    app.add_error_handler(_on_error)
    return app


def _guard(session: BotSession) -> Callable[[Update, Context], Coroutine[Any, Any, None]]:
    async def guard(update: Update, context: Context) -> None:
        """Let only allowed chats within the rate limit through."""
        chat = update.effective_chat
        chat_id = chat.id if chat is not None else None
        verdict = session.guard.check(chat_id, session.chats(), session.clock())
        if verdict is Verdict.OBEY:
            return
        if verdict is Verdict.SLOW_DOWN:
            await reply(update, SLOW_DOWN)
        raise ApplicationHandlerStop

    return guard


async def _on_error(update: object, context: Context) -> None:
    """Log a handler's failure (the token is masked), and tell the chat it failed."""
    error = context.error
    if error is None:
        return
    if isinstance(error, TelegramError):  # the Bot API failed: the send is lost, not retried
        logger.warning("telegram: answering an update failed: %s", error_text(error))
        return
    logger.error("telegram: handling an update failed: %s", error_text(error), exc_info=error)
    if isinstance(update, Update):
        try:
            await reply(update, "that failed; the watcher's log says why")
        except TelegramError as exc:
            logger.warning("telegram: answering an update failed: %s", error_text(exc))
