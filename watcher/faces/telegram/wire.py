"""The bot's connection to the Bot API, and how its token is kept out of every text.

Telegram puts the token in the URL path (``{root}/bot{token}/{method}``), and libraries print
URLs: httpx logs each request at INFO, python-telegram-bot's ``InvalidToken`` quotes the token
and its ``Bot`` shows it in ``repr``. So python-telegram-bot is only ever given
:data:`PLACEHOLDER` as the token; :class:`TokenRequest`, the one place requests leave the
process, puts the real token into the URL on the way out. What is left, the request URL in
httpx's own log lines, is masked by :class:`TokenFilter` on the loggers of httpx, httpcore,
python-telegram-bot, asyncio and the bot itself (:func:`masked_logging`).

:class:`ApiHealth` turns the Bot API's failures (5xx, connection refused, timeouts, 409 Conflict
when another process polls with the same token) into one log line per distinct problem and one
when it works again; python-telegram-bot retries them with its own backoff.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterator
from typing import Any

from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import BaseRequest, HTTPXRequest, RequestData

__all__ = [
    "MASK",
    "PLACEHOLDER",
    "ApiHealth",
    "TokenFilter",
    "TokenRequest",
    "error_text",
    "masked_logging",
]

logger = logging.getLogger("watcher.telegram")

#: The token python-telegram-bot sees: a valid shape, no secret.
PLACEHOLDER = "0:watcher-token-hidden"
#: What the token is replaced with in text.
MASK = "***"
#: Loggers that may see a request URL or an exception about one.
_GUARDED = ("httpx", "httpcore", "telegram", "asyncio", "watcher.telegram")


def error_text(exc: BaseException, token: str = "") -> str:
    """One line about a Bot API failure, with ``token`` masked."""
    if isinstance(exc, Conflict):
        text = "409 Conflict: another process is polling with this bot token (only one may)"
    elif isinstance(exc, InvalidToken):
        text = "the Bot API rejected the token (401/404): check control.telegram.token"
    elif isinstance(exc, RetryAfter):
        text = f"flood control: retry after {exc.retry_after} s"
    elif isinstance(exc, TimedOut):
        text = "timed out"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text.replace(token, MASK) if token else text


class TokenFilter(logging.Filter):
    """Replaces the token with ``***`` in a record's message and exception text."""

    def __init__(self, token: str) -> None:
        super().__init__("")
        self._token = token

    def __repr__(self) -> str:
        return "<TokenFilter>"

    def filter(self, record: logging.LogRecord) -> bool:
        token = self._token
        message = record.getMessage()
        if record.exc_info:
            detail = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            if token in detail:  # every formatter, JSON included, then sees the masked text
                message, record.exc_info, record.exc_text = f"{message}\n{detail}", None, None
        if token in message:
            record.msg, record.args = message.replace(token, MASK), ()
        return True


@contextlib.contextmanager
def masked_logging(token: str) -> Iterator[None]:
    """Mask ``token`` in every record of the guarded loggers while inside.

    A logger's filters only see records logged on that very logger, so the filter goes on
    each existing logger of the guarded families (python-telegram-bot creates all of its
    loggers when imported).
    """
    mask = TokenFilter(token)
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if any(name == g or name.startswith(f"{g}.") for g in _GUARDED)
    ]
    loggers = [logging.getLogger(name) for name in {*names, *_GUARDED}]
    for each in loggers:
        each.addFilter(mask)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(mask)


class ApiHealth:
    """Logs Bot API trouble once per distinct problem, and its end once."""

    def __init__(self, token: str) -> None:
        self._token = token
        self.failing: str | None = None
        self.failures = 0

    def __repr__(self) -> str:
        return f"<ApiHealth {'failing: ' + self.failing if self.failing else 'ok'}>"

    def failed(self, what: str, exc: BaseException) -> None:
        """A call failed (it will be retried)."""
        text = f"{what}: {error_text(exc, self._token)}"
        self.failures += 1
        if text != self.failing:  # a rejected token needs the user: an error, still retried
            level = logging.ERROR if isinstance(exc, InvalidToken) else logging.WARNING
            logger.log(level, "telegram bot api failed, retrying: %s", text)
        self.failing = text

    def polling_failed(self, exc: TelegramError) -> None:
        """python-telegram-bot's ``error_callback`` for the polling loop (must not raise)."""
        self.failed("getUpdates", exc)

    def worked(self) -> None:
        """A call answered 2xx."""
        if self.failing is not None:
            logger.info("telegram bot api works again")
            self.failing = None


class TokenRequest(HTTPXRequest):
    """python-telegram-bot's HTTPX transport, putting the real token into each URL.

    Args:
        token: the bot token (only this object and the URL on the wire carry it).
        health: told about every answer and failure.
        **options: :class:`HTTPXRequest` options (timeouts, pool size).
    """

    def __init__(self, token: str, health: ApiHealth, **options: Any) -> None:
        super().__init__(**options)
        self.__token = token
        self._health = health

    def __repr__(self) -> str:
        return "<TokenRequest>"

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send with the real token; an error's text never carries it."""
        real = url.replace(f"/bot{PLACEHOLDER}/", f"/bot{self.__token}/", 1)
        try:
            code, payload = await super().do_request(
                real, method, request_data, read_timeout, write_timeout, connect_timeout,
                pool_timeout,
            )  # fmt: skip
        except TelegramError as exc:
            if self.__token in str(exc):
                raise NetworkError(str(exc).replace(self.__token, MASK)) from None
            raise
        if 200 <= code < 300:
            self._health.worked()
        return code, payload
