"""Mutes and pauses: :class:`Controls`, the one way in for the faces, and the per-alert verdict.

``/mute 1h``, ``/mute 30m KXCPI-26JAN-T0.3``, ``/mute 2h tight spread``, ``/unmute``,
``/pause`` and ``/resume`` (the Telegram bot, the dashboard) all come here. What they set is
stored (:class:`~watcher.store.control_ports.ControlStore`): a restart keeps it, and every
instance on a shared database, or another process on the same SQLite file, sees it.

The pipeline asks :meth:`Controls.verdict` about each alert it records (never on the path of a
tick that fired nothing); the answer comes from a copy in memory, re-read from the store at
most every ``max_age_s`` seconds before a recording (:meth:`Controls.refresh`) and at once
after each change made here. A held-back alert is recorded as ``suppressed`` with the reason,
never dropped:

========================  ===========  ==========  ===========
alert                     not covered  by a mute   paused only
========================  ===========  ==========  ===========
info / warning            goes out     held        held
critical                  goes out     held        goes out
========================  ===========  ==========  ===========

A mute ends by itself at ``until_ms``, compared with the alert's own time. The service's own
alerts (``feed-stale``, ``market-closed``, ``unknown-market``, ``config``, ``digest``) are
muted and paused like any rule's: a mute of everything means everything. Actions (a rule's
``action: close``) are still carried out: only the message is held back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from watcher.domain.alert import Alert
from watcher.domain.controls import PAIR, ControlState, Mute, Pause, mute_key
from watcher.errors import StorageError
from watcher.rules import RulesConfig
from watcher.store.control_ports import ControlStore
from watcher.store.ports import Backend, ReadModel

__all__ = [
    "MAX_AGE_S",
    "MAX_MUTE_S",
    "SERVICE_RULES",
    "ControlScope",
    "Controls",
    "StoredScope",
    "mute_reason",
    "stored_scope",
    "when_text",
]

logger = logging.getLogger("watcher.controls")

#: How old the copy in memory may be when an alert is recorded, in seconds.
MAX_AGE_S = 1.0
#: The rule names of the service's own alerts (:mod:`watcher.service.alerts`, the jobs).
SERVICE_RULES = frozenset({"feed-stale", "market-closed", "unknown-market", "config", "digest"})


class ControlScope(Protocol):
    """What a mute may name: the rules in force and the watched markets (the pipeline)."""

    @property
    def rules(self) -> RulesConfig: ...

    @property
    def watched(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class StoredScope:
    """A :class:`ControlScope` without a running service: the rules read from rules.yaml and
    the markets of the positions and of the stored watched events (:func:`stored_scope`)."""

    rules: RulesConfig
    watched: frozenset[str]


async def stored_scope(
    read_model: ReadModel, rules: RulesConfig, tickers: Iterable[str]
) -> StoredScope:
    """The scope of a mute made without a running service (``watcher mute``, ``watcher web``):
    ``rules``, the positions' ``tickers`` and every market of the stored watched events."""
    events = await read_model.events()
    watched = {ticker for event in events for ticker in event.tickers}
    return StoredScope(rules, frozenset(tickers) | watched)


#: The longest mute: a year (a longer one is a typo, and would overflow the dates shown).
MAX_MUTE_S = 365 * 86_400


class Controls:
    """Mutes and the pause of one database, and the verdict on each alert recorded.

    Args:
        store: the stored mutes and pause (:meth:`Backend.control_store`).
        scope: the rules in force and the watched markets (the pipeline); a mute must name one
            of them, and reasons are worded in the rules' time zone. None: any target, UTC.
        clock: Unix time in seconds (tests patch it).
        max_age_s: how old the copy in memory may be when :meth:`refresh` is called.
    """

    def __init__(
        self,
        store: ControlStore,
        *,
        scope: ControlScope | None = None,
        clock: Callable[[], float] = time.time,
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self.store = store
        self.scope = scope
        self.clock = clock
        self.max_age_s = max_age_s
        self._state = ControlState()
        self._read_at: float | None = None  # time.monotonic() of the last read

    @classmethod
    async def open(
        cls,
        backend: Backend,
        *,
        scope: ControlScope | None = None,
        clock: Callable[[], float] = time.time,
        max_age_s: float = MAX_AGE_S,
    ) -> Controls:
        """Open ``backend``'s control store and read it (close with :meth:`close`, or use
        ``async with``)."""
        store = await backend.control_store()
        controls = cls(store, scope=scope, clock=clock, max_age_s=max_age_s)
        try:
            await controls.reload()
        except BaseException:
            await store.close()
            raise
        return controls

    def __repr__(self) -> str:
        state = self._state
        return f"<Controls mutes={len(state.mutes)} paused={state.paused is not None}>"

    async def __aenter__(self) -> Controls:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Public methods: what the faces call

    async def mute(
        self, duration_s: float, target: str | None = None, *, by: str, now_ms: int | None = None
    ) -> Mute:
        """Hold back the alerts of ``target`` for ``duration_s`` seconds (replacing a mute of
        the same target); None (or blank) mutes everything.

        ``target`` is a watched market's ticker, a rule's name (the service's own alerts'
        too) or ``rule@TICKER`` (that rule on that market), kept as given, matched regardless
        of case.

        Raises:
            ValueError: ``duration_s`` is not a positive number of at most 365 days, or
                ``target`` names no rule
                in force and no watched market.
            StorageError: the database cannot be written.
        """
        if not (isinstance(duration_s, int | float) and math.isfinite(duration_s)):
            raise ValueError(f"a mute lasts a number of seconds, not {duration_s!r}")
        if duration_s <= 0:
            raise ValueError(f"a mute must last more than 0 seconds, not {duration_s}")
        if duration_s > MAX_MUTE_S:
            raise ValueError("a mute lasts at most 365 days (unmute it, or mute it again later)")
        target = self._target(target)
        now = self._now(now_ms)
        mute = Mute(target, now + max(1, round(duration_s * 1000)), by, now)
        await self.store.purge_mutes(now)
        await self.store.put_mute(mute)
        await self.reload()
        logger.info("%s", mute_reason(mute, self.tz, now))
        return mute

    async def unmute(self, target: str | None = None, *, now_ms: int | None = None) -> int:
        """Lift the mute of ``target`` (and the mutes of a rule on that market, or of that
        rule on a market); None lifts every mute. Returns how many mutes in force were lifted.
        """
        await self.store.purge_mutes(self._now(now_ms))  # ended ones are not counted
        await self.reload()
        if target is None or not target.strip():
            removed = await self.store.delete_mutes(None)
        else:
            keys = _keys_of(self._state.mutes, target.strip())
            removed = await self.store.delete_mutes(keys)
        await self.reload()
        logger.info("unmuted %s: %d mute(s) lifted", target or "everything", removed)
        return removed

    async def pause(self, *, by: str, now_ms: int | None = None) -> None:
        """Hold back every non-critical alert until :meth:`resume` (a pause in force stays)."""
        if await self.store.pause(Pause(by, self._now(now_ms))):
            logger.info("paused by %s: non-critical alerts are held back", by)
        await self.reload()

    async def resume(self, *, now_ms: int | None = None) -> bool:
        """Lift the pause; True when alerts were paused."""
        lifted = await self.store.resume()
        await self.reload()
        if lifted:
            logger.info("resumed: alerts go out again")
        return lifted

    async def active(self, now_ms: int | None = None) -> ControlState:
        """The mutes still in force at ``now_ms`` (soonest end first) and the pause, as
        stored now (re-read)."""
        await self.reload()
        return self._state.at(self._now(now_ms))

    # Public methods: what the pipeline calls

    def verdict(self, alert: Alert) -> str | None:
        """Why ``alert`` must be recorded as suppressed (``muted until 14:05 UTC by
        telegram:987``, ``paused by web since 13:02 UTC``), or None when it goes out.

        Pure and synchronous: decided from the copy in memory (see :meth:`refresh`).
        """
        holder = self._state.holding(alert)
        if holder is None:
            return None
        tz = self.tz
        if isinstance(holder, Mute):
            return mute_reason(holder, tz, alert.at_ms)
        return f"paused by {holder.by} since {when_text(holder.since_ms, tz, alert.at_ms)}"

    async def refresh(self) -> None:
        """Re-read the store when the copy in memory is older than ``max_age_s`` (another
        process or instance may have changed it). A failed read keeps the copy (logged)."""
        read_at = self._read_at
        if read_at is not None and time.monotonic() - read_at < self.max_age_s:
            return
        try:
            await self.reload()
        except StorageError as exc:
            self._read_at = time.monotonic()  # try again after max_age_s, not on every alert
            logger.warning("cannot re-read mutes and pauses (keeping the last known): %s", exc)

    async def reload(self) -> None:
        """Re-read the store now.

        Raises:
            StorageError: the database cannot be read.
        """
        self._state = await self.store.load()
        self._read_at = time.monotonic()

    async def close(self) -> None:
        """Release the store (idempotent)."""
        await self.store.close()

    @property
    def tz(self) -> tzinfo:
        """The time zone reasons are worded in: the rules', else UTC."""
        return self.scope.rules.tz if self.scope is not None else UTC

    # Private methods

    def _now(self, now_ms: int | None) -> int:
        return int(self.clock() * 1000) if now_ms is None else now_ms

    def _target(self, target: str | None) -> str | None:
        """``target`` stripped (None when blank), checked against the scope."""
        text = (target or "").strip()
        if not text:
            return None
        if self.scope is not None and not self._known(text):
            raise ValueError(f"{text!r} is neither a watched market nor a rule")
        return text

    def _known(self, text: str) -> bool:
        scope = self.scope
        assert scope is not None
        rules = {rule.name.casefold() for rule in scope.rules.rules} | SERVICE_RULES
        markets = {ticker.casefold() for ticker in scope.watched}
        wanted = text.casefold()
        if wanted in rules or wanted in markets:
            return True
        rule, pair, ticker = wanted.rpartition(PAIR)
        return bool(pair) and rule.strip() in rules and ticker.strip() in markets


def mute_reason(mute: Mute, tz: tzinfo, at_ms: int | None = None) -> str:
    """``muted until 14:05 UTC by telegram:987`` (everything), or ``muted KXCPI-26JAN-T0.3
    until ...`` (one target); the day is named unless it is ``at_ms``'s."""
    what = "" if mute.target is None else f" {mute.target}"
    return f"muted{what} until {when_text(mute.until_ms, tz, at_ms)} by {mute.by}"


def when_text(ms: int, tz: tzinfo, same_day_as: int | None = None) -> str:
    """``14:05 UTC`` when ``ms`` falls on the local day of ``same_day_as``, else
    ``2026-01-16 14:05 UTC``."""
    moment = datetime.fromtimestamp(ms / 1000, tz)
    if same_day_as is not None and datetime.fromtimestamp(same_day_as / 1000, tz).date() == (
        moment.date()
    ):
        return moment.strftime("%H:%M %Z")
    return moment.strftime("%Y-%m-%d %H:%M %Z")


def _keys_of(mutes: tuple[Mute, ...], target: str) -> set[str]:
    """The keys of the mutes an unmute of ``target`` lifts: its own, and the pairs (rule on
    market) naming it as their rule or market."""
    wanted = mute_key(target)
    keys = {wanted}
    for mute in mutes:
        rule, pair, ticker = mute.key.rpartition(PAIR)
        if mute.key == wanted or (pair and wanted in (rule.strip(), ticker.strip())):
            keys.add(mute.key)
    return keys
