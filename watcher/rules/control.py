"""The ``control`` section of rules.yaml: who may steer the watcher from a phone (issue 13).

::

    control:
      telegram:
        token: ${WATCHER_TELEGRAM_BOT_TOKEN}   # from @BotFather; never shown anywhere
        chats: [987654321]                     # only these chat ids are obeyed

The token is a :class:`~pydantic.SecretStr`: hidden from ``repr``, from dumps and from every
error message (the loader reports where it is wrong, never what it is). The chats may change
while the service runs (hot reload); the token is read once, when the bot starts.

With ``control.telegram`` set, the notify target named :data:`BOT_TARGET` exists: alerts sent
to it go through the outbox like any other and are sent by the bot, with buttons.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, PlainValidator, SecretStr

from watcher.rules.fields import describe

__all__ = ["BOT_TARGET", "BotToken", "ChatIds", "Control", "TelegramControl"]

#: The notify target the Telegram bot delivers (usable in ``notify`` like any named target).
BOT_TARGET = "bot"

_TOKEN = re.compile(r"\d{1,20}:[A-Za-z0-9_-]{1,200}")
_CHAT = re.compile(r"-?\d{1,20}")
_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _kind(value: Any) -> str:
    """What a value is, without showing it (a token must never be echoed)."""
    if value is None or value == "":
        return "nothing"
    if isinstance(value, str):
        return "text of another shape"
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return "a number"
    return describe(value) if isinstance(value, bool | list | tuple | dict) else "another value"


def _bot_token(value: Any) -> SecretStr:
    """The bot token from @BotFather (``123456:ABC-DEF...``), kept secret."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    text = value.strip() if isinstance(value, str) else None
    shape = "digits, a colon, then letters, digits, '_' or '-'"
    if text == "" or value is None:
        raise ValueError(f"the bot token is empty; expected the one from @BotFather ({shape})")
    if text is None or not _TOKEN.fullmatch(text):
        raise ValueError(
            f"expected the bot token from @BotFather ({shape}), but got {_kind(value)}"
        )
    return SecretStr(text)


def _chat_ids(value: Any) -> tuple[int, ...]:
    """A non-empty list of Telegram chat ids (whole numbers; groups are negative)."""
    if not isinstance(value, list | tuple) or not value:
        seen = "an empty list" if isinstance(value, list | tuple) else describe(value)
        raise ValueError(
            f"expected a non-empty list of chat ids such as [987654321], but got {seen}"
        )
    found: dict[int, None] = {}
    for item in value:
        if isinstance(item, str) and _CHAT.fullmatch(item.strip()):
            item = int(item.strip())
        if not isinstance(item, int) or isinstance(item, bool):
            raise ValueError(
                f"expected a chat id (a whole number such as 987654321), but got"
                f" {describe(item)} in the list"
            )
        found[item] = None
    return tuple(found)


BotToken: TypeAlias = Annotated[SecretStr, PlainValidator(_bot_token)]
ChatIds: TypeAlias = Annotated[tuple[int, ...], PlainValidator(_chat_ids)]


class TelegramControl(BaseModel):
    """The Telegram bot: its token and the chats it obeys (all others get no answer)."""

    model_config = _FROZEN

    token: BotToken
    chats: ChatIds


class Control(BaseModel):
    """Ways to steer the watcher besides the command line; each is off when unset."""

    model_config = _FROZEN

    telegram: TelegramControl | None = None

    def describe(self) -> str | None:
        """One line for ``watcher check`` (``telegram bot for 1 chat``), None when off.
        Never shows the token."""
        if self.telegram is None:
            return None
        count = len(self.telegram.chats)
        return f"telegram bot for {count} chat{'' if count == 1 else 's'}"
