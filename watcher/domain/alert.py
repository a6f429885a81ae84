"""The alert value that flows from the rule engine to the outbox and the notifiers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypeAlias

__all__ = ["SEVERITIES", "Alert", "Severity"]

Severity: TypeAlias = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert decided by the rule engine.

    Attributes:
        key: idempotency key, unique per firing (``"tight spread|KXCPI-26JAN-T0.3|17321..."``);
            the outbox refuses a second row with the same key, so a replayed event cannot re-send.
        rule: the rule's ``name`` from rules.yaml (or a built-in name such as ``"config"``).
        market_ticker: the market the alert is about ("" for service-wide alerts).
        severity: ``info`` | ``warning`` | ``critical``; critical bypasses quiet hours.
        title: one short line (always names the market ticker when there is one).
        body: the rendered message template.
        targets: names of notify targets from rules.yaml; empty means "console only".
        at_ms: Unix time in milliseconds of the event that fired it.
        suppressed: True when it is held back (quiet hours, a mute, a pause): it is recorded
            but not sent.
        action: what the rule asks the service to do (``"close"``: close the position in
            full), or None for an alert that only tells.
        position_id: the id in trades.json of the position the action is about.
        action_side: that position's side (``"YES"``/``"NO"``).
        action_contracts: its contracts, all of which the action closes.
        action_price_micros: the executable price at the tick that fired it: the side's bid
            in micro-dollars (None when the market showed no bid).
        suppressed_reason: why a suppressed alert was held back (``quiet hours``,
            ``muted until 14:05 UTC by telegram:987654321``, ``paused by ...``), as recorded.
    """

    key: str
    rule: str
    market_ticker: str
    severity: Severity
    title: str
    body: str
    targets: tuple[str, ...]
    at_ms: int
    suppressed: bool = False
    action: str | None = None
    position_id: str | None = None
    action_side: str | None = None
    action_contracts: Decimal | None = None
    action_price_micros: int | None = None
    suppressed_reason: str | None = None
