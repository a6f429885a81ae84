"""Per (rule, scope) memory: armed or not, when it last fired, and which way.

The lead persists it as JSON in SQLite (``rule_state(rule, scope, state)``), so a restart
neither repeats an alert nor forgets that a condition is already firing.

Level rules are edge-triggered with hysteresis (:func:`step`)::

    armed ──condition true (cooldown passed)──▶ fires, disarmed
      ▲                                              │
      └──── value back past the threshold by rearm ◀─┘

A condition already true at start-up fires once, because a new state is armed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["RuleState", "step"]


@dataclass(frozen=True, slots=True)
class RuleState:
    """What a rule remembers for one scope (a market ticker, or ``TICKER#position``).

    Attributes:
        armed: True when the rule may fire; False after it fired, until it re-arms.
        last_fired_ms: when it last fired (for ``cooldown``), or None.
        tag: which condition fired (``up``/``down``, ``above``/``below``, the close time...):
            a different condition re-arms at once.
    """

    armed: bool = True
    last_fired_ms: int | None = None
    tag: str = ""

    def to_json(self) -> str:
        """Serialize as a small JSON object."""
        return json.dumps(
            {"armed": self.armed, "last_fired_ms": self.last_fired_ms, "tag": self.tag},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> RuleState:
        """Parse :meth:`to_json` output; unknown keys are ignored, missing ones default.

        Raises:
            ValueError: the text is not a JSON object of the right types.
        """
        try:
            data: Any = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"rule state is not JSON: {str(text)[:80]!r}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"rule state must be a JSON object, but got {str(text)[:80]!r}")
        armed = data.get("armed", True)
        fired = data.get("last_fired_ms")
        tag = data.get("tag", "")
        if not isinstance(armed, bool) or not isinstance(tag, str):
            raise ValueError(f"rule state has a bad armed or tag value: {str(text)[:80]!r}")
        if fired is not None and (isinstance(fired, bool) or not isinstance(fired, int)):
            raise ValueError(f"rule state has a bad last_fired_ms: {fired!r}")
        return cls(armed=armed, last_fired_ms=fired, tag=tag)

    def cooled(self, now_ms: int, cooldown_ms: int) -> bool:
        """True when ``cooldown_ms`` has passed since the last firing (or it never fired)."""
        return self.last_fired_ms is None or now_ms - self.last_fired_ms >= cooldown_ms


def step(
    state: RuleState,
    *,
    active: bool,
    clear: bool,
    tag: str,
    now_ms: int,
    cooldown_ms: int,
) -> tuple[RuleState, bool]:
    """One evaluation of a level rule.

    Args:
        state: the rule's state for this scope.
        active: the condition holds now.
        clear: the value is back past the threshold by the rearm distance.
        tag: which condition ``active`` is about (a different one re-arms at once).
        now_ms: the time now.
        cooldown_ms: the least time between two firings.

    Returns:
        the new state, and whether the rule fires now.
    """
    armed = state.armed or clear or (active and tag != state.tag)
    if armed and active and state.cooled(now_ms, cooldown_ms):
        return RuleState(armed=False, last_fired_ms=now_ms, tag=tag), True
    if armed == state.armed:
        return state, False  # the common case on every tick: nothing changed, nothing made
    return RuleState(armed=armed, last_fired_ms=state.last_fired_ms, tag=state.tag), False
