"""Mutes and pauses as values, and which alerts they hold back.

A face (the Telegram bot, the dashboard) silences the watcher through
:class:`watcher.service.controls.Controls`; these are the values it stores and the pure rule it
applies to each alert being recorded:

- a :class:`Mute` holds back every alert it covers until ``until_ms`` (compared with the alert's
  own time), whatever its severity: ``/mute`` is explicit. Its target is ``None`` (everything),
  a market ticker, a rule name, or ``rule@TICKER`` (that rule on that market, the alert's
  "Mute 1h" button), kept as the user typed it and matched regardless of case;
- a :class:`Pause` holds back every alert but the critical ones until it is lifted.

A held-back alert is still recorded (status ``suppressed``, with the reason), never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from watcher.domain.alert import Alert

__all__ = ["PAIR", "ControlState", "Mute", "Pause", "covers", "mute_key", "pair_target"]

#: Separates the rule from the market in a mute of one rule on one market.
PAIR = "@"


def mute_key(target: str | None) -> str:
    """What identifies a mute's target: case-folded text, ``""`` for everything."""
    return "" if target is None else target.casefold()


def pair_target(rule: str, ticker: str) -> str:
    """The target of a mute of ``rule`` on market ``ticker`` only: ``tight spread@KXCPI-...``."""
    return f"{rule}{PAIR}{ticker}"


def covers(target: str | None, alert: Alert) -> bool:
    """True when a mute of ``target`` applies to ``alert`` (its market ticker, its rule name,
    or that rule on that market; ``None`` covers every alert). Case does not matter."""
    if target is None:
        return True
    wanted = target.casefold()
    rule, ticker = alert.rule.casefold(), alert.market_ticker.casefold()
    if wanted == rule or (ticker and wanted == ticker):
        return True
    named, pair, market = wanted.rpartition(PAIR)
    return bool(pair) and named.strip() == rule and market.strip() == ticker


@dataclass(frozen=True, slots=True)
class Mute:
    """Alerts of ``target`` are held back until ``until_ms``.

    Attributes:
        target: None for everything; else a market ticker, a rule name or ``rule@TICKER``,
            as given.
        until_ms: when the mute ends (Unix ms, exclusive): an alert at or after it goes out.
        by: who muted (``telegram:987654321``, ``web``, ``cli``).
        created_ms: when it was set.
    """

    target: str | None
    until_ms: int
    by: str
    created_ms: int

    @property
    def key(self) -> str:
        """The target's identity (:func:`mute_key`): one mute per key is stored."""
        return mute_key(self.target)

    def holds(self, alert: Alert) -> bool:
        """True when this mute holds ``alert`` back (it covers it and had not ended by then)."""
        return alert.at_ms < self.until_ms and covers(self.target, alert)


@dataclass(frozen=True, slots=True)
class Pause:
    """Non-critical alerts are held back from ``since_ms`` until the pause is lifted.

    Attributes:
        by: who paused.
        since_ms: when (Unix ms).
    """

    by: str
    since_ms: int


@dataclass(frozen=True, slots=True)
class ControlState:
    """The mutes and the pause of a database.

    Attributes:
        mutes: the mutes, soonest end first.
        paused: the pause, or None when alerts are not paused.
    """

    mutes: tuple[Mute, ...] = ()
    paused: Pause | None = None

    def at(self, now_ms: int) -> ControlState:
        """This state without the mutes that ended at or before ``now_ms``."""
        live = tuple(mute for mute in self.mutes if mute.until_ms > now_ms)
        return self if len(live) == len(self.mutes) else ControlState(live, self.paused)

    def holding(self, alert: Alert) -> Mute | Pause | None:
        """What holds ``alert`` back: the longest mute covering it at its time; else the pause,
        unless the alert is critical; else None (it goes out)."""
        held = [mute for mute in self.mutes if mute.holds(alert)]
        if held:
            return max(held, key=lambda mute: mute.until_ms)
        if self.paused is not None and alert.severity != "critical":
            return self.paused
        return None
