"""The bot's connection to the Bot API, and how its token is kept out of every text.

Telegram puts the token in the URL path (``{root}/bot{token}/{method}``), and libraries print
URLs: httpx logs each request at INFO, python-telegram-bot's ``InvalidToken`` quotes the token
and its ``Bot`` shows it in ``repr``. So python-telegram-bot is only ever given
:data:`PLACEHOLDER` as the token; :class:`TokenRequest`, the one place requests leave the
process, puts the real token into the URL on the way out. What is left, the request URL in
httpx's own log lines, is masked by :class:`TokenFilter` on the loggers of httpx, httpcore,
python-telegram-bot, asyncio and the bot itself (:func:`masked_logging`).

:class:`ApiHealth` turns the Bot API's failures (5xx, connection refused, timeouts, a rejected
token) into one log line per distinct problem and one when it works again; python-telegram-bot's
polling loop retries them with its own backoff (1 s growing to 30 s). A 409 Conflict (another
program polls with this token: Telegram ends one ``getUpdates`` when the next arrives, so two
pollers keep ending each other's) comes and goes between successful polls; it is logged at most
once per :data:`CONFLICT_LOG_EVERY` seconds, naming the likely cause, and its end once no
conflict has been seen for that long.

python-telegram-bot ends its polling loop for good on a rejected token (401/404 on
``getUpdates``), leaving the bot deaf until a restart; :class:`TokenRequest` reports that answer
as a network error (:data:`REJECTED`), which the loop retries like any outage. It also
tells :class:`ApiHealth` about a ``getUpdates`` that timed out, which the loop retries at once
without telling the ``error_callback``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import BaseRequest, HTTPXRequest, RequestData

__all__ = [
    "CONFLICT_LOG_EVERY",
    "MASK",
    "PLACEHOLDER",
    "REJECTED",
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
#: Seconds between two log lines about 409 Conflict (and without one before its end is told).
CONFLICT_LOG_EVERY = 60.0
_CONFLICT = (
    "409 Conflict: another program is polling getUpdates with this bot token, and Telegram"
    " lets only one poll. Most likely a second watcher was started with the same token on"
    " another database (instances sharing one PostgreSQL database take turns by themselves),"
    " or another bot program uses this token: stop it or give it a token of its own"
)
_WEBHOOK = (
    "409 Conflict: a webhook is set for this bot token (by another program), and getUpdates"
    " cannot poll while it is; the bot deletes it when it starts"
)
#: The text of the network error a 401 or 404 to ``getUpdates`` is raised as: the polling loop
#: retries it like an outage (an :class:`~telegram.error.InvalidToken` would end it for good).
REJECTED = "the Bot API rejected the token (401/404): check control.telegram.token"


def _rejected(exc: BaseException) -> bool:
    return isinstance(exc, InvalidToken) or (isinstance(exc, NetworkError) and str(exc) == REJECTED)


def error_text(exc: BaseException, token: str = "") -> str:
    """One line about a Bot API failure, with ``token`` masked."""
    if isinstance(exc, Conflict):
        text = _WEBHOOK if "webhook" in str(exc).lower() else _CONFLICT
    elif _rejected(exc):
        text = REJECTED
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
    """Logs Bot API trouble once per distinct problem and its end once; a 409 Conflict at most
    once per ``conflict_every`` seconds (see the module).

    Args:
        token: masked in every text.
        conflict_every: seconds between two log lines about 409 Conflict.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        token: str,
        *,
        conflict_every: float = CONFLICT_LOG_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = token
        self.conflict_every = conflict_every
        self._clock = clock
        self.failing: str | None = None
        self.failures = 0
        self.conflicts = 0
        self._conflict_seen: float | None = None  # the last 409 (kept apart from ``failing``)
        self._conflict_told: float | None = None  # the last line about one
        self._untold = 0  # 409s since that line

    def __repr__(self) -> str:
        state = self.failing or ("409 Conflict" if self._conflict_seen is not None else "ok")
        return f"<ApiHealth {state}>"

    def failed(self, what: str, exc: BaseException) -> None:
        """A call failed (it will be retried)."""
        self.failures += 1
        if isinstance(exc, Conflict):
            self._conflict(what, exc)
            return
        text = f"{what}: {error_text(exc, self._token)}"
        if text != self.failing:  # a rejected token needs the user: an error, still retried
            level = logging.ERROR if _rejected(exc) else logging.WARNING
            logger.log(level, "telegram bot api failed, retrying: %s", text)
        self.failing = text

    def polling_failed(self, exc: TelegramError) -> None:
        """python-telegram-bot's ``error_callback`` for the polling loop (must not raise: an
        exception here would end the loop)."""
        try:
            self.failed("getUpdates", exc)
        except Exception:  # logging itself failed; the loop must go on
            logger.debug("telegram: reporting a polling failure failed", exc_info=True)

    def worked(self) -> None:
        """A call answered 2xx (between two 409s polls work too: a conflict ends once none
        was seen for ``conflict_every`` seconds)."""
        if self.failing is not None:
            logger.info("telegram bot api works again")
            self.failing = None
        seen = self._conflict_seen
        if seen is not None and self._clock() - seen >= self.conflict_every:
            self._conflict_seen = self._conflict_told = None
            self._untold = 0
            logger.info("telegram bot api: no 409 Conflict for %g s", self.conflict_every)

    def _conflict(self, what: str, exc: BaseException) -> None:
        now = self._clock()
        self.conflicts += 1
        self._conflict_seen = now
        told = self._conflict_told
        if told is not None and now - told < self.conflict_every:
            self._untold += 1
            return
        more = f"; {self._untold} more since the last report" if self._untold else ""
        logger.warning(
            "telegram bot api: %s: %s (retrying; reported at most once every %g s%s)",
            what, error_text(exc, self._token), self.conflict_every, more,
        )  # fmt: skip
        self._conflict_told, self._untold = now, 0


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
        polling = url.endswith("/getUpdates")
        try:
            code, payload = await super().do_request(
                real, method, request_data, read_timeout, write_timeout, connect_timeout,
                pool_timeout,
            )  # fmt: skip
        except TelegramError as exc:
            if polling and isinstance(exc, TimedOut):  # the loop retries it at once, untold
                self._health.failed("getUpdates", exc)
            if self.__token in str(exc):
                raise NetworkError(str(exc).replace(self.__token, MASK)) from None
            raise
        if 200 <= code < 300:
            self._health.worked()
        elif polling and code in (401, 404):
            raise NetworkError(REJECTED)
        return code, payload
