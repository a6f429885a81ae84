"""The one task that delivers the outbox through a :class:`~watcher.notify.ports.Notifier`.

The sender wakes when the app records alerts (:meth:`Sender.wake`) and when a retry is due,
claims the due deliveries from the :class:`~watcher.store.ports.AlertStore`, and sends one
message per target through the notifier (Apprise unless told otherwise): deliveries for a target
that was sent to less than ``coalesce_window`` seconds ago wait for the end of that window and
then go together as one message ("3 alerts"). Each row is
marked from that one result. FAILURE/TIMEOUT is retried after 2 s, 4 s, 8 s ... capped at
``max_backoff`` and given up after ``give_up_after``; a URL Apprise cannot load, a NOMATCH or a
target name missing from the configuration is a ``config_error`` and is never retried.

Delivery is at least once: a crash between Apprise's answer and the database update re-sends
that message after the restart. Within one process, a target with several URLs is re-sent only
to the URLs that failed.

A target without URLs can be delivered by a :class:`~watcher.notify.ports.TargetNotifier`
attached by name (:meth:`Sender.attach`; the Telegram bot attaches ``bot`` while it runs). Its
deliveries take the same path (claimed, coalesced, marked, retried); those of an ``awaiting``
target that has nothing attached yet are retried, not given up, until it is attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from watcher.errors import StorageError
from watcher.notify.apprise_notifier import AppriseNotifier
from watcher.notify.apprise_targets import SendStatus, mask_url, normalize_targets
from watcher.notify.ports import Notifier, TargetNotifier
from watcher.store.console import log_console_alert
from watcher.store.ports import AlertStore
from watcher.store.records import DeliveryRef, PendingDelivery

__all__ = ["NOTIFY_TYPES", "Sender", "SenderStats", "compose_message", "retry_delay"]

logger = logging.getLogger("watcher.notify")

#: Apprise notify type for each alert severity.
NOTIFY_TYPES = {"info": "info", "warning": "warning", "critical": "failure"}
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
DAY = 86_400.0
#: How long the loop pauses after an unexpected error (e.g. the database is locked).
ERROR_PAUSE = 1.0
#: Extra seconds granted at shutdown, beyond the send timeout, to record results in flight.
SHUTDOWN_MARGIN = 2.0


@dataclass(slots=True)
class SenderStats:
    """Counters of delivery rows (one alert × one target) since the sender started."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    config_errors: int = 0


def retry_delay(attempts: int, *, initial: float = 2.0, maximum: float = 60.0) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: 2, 4, 8 ... capped at maximum."""
    exponent = min(max(attempts, 1) - 1, 62)
    return min(initial * math.pow(2, exponent), maximum)


def compose_message(items: Sequence[PendingDelivery]) -> tuple[str, str, str]:
    """Title, body and Apprise notify type of one message carrying ``items``.

    One alert is sent as is; several become ``"N alerts"`` with one paragraph per alert, and
    the message takes the most severe alert's notify type.
    """
    worst = max(items, key=lambda item: _SEVERITY_RANK.get(item.severity, 0)).severity
    notify_type = NOTIFY_TYPES.get(worst, "info")
    if len(items) == 1:
        return items[0].title, items[0].body, notify_type
    body = "\n\n".join(f"[{item.severity}] {item.title}\n{item.body}" for item in items)
    return f"{len(items)} alerts", body, notify_type


class Sender:
    """Deliver due outbox rows through a notifier, one task, as an async context manager.

    Args:
        outbox: the alert store whose deliveries are claimed and settled.
        targets: target name → notification URLs (a bare string is one URL).
        coalesce_window: at most one message per target per this many seconds; what becomes
            due meanwhile is sent together when the window ends.
        max_backoff: the longest wait between two attempts (≤ 60 s keeps "retried within a
            minute").
        timeout: the longest one Apprise send may take before it counts as TIMEOUT.
        clock: Unix time in seconds (patched in tests).
        min_backoff: the wait after the first failed attempt; it doubles after each failure.
        give_up_after: seconds after recording an alert when a failed delivery becomes
            ``failed`` instead of being retried.
        notifier: what sends the messages (default: Apprise with ``timeout``).
        awaiting: targets without URLs whose :class:`TargetNotifier` is attached later (the
            chat bot's ``bot``): until then their deliveries are retried, not config errors.
    """

    def __init__(
        self,
        outbox: AlertStore,
        targets: Mapping[str, Sequence[str] | str],
        *,
        coalesce_window: float = 2.0,
        max_backoff: float = 60.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        min_backoff: float = 2.0,
        give_up_after: float = DAY,
        notifier: Notifier | None = None,
        awaiting: Collection[str] = (),
    ) -> None:
        self._outbox = outbox
        self._notifier = notifier if notifier is not None else AppriseNotifier(timeout=timeout)
        self._targets = normalize_targets(targets)
        self._awaiting = frozenset(awaiting)
        self._attached: dict[str, TargetNotifier] = {}
        self._window = coalesce_window
        self._max_backoff = max_backoff
        self._min_backoff = min_backoff
        self._timeout = timeout
        self._clock = clock
        self._give_up_ms = int(give_up_after * 1000)
        self._masked: dict[str, str] = {}
        self._done_urls: dict[DeliveryRef, set[str]] = {}
        self._last_sent: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.stats = SenderStats()

    def __repr__(self) -> str:
        state = "running" if self._task is not None and not self._task.done() else "stopped"
        return f"<Sender {state} targets={sorted(self._targets)} stats={self.stats}>"

    async def __aenter__(self) -> Sender:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="watcher-notify-sender")
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop after the sends in flight are answered and recorded (or ``timeout`` passed)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            # A send cut short here would be sent again after a restart: let it finish.
            await asyncio.wait({task}, timeout=self._timeout + SHUTDOWN_MARGIN)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # Public methods

    def wake(self) -> None:
        """Look at the outbox now (call it from the event loop after ``Outbox.record``)."""
        self._wake.set()

    def update_targets(
        self, targets: Mapping[str, Sequence[str] | str], *, awaiting: Collection[str] = ()
    ) -> None:
        """Replace the target configuration (hot reload); open deliveries use the new one."""
        self._targets = normalize_targets(targets)
        self._awaiting = frozenset(awaiting)
        urls = {url for group in self._targets.values() for url in group}
        self._notifier.retain(urls)
        self._masked = {url: masked for url, masked in self._masked.items() if url in urls}
        self.wake()

    def attach(self, target: str, notifier: TargetNotifier) -> None:
        """Deliver ``target`` through ``notifier`` from now on (its due deliveries at once)."""
        self._attached[target] = notifier
        self.wake()

    def detach(self, target: str) -> None:
        """Stop delivering ``target`` through its notifier (its deliveries wait again)."""
        self._attached.pop(target, None)

    # Private methods

    async def _run(self) -> None:
        failing: str | None = None  # the database error being retried, logged once
        while not self._stopping:
            try:
                delay = await self._step()
                if failing is not None:
                    logger.info("alert sender can use the database again")
                    failing = None
            except StorageError as exc:
                # Disk full, read-only file, lock held: expected, retried every ERROR_PAUSE;
                # one line per distinct error, not a traceback each second.
                if str(exc) != failing:
                    logger.error("alert sender cannot use the database, retrying: %s", exc)
                failing = str(exc)
                delay = ERROR_PAUSE
            except Exception as exc:
                logger.exception("alert sender failed, trying again: %s", exc)
                delay = ERROR_PAUSE
            await self._sleep(delay)

    async def _sleep(self, delay: float | None) -> None:
        if delay is not None and delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()
        self._wake.clear()

    async def _step(self) -> float | None:
        """Send what is due; return seconds until more may be due (None: until woken)."""
        now = self._clock()
        due = await self._outbox.due(int(now * 1000))
        groups: dict[str, list[PendingDelivery]] = {}
        for item in due:
            groups.setdefault(item.target, []).append(item)
        ready = {t: items for t, items in groups.items() if self._release(t) <= now}
        if ready:
            # Let every send finish (a cancelled send would go out twice), then report errors.
            results = await asyncio.gather(
                *(self._deliver(t, items) for t, items in ready.items()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return 0.0
        wake_at = [self._release(target) for target in groups]
        next_ms = await self._outbox.next_due_ms()
        if next_ms is not None and (next_ms > now * 1000 or not groups):
            wake_at.append(next_ms / 1000)
        return max(0.0, min(wake_at) - now) if wake_at else None

    def _release(self, target: str) -> float:
        """When the target may get its next message."""
        return self._last_sent.get(target, -math.inf) + self._window

    async def _deliver(self, target: str, items: list[PendingDelivery]) -> None:
        refs = [item.ref for item in items]
        self._last_sent[target] = self._clock()
        status, error = await self._send_target(target, items)
        now_ms = int(self._clock() * 1000)
        if status is SendStatus.DELIVERED:
            await self._outbox.mark_delivered(refs, now_ms=now_ms)
            self.stats.sent += len(refs)
            logger.info("delivered %d alert(s) to %r", len(refs), target)
        elif status is SendStatus.CONFIG_ERROR:
            await self._outbox.mark_config_error(refs, error=error, now_ms=now_ms)
            self.stats.config_errors += len(refs)
            logger.error("cannot deliver %d alert(s) to %r: %s", len(refs), target, error)
            for item in items:
                log_console_alert(item.severity, item.title, item.body)
        else:
            await self._fail(target, items, error, now_ms)
        if status is not SendStatus.FAILED:
            for ref in refs:
                self._done_urls.pop(ref, None)

    async def _fail(
        self, target: str, items: list[PendingDelivery], error: str, now_ms: int
    ) -> None:
        refs = [i.ref for i in items if now_ms - i.created_ms >= self._give_up_ms]
        if refs:
            await self._outbox.mark_failed(refs, error=error, now_ms=now_ms)
            self.stats.failed += len(refs)
            logger.error("gave up delivering %d alert(s) to %r: %s", len(refs), target, error)
            for ref in refs:
                self._done_urls.pop(ref, None)
        for item in items:
            if item.ref in refs:
                continue
            delay = retry_delay(
                item.attempts + 1, initial=self._min_backoff, maximum=self._max_backoff
            )
            next_ms = now_ms + int(delay * 1000)
            await self._outbox.mark_retry(
                [item.ref], next_attempt_ms=next_ms, error=error, now_ms=now_ms
            )
            self.stats.retried += 1
            logger.info(
                "delivery of alert %d to %r failed (attempt %d), retrying in %.1f s: %s",
                item.alert_id, target, item.attempts + 1, delay, error,
            )  # fmt: skip

    async def _send_target(
        self, target: str, items: list[PendingDelivery]
    ) -> tuple[SendStatus, str]:
        """Send one message to every URL of ``target``; return the combined status and error."""
        attached = self._attached.get(target)
        if attached is not None:
            return await _deliver_attached(target, attached, items)
        urls = self._targets.get(target)
        if urls is None and target in self._awaiting:
            return SendStatus.FAILED, f"target {target!r} is not connected yet"
        if urls is None:
            return SendStatus.CONFIG_ERROR, f"unknown target {target!r}"
        usable = [url for url in urls if await self._load(target, url)]
        if not usable:
            masked = ", ".join(self._mask(url) for url in urls) or "no url"
            return SendStatus.CONFIG_ERROR, f"apprise cannot load {masked}"
        refs = [item.ref for item in items]
        pending = [
            url for url in usable if not all(url in self._done_urls.get(ref, ()) for ref in refs)
        ]
        title, body, notify_type = compose_message(items)
        outcomes = await self._notifier.send(
            pending, title=title, body=body, notify_type=notify_type
        )
        for url, outcome in zip(pending, outcomes, strict=True):
            if outcome.status is SendStatus.DELIVERED:
                for ref in refs:
                    self._done_urls.setdefault(ref, set()).add(url)
        failed = [o for o in outcomes if o.status is not SendStatus.DELIVERED]
        errors = "; ".join(f"{o.service or 'apprise'}: {o.detail}" for o in failed)
        if any(o.status is SendStatus.FAILED for o in failed):
            return SendStatus.FAILED, errors
        if failed and len(failed) == len(usable):
            return SendStatus.CONFIG_ERROR, errors
        return SendStatus.DELIVERED, ""

    async def _load(self, target: str, url: str) -> bool:
        """Load one URL through the notifier; warn when it cannot be used."""
        if await self._notifier.load(url):
            return True
        logger.warning("target %r: apprise cannot load url %s, skipped", target, self._mask(url))
        return False

    def _mask(self, url: str) -> str:
        masked = self._masked.get(url)
        if masked is None:
            masked = self._masked[url] = mask_url(url)
        return masked


async def _deliver_attached(
    target: str, notifier: TargetNotifier, items: list[PendingDelivery]
) -> tuple[SendStatus, str]:
    """The attached notifier's result; an exception it should not raise is a retried failure."""
    try:
        return await notifier.deliver(items)
    except Exception as exc:
        logger.exception("target %r: its notifier failed", target)
        return SendStatus.FAILED, f"{target} notifier failed: {type(exc).__name__}"
