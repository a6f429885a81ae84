"""Recording what the rules decided, carrying out the rules that act first.

:class:`Recording` is the alert-store half of :class:`~watcher.service.pipeline.Pipeline`:
alerts and the rule states that produced them go to the alert store in one transaction, then
the sender is woken. A rule with ``action: close`` marks its alert
(:attr:`~watcher.domain.alert.Alert.action`); before such an alert is recorded the position is
closed through the :class:`Closer` (the paper desk, :mod:`watcher.service.paper`) at the price
of the tick that fired it, and the alert says what was done:

* closed: ``… · closed 50 YES at 20¢: realized -$11.25 after $0.70 fees``;
* already closed under the alert's key (a restart, or another instance): the alert as it was;
* the close failed: ``… · not closed: <why>`` — the alert is recorded all the same.

The desk records the fill under the alert's idempotency key before it writes trades.json, so
the close happens once however often the alert is decided. Only the active instance runs a
pipeline, so only it acts. ``watcher replay`` never gets here: it only says what it would do
(:func:`watcher.ops.replay.would_do`).

Before alerts are recorded, each one the engine let through is put to the mutes and the pause
(:meth:`Controls.verdict <watcher.service.controls.Controls.verdict>`): one held back is
recorded as ``suppressed`` with the reason, as one held by quiet hours is (reason
``quiet hours``). Only recordings pay for this; a tick that fired nothing never gets here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Protocol

from watcher.domain.alert import Alert
from watcher.domain.paper import CloseResult
from watcher.kalshi.fixed import format_cents, to_micros
from watcher.notify.sender import Sender
from watcher.rules.engine import Decision
from watcher.rules.wording import contracts_text, dollars_text, signed_dollars
from watcher.service import alerts as service_alerts
from watcher.service.controls import Controls
from watcher.store.ports import AlertStore
from watcher.store.records import AlertRecord

__all__ = ["CLOSE", "QUIET_HOURS", "Closer", "Recording", "act_on", "closed_text"]

logger = logging.getLogger("watcher.pipeline")

#: The one action a rule may ask for: close the position in full.
CLOSE = "close"
#: The reason recorded with an alert that quiet hours held back.
QUIET_HOURS = "quiet hours"
_SEPARATOR = " · "


class Closer(Protocol):
    """Closes paper positions for rules (:class:`watcher.service.paper.PaperDesk`)."""

    #: The taker fee rate (rules.yaml ``fees.taker_rate``), kept current when rules reload.
    fee_rate: Decimal

    async def close_position(
        self, position_id: str, *, price_micros: int, fill_key: str, source: str = "rule"
    ) -> CloseResult | None:
        """Close ``position_id`` in full at ``price_micros``, recording the fill under
        ``fill_key`` first; None when that key was recorded before (already done)."""
        ...


class Recording:
    """Records decided alerts (acting first where a rule says so) and wakes the sender.

    Args:
        closer: closes positions for rules with ``action: close``; None: such alerts say the
            position was not closed.
    """

    def __init__(self, closer: Closer | None = None) -> None:
        self.closer = closer
        self.alerts_fired = 0
        self.alerts_suppressed = 0
        self.alert_store: AlertStore | None = None
        self.sender: Sender | None = None
        #: Mutes and pauses (set by the service); None: nothing is muted or paused.
        self.controls: Controls | None = None

    async def record(
        self, alerts: Sequence[Alert], states: dict[tuple[str, str], str], now: int
    ) -> int:
        """Record alerts (with rule states) in the alert store and wake the sender.

        Returns:
            how many alerts were new (a key already recorded is not recorded again).
        """
        assert self.alert_store is not None and self.sender is not None
        alerts = await self._screened(alerts)
        new = await self.alert_store.record(alerts, states, now_ms=now)
        if not new:
            return 0
        self.alerts_fired += len(new)
        self.alerts_suppressed += sum(1 for alert in alerts if alert.suppressed)
        service_alerts.log_recorded(alerts)
        self.sender.wake()
        return len(new)

    async def recent_alerts(self, *, since_ms: int, limit: int = 500) -> list[AlertRecord]:
        """Alerts recorded at or after ``since_ms``, newest first."""
        assert self.alert_store is not None
        return await self.alert_store.recent(since_ms=since_ms, limit=limit)

    async def _screened(self, alerts: Sequence[Alert]) -> Sequence[Alert]:
        """``alerts`` with those held back (quiet hours, a mute, the pause) marked suppressed
        and saying why."""
        if not alerts:  # only rule states changed
            return alerts
        controls = self.controls
        if controls is not None:
            await controls.refresh()
        screened = []
        for alert in alerts:
            reason: str | None
            if alert.suppressed:
                reason = alert.suppressed_reason or QUIET_HOURS
            else:
                reason = None if controls is None else controls.verdict(alert)
            if reason is not None and reason != alert.suppressed_reason:
                alert = replace(alert, suppressed=True, suppressed_reason=reason)
            screened.append(alert)
        return screened

    def _record_decision(self, decision: Decision, now: int) -> Awaitable[int]:
        changed = {key: state.to_json() for key, state in decision.changed.items()}
        if any(alert.action is not None for alert in decision.alerts):
            return self._act_then_record(decision.alerts, changed, now)
        return self.record(decision.alerts, changed, now)

    async def _act_then_record(
        self, alerts: Sequence[Alert], states: dict[tuple[str, str], str], now: int
    ) -> int:
        done = [await act_on(alert, self.closer) for alert in alerts]
        return await self.record(done, states, now)


async def act_on(alert: Alert, closer: Closer | None) -> Alert:
    """Carry out ``alert``'s action (if any); return the alert saying what was done.

    Never raises for a failed close: the alert is what the user must get either way.
    """
    if alert.action is None:
        return alert
    if alert.action != CLOSE:
        return _noted(alert, f"not done: unknown action {alert.action!r}")
    if closer is None:
        return _noted(alert, "not closed: paper trading is not wired in this run")
    if alert.position_id is None:
        return _noted(alert, "not closed: the alert names no position")
    if alert.action_price_micros is None:
        return _noted(alert, f"not closed: no {alert.action_side or ''} bid at that tick")
    try:
        result = await closer.close_position(
            alert.position_id,
            price_micros=alert.action_price_micros,
            fill_key=alert.key,
            source="rule",
        )
    except Exception as exc:  # the alert must be recorded whatever went wrong
        logger.warning("rule %r could not close %s: %s", alert.rule, alert.position_id, exc)
        return _noted(alert, f"not closed: {exc}")
    if result is None:
        return alert  # closed before under this key (a restart, or another instance)
    return _noted(alert, closed_text(result))


def closed_text(result: CloseResult) -> str:
    """``closed 50 YES at 20¢: realized -$11.25 after $0.70 fees``."""
    fill = result.fill
    text = (
        f"closed {contracts_text(fill.contracts)} {fill.side} at"
        f" {format_cents(to_micros(fill.price))}: realized {signed_dollars(result.realized)}"
        f" after {dollars_text(result.fees)} fees"
    )
    if result.remaining:
        text += f" ({contracts_text(result.remaining)} still open)"
    return text


def _noted(alert: Alert, note: str) -> Alert:
    return replace(alert, body=f"{alert.body}{_SEPARATOR}{note}")
