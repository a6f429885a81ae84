"""The rule types of rules.yaml (design.md §5), one pydantic model each, discriminated on ``type``.

Every rule has the :class:`RuleBase` fields; threshold rules with hysteresis derive from
:class:`LevelRule`. :data:`Rule` is the discriminated union that
:class:`~watcher.rules.model.RulesConfig` holds, and :data:`RULE_TYPES` maps each ``type`` to
its model. Unknown keys are forbidden and every model is frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Annotated, ClassVar, Literal, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from watcher.kalshi.fixed import cents_to_micros, to_micros
from watcher.rules.fields import (
    Basis,
    Cents,
    CentsOrZero,
    Contracts,
    Dollars,
    Duration,
    Expires,
    Level,
    Names,
    PositiveDuration,
    RuleName,
    SeverityName,
    SideName,
    Template,
)
from watcher.rules.spike_fields import Factor, SpikeWindow, check_baseline

__all__ = [
    "RULE_TYPES",
    "ClosingSoonRule",
    "EventArbitrageRule",
    "EventRule",
    "LadderRule",
    "LevelRule",
    "MoveFromEntryRule",
    "PnlRule",
    "PriceCrossRule",
    "Rule",
    "RuleBase",
    "SettledRule",
    "SpreadRule",
    "StaleRule",
    "TradeSizeRule",
    "VelocityRule",
    "VolumeSpikeRule",
]

_MS = timedelta(milliseconds=1)
_FROZEN = ConfigDict(extra="forbid", frozen=True)


class RuleBase(BaseModel):
    """Fields every rule has. ``None`` means "use ``defaults``" (or the built-in default)."""

    model_config = _FROZEN

    #: "market": one state per market; "position": one state per watched position.
    scope: ClassVar[Literal["market", "position"]] = "market"

    name: RuleName
    type: str
    markets: Names | None = None
    notify: Names | None = None
    cooldown: Duration | None = None
    severity: SeverityName | None = None
    price: Basis | None = None
    message: Template | None = None
    enabled: bool = True
    expires: Expires | None = None
    #: ``close``: when the rule fires for a position, the service closes it (position rules).
    action: Literal["close"] | None = None

    @field_validator("action")
    @classmethod
    def _acts_on_positions(cls, action: str | None) -> str | None:
        if action is not None and cls.scope != "position":
            kinds = ", ".join(name for name, kind in RULE_TYPES.items() if kind.scope == "position")
            raise ValueError(f"action: {action} needs a rule about positions ({kinds})")
        return action

    @cached_property
    def named_side(self) -> Literal["YES", "NO"] | None:
        """The ``side`` the rule names (for types with that field), else None.

        Cached: ``getattr`` of a missing field goes through pydantic's slow ``__getattr__``.
        """
        side: Literal["YES", "NO"] | None = getattr(self, "side", None)
        return side

    def expires_ms(self, tz: ZoneInfo) -> int | None:
        """When the rule stops, in Unix ms. A date means "through that day" in ``tz``."""
        if self.expires is None:
            return None
        at = self.expires
        if not isinstance(at, datetime):
            at = datetime.combine(at + timedelta(days=1), datetime.min.time())
        if at.tzinfo is None:
            at = at.replace(tzinfo=tz)
        return (at - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))) // _MS


class LevelRule(RuleBase):
    """A rule on a value that crosses a threshold, with hysteresis (``rearm_cents``)."""

    #: Default hysteresis in cents when ``rearm_cents`` is not set.
    default_rearm_cents: ClassVar[Decimal] = Decimal(1)

    rearm_cents: CentsOrZero | None = None

    @cached_property
    def rearm_micros(self) -> int:
        """The hysteresis in micro-dollars (computed once: the engine asks on every tick)."""
        cents = self.default_rearm_cents if self.rearm_cents is None else self.rearm_cents
        return cents_to_micros(cents)


class SpreadRule(LevelRule):
    """``yes_ask − yes_bid`` at most ``max_cents`` (or at least ``min_cents``), both inclusive."""

    type: Literal["spread"]
    side: SideName | None = None
    max_cents: CentsOrZero | None = None
    min_cents: CentsOrZero | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> SpreadRule:
        if (self.max_cents is None) == (self.min_cents is None):
            raise ValueError("a spread rule needs exactly one of max_cents or min_cents")
        return self

    @cached_property
    def limit_micros(self) -> int:
        """``max_cents`` (or ``min_cents``) in micro-dollars."""
        cents = self.max_cents if self.max_cents is not None else self.min_cents
        assert cents is not None  # the validator requires exactly one
        return cents_to_micros(cents)


class MoveFromEntryRule(LevelRule):
    """The position's own-side price moved ``cents`` from its entry (``either`` way by default)."""

    scope: ClassVar[Literal["market", "position"]] = "position"

    type: Literal["move_from_entry"]
    cents: Cents
    direction: Literal["up", "down", "either"] = "either"

    @cached_property
    def cents_micros(self) -> int:
        """``cents`` in micro-dollars."""
        return cents_to_micros(self.cents)


class PnlRule(LevelRule):
    """Paper P&L (contracts × (mark − entry)) at or above/below a dollar amount.

    ``rearm_cents`` is in cents of P&L here (default 100, i.e. $1).
    """

    scope: ClassVar[Literal["market", "position"]] = "position"
    default_rearm_cents: ClassVar[Decimal] = Decimal(100)

    type: Literal["pnl"]
    above_dollars: Dollars | None = None
    below_dollars: Dollars | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> PnlRule:
        if self.above_dollars is None and self.below_dollars is None:
            raise ValueError("a pnl rule needs above_dollars, below_dollars or both")
        return self

    @cached_property
    def above_micros(self) -> int | None:
        """``above_dollars`` in micro-dollars (dollars have at most 6 decimals: exact)."""
        return None if self.above_dollars is None else to_micros(self.above_dollars)

    @cached_property
    def below_micros(self) -> int | None:
        """``below_dollars`` in micro-dollars."""
        return None if self.below_dollars is None else to_micros(self.below_dollars)


class PriceCrossRule(LevelRule):
    """The price goes up (or down) through the level ``cents``."""

    type: Literal["price_cross"]
    side: SideName | None = None
    cents: Level
    direction: Literal["up", "down"]

    @cached_property
    def cents_micros(self) -> int:
        """The level in micro-dollars."""
        return cents_to_micros(self.cents)


class VelocityRule(LevelRule):
    """The price moved at least ``cents`` within the time window ``within``."""

    type: Literal["velocity"]
    side: SideName | None = None
    cents: Cents
    within: PositiveDuration
    direction: Literal["up", "down", "either"] = "either"

    @cached_property
    def cents_micros(self) -> int:
        """``cents`` in micro-dollars."""
        return cents_to_micros(self.cents)

    @cached_property
    def within_ms(self) -> int:
        """The window in milliseconds."""
        return self.within // _MS


class TradeSizeRule(RuleBase):
    """A single trade of at least ``min_contracts`` contracts; one alert per trade."""

    type: Literal["trade_size"]
    side: SideName | None = None
    min_contracts: Contracts


class ClosingSoonRule(RuleBase):
    """The market closes within ``before``; once per market (again if the close time moves)."""

    type: Literal["closing_soon"]
    before: PositiveDuration


class SettledRule(RuleBase):
    """The market was determined or settled; once per market, with each position's paper P&L."""

    type: Literal["settled"]


class StaleRule(RuleBase):
    """No ticker update for ``after``; one alert, then one recovery alert when data flows again."""

    type: Literal["stale"]
    after: PositiveDuration


class EventRule(RuleBase):
    """A rule about a whole event (one state per event), not one market.

    ``events`` are event-ticker globs (default: every watched event); ``markets`` does not
    apply. Hysteresis like :class:`LevelRule`: it fires when the edge reaches ``min_edge_cents``
    and re-arms once the edge is ``rearm_cents`` below that (default 1¢).
    """

    scope: ClassVar[Literal["market", "position"]] = "market"

    events: Names | None = None
    min_edge_cents: Cents
    rearm_cents: CentsOrZero | None = None

    @field_validator("markets")
    @classmethod
    def _no_markets(cls, markets: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if markets is not None:
            raise ValueError("an event rule selects events with `events`, not `markets`")
        return markets

    @field_validator("price")
    @classmethod
    def _no_price(cls, price: str | None) -> str | None:
        if price is not None:
            raise ValueError("an event rule prices legs at their asks; `price` does not apply")
        return price

    @cached_property
    def min_edge_micros(self) -> int:
        """``min_edge_cents`` in micro-dollars."""
        return cents_to_micros(self.min_edge_cents)

    @cached_property
    def rearm_micros(self) -> int:
        """The hysteresis in micro-dollars (1¢ unless ``rearm_cents`` says otherwise)."""
        return cents_to_micros(Decimal(1) if self.rearm_cents is None else self.rearm_cents)


class EventArbitrageRule(EventRule):
    """A mutually exclusive event's all-NO basket (and all-YES if ``exhaustive``) is
    mispriced by at least ``min_edge_cents`` after the taker fee of each leg."""

    type: Literal["event_arbitrage"]
    exhaustive: bool = False


class LadderRule(EventRule):
    """Two thresholds of one quantity (same close time) priced inversely: YES ask of the
    wider one + NO ask of the narrower one + fees below $1 by at least ``min_edge_cents``."""

    type: Literal["ladder"]


class VolumeSpikeRule(RuleBase):
    """The ``field`` added in the last ``within`` is at least ``factor`` × the market's own
    average per ``within`` over the ``baseline`` before it (:mod:`watcher.rules.volume`)."""

    type: Literal["volume_spike"]
    factor: Factor
    within: SpikeWindow
    baseline: PositiveDuration
    field: Literal["volume", "open_interest"] = "volume"

    @model_validator(mode="after")
    def _baseline_fits(self) -> VolumeSpikeRule:
        check_baseline(self.within, self.baseline)
        return self

    @cached_property
    def series_key(self) -> tuple[Literal["volume", "open_interest"], int, int]:
        """The market's volume series this rule reads: (field, within ms, baseline ms)."""
        return (self.field, self.within // _MS, self.baseline // _MS)


Rule: TypeAlias = Annotated[
    SpreadRule
    | MoveFromEntryRule
    | PnlRule
    | PriceCrossRule
    | VelocityRule
    | TradeSizeRule
    | ClosingSoonRule
    | SettledRule
    | StaleRule
    | VolumeSpikeRule
    | EventArbitrageRule
    | LadderRule,
    Field(discriminator="type"),
]

#: Rule model by ``type``, in the order the documentation lists them.
RULE_TYPES: Mapping[str, type[RuleBase]] = {
    "spread": SpreadRule,
    "move_from_entry": MoveFromEntryRule,
    "pnl": PnlRule,
    "price_cross": PriceCrossRule,
    "velocity": VelocityRule,
    "trade_size": TradeSizeRule,
    "closing_soon": ClosingSoonRule,
    "settled": SettledRule,
    "stale": StaleRule,
    "volume_spike": VolumeSpikeRule,
    "event_arbitrage": EventArbitrageRule,
    "ladder": LadderRule,
}
