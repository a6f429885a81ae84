"""The bot's life: poll only while this instance runs the service, retry the Bot API forever.

:class:`TelegramFace` watches :attr:`FaceHost.service <watcher.faces.host.FaceHost.service>`.
While a service runs here (the active instance; on SQLite always), it starts a
python-telegram-bot application in the service's event loop (``initialize()``, ``start()``,
``updater.start_polling()``; never ``run_polling()``, which would own the loop), opens a read
model on the service's database and attaches the ``bot`` notify target to the service's outbox
sender. When the service stops (SIGTERM, or the lock was lost to another instance) it detaches,
stops polling and shuts the application down, so a standby never polls: Telegram allows one
poller per token (a second one gets 409 Conflict).

A Bot API that fails (5xx, refused connections, timeouts, a rejected token, 409) is retried with
backoff, at start here and while polling by python-telegram-bot's loop (see
:mod:`~watcher.faces.telegram.wire` for what it would otherwise give up on, and how a 409 is
logged); it never stops the feed, the store or the other targets: the bot runs in a task of its
own, the outbox retries the ``bot`` target's deliveries, and stopping waits at most
:data:`STOP_GRACE` seconds for the Bot API (a SIGTERM'd active then releases its lock without
waiting for Telegram).

Updates across a takeover. Telegram keeps every update until a ``getUpdates`` with a higher
``offset`` confirms it. The bot polls without ``drop_pending_updates``, so what was sent while
no instance polled (between a SIGKILL and the takeover) is answered by the new active.
python-telegram-bot confirms a batch with its next ``getUpdates``, sent as soon as the batch is
queued, and once more when it stops: a SIGTERM'd active stops the bot before it releases its
lock, so nothing is answered twice. (An active that lost its lock stops the bot once its service
has stopped; a standby that takes over sooner polls alongside it for that moment.) After a
SIGKILL it is Telegram's at-least-once delivery: an update the dead instance had fetched but not
yet confirmed is delivered again to the new active and answered again (and one it had confirmed
but not yet handled is lost: ask again). A repeated Confirm press cannot buy twice: a Confirm is
single-use and its order waits only in the memory of the instance that asked
(:mod:`~watcher.faces.telegram.confirm`), so the new active answers it "expired" and places
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import timedelta

from telegram.error import TelegramError

from watcher.faces.host import FaceHost, ServiceView
from watcher.faces.telegram.bot import ALLOWED_UPDATES, BotApp, build_application
from watcher.faces.telegram.notifier import BotNotifier
from watcher.faces.telegram.session import BotSession
from watcher.faces.telegram.wire import ApiHealth, masked_logging
from watcher.rules.control import BOT_TARGET

__all__ = ["DEFAULT_API_ROOT", "POLL_TIMEOUT", "STOP_GRACE", "TelegramFace", "retry_delays"]

logger = logging.getLogger("watcher.telegram")

#: Telegram's own Bot API (``WATCHER_TELEGRAM_API_URL`` overrides it).
DEFAULT_API_ROOT = "https://api.telegram.org"
#: Seconds one ``getUpdates`` long poll waits for news.
POLL_TIMEOUT = 30.0
#: Seconds between two looks at whether the service runs.
WATCH_INTERVAL = 0.2
#: Seconds stopping may wait for the Bot API (the last poll confirms the fetched updates).
STOP_GRACE = 3.0


def retry_delays(*, initial: float = 1.0, maximum: float = 30.0) -> Iterator[float]:
    """1, 2, 4 ... seconds, capped at ``maximum``: the waits between attempts to start."""
    delay = initial
    while True:
        yield delay
        delay = min(delay * 2, maximum)


class TelegramFace:
    """The Telegram bot, as an async context manager (entered on the faces' stack).

    Args:
        host: where the running service is found.
        token: the bot token (kept here and in the transport only).
        api_root: the Bot API root; requests go to ``{api_root}/bot{token}/{method}``.
        poll_timeout: seconds of one long poll.
        retry_max: the longest wait between two attempts to start.
        stop_grace: the longest stopping waits for the Bot API.
    """

    def __init__(
        self,
        host: FaceHost,
        *,
        token: str,
        api_root: str = DEFAULT_API_ROOT,
        poll_timeout: float = POLL_TIMEOUT,
        retry_max: float = 30.0,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        self.host = host
        self.api_root = api_root
        self.poll_timeout = poll_timeout
        self.retry_max = retry_max
        self.stop_grace = stop_grace
        self.session = BotSession(host)
        self.health = ApiHealth(token)
        self.__token = token
        self._task: asyncio.Task[None] | None = None
        self._masking = contextlib.ExitStack()

    def __repr__(self) -> str:
        state = "running" if self._task is not None and not self._task.done() else "stopped"
        return f"<TelegramFace {state} {self.api_root} {self.health!r}>"

    async def __aenter__(self) -> TelegramFace:
        self._masking.enter_context(masked_logging(self.__token))
        self._task = asyncio.create_task(self._run(), name="telegram-bot")
        return self

    async def __aexit__(self, *exc: object) -> None:
        task, self._task = self._task, None
        try:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            self._masking.close()

    # Private methods

    async def _run(self) -> None:
        """Serve each service that runs here, one after the other."""
        while True:
            service = self.host.service
            if service is None or service.pipeline.sender is None:
                await asyncio.sleep(WATCH_INTERVAL)
                continue
            try:
                await self._serve(service)
            except Exception:  # a bug must not take the bot down for good, nor the service
                logger.exception("telegram bot failed; starting it again")
                await asyncio.sleep(self.retry_max)

    async def _serve(self, service: ServiceView) -> None:
        """Run the bot while ``service`` runs here."""
        app = build_application(
            self.session, token=self.__token, api_root=self.api_root, health=self.health
        )
        self.session.read_model = await service.backend.read_model()
        try:
            if await self._start(app, service):
                await self._attached(app, service)
        finally:
            await self._stop(app)
            model, self.session.read_model = self.session.read_model, None
            await model.close()

    async def _start(self, app: BotApp, service: ServiceView) -> bool:
        """Start polling, retrying with backoff; False if the service stopped first."""
        delays = retry_delays(maximum=self.retry_max)
        while self.host.service is service:
            try:
                await app.initialize()
                await app.bot.delete_webhook()  # here, so a failure is retried quietly
                if not app.running:
                    await app.start()
                await self._poll(app)
            except TelegramError as exc:
                self.health.failed("start", exc)
            else:
                chats = len(self.session.chats())
                logger.info("telegram bot polling for %d chat%s", chats, "" if chats == 1 else "s")
                return True
            await asyncio.sleep(next(delays))
        return False

    async def _poll(self, app: BotApp) -> None:
        updater = app.updater
        assert updater is not None  # built with the default updater
        await updater.start_polling(
            timeout=timedelta(seconds=self.poll_timeout),
            allowed_updates=list(ALLOWED_UPDATES),
            error_callback=self.health.polling_failed,
        )

    async def _attached(self, app: BotApp, service: ServiceView) -> None:
        """Deliver the ``bot`` target through this bot until the service stops."""
        sender = service.pipeline.sender
        assert sender is not None  # _run waits for it
        sender.attach(BOT_TARGET, BotNotifier(app.bot, self.session.chats, self.session.refs))
        try:
            # FaceHost.service is a plain attribute set by the app: no event to wait on
            while self.host.service is service:  # noqa: ASYNC110
                await asyncio.sleep(WATCH_INTERVAL)
        finally:
            sender.detach(BOT_TARGET)

    async def _stop(self, app: BotApp) -> None:
        """Stop polling and shut the application down (each step only if it was reached),
        waiting at most :attr:`stop_grace` seconds for the Bot API."""
        try:
            async with asyncio.timeout(self.stop_grace):
                await self._wind_down(app)
        except TimeoutError:
            logger.warning(
                "telegram bot: the Bot API did not answer within %g s while stopping; stopped"
                " without confirming the last updates (Telegram may deliver them again)",
                self.stop_grace,
            )
        with contextlib.suppress(TelegramError, RuntimeError):
            await app.shutdown()
        with contextlib.suppress(TelegramError, RuntimeError):
            await app.bot.shutdown()  # still open if the grace ran out: close the transports
        logger.info("telegram bot stopped")

    @staticmethod
    async def _wind_down(app: BotApp) -> None:
        if app.updater is not None and app.updater.running:
            with contextlib.suppress(TelegramError, RuntimeError):
                await app.updater.stop()  # its last getUpdates confirms what was fetched
        if app.running:
            with contextlib.suppress(TelegramError, RuntimeError):
                await app.stop()
