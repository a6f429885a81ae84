"""The rules.yaml model (design.md §5): pydantic v2, unknown keys forbidden, frozen.

A file looks like::

    version: 1
    timezone: America/New_York
    notify:
      phone: ${WATCHER_TELEGRAM_URL:-}
    defaults: {notify: [phone], cooldown: 15m}
    quiet_hours: {start: "23:00", end: "07:00", except: critical}
    rules:
      - {name: tight spread, type: spread, max_cents: 2}

``rules`` is a list discriminated on ``type`` (see :data:`RULE_TYPES`). Load it with
:func:`watcher.rules.loader.load_rules`, which locates every error as ``file:line:col``;
validating a dict directly works too but errors are then pydantic's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from fnmatch import translate
from functools import cached_property
from typing import Annotated, ClassVar, Literal, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from watcher.domain.alert import Severity
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
    Severities,
    SeverityName,
    SideName,
    Template,
    TimeOfDay,
    TimeZoneName,
    Urls,
)

__all__ = [
    "RULE_TYPES",
    "ClosingSoonRule",
    "Defaults",
    "LevelRule",
    "MoveFromEntryRule",
    "PnlRule",
    "PriceCrossRule",
    "QuietHours",
    "Rule",
    "RuleBase",
    "RulesConfig",
    "SettledRule",
    "SpreadRule",
    "StaleRule",
    "TradeSizeRule",
    "VelocityRule",
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


Rule: TypeAlias = Annotated[
    SpreadRule
    | MoveFromEntryRule
    | PnlRule
    | PriceCrossRule
    | VelocityRule
    | TradeSizeRule
    | ClosingSoonRule
    | SettledRule
    | StaleRule,
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
}


class Defaults(BaseModel):
    """Values for rules that do not set their own."""

    model_config = _FROZEN

    notify: Names = ()
    cooldown: Duration = timedelta(0)
    severity: SeverityName = "warning"
    price: Basis = "last"


class QuietHours(BaseModel):
    """A daily window in the configured time zone when alerts are recorded but not sent.

    ``start`` after ``end`` wraps midnight (23:00–07:00); ``start == end`` is an empty window.
    ``critical`` always bypasses; ``except`` names more severities that do.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: TimeOfDay
    end: TimeOfDay
    except_: Severities = Field(default=(), alias="except")


class RulesConfig(BaseModel):
    """A whole rules.yaml.

    ``notify`` maps target names to Apprise URLs; after loading it holds only targets with at
    least one URL (a target whose URLs were all empty is dropped, with a warning, and alerts to
    it go to the console). It is hidden from ``repr``: the URLs carry tokens.
    """

    model_config = _FROZEN

    version: Literal[1] = 1
    timezone: TimeZoneName = "UTC"
    notify: Mapping[str, Urls] = Field(default_factory=dict, repr=False)
    defaults: Defaults = Defaults()
    quiet_hours: QuietHours | None = None
    rules: tuple[Rule, ...] = ()

    _warnings: tuple[str, ...] = PrivateAttr(default=())
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    # Caches are cached_property dicts, not PrivateAttr: pydantic serves private attributes
    # through __getattr__ (about 2 µs per access), and rules_for runs on every tick.

    @cached_property
    def _by_ticker(self) -> dict[str, tuple[RuleBase, ...]]:
        return {}

    @cached_property
    def _globs(self) -> dict[str, re.Pattern[str]]:
        return {}

    # Public methods

    @property
    def tz(self) -> ZoneInfo:
        """The configured time zone."""
        return ZoneInfo(self.timezone)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Problems that do not stop loading (``file:line:col: message``)."""
        return self._warnings

    def origin(self, rule: RuleBase) -> str:
        """Where a rule was written (``rules.yaml:12:5``), or "" when not loaded from a file."""
        return self._origins.get(rule.name, "")

    def rules_for(self, ticker: str) -> tuple[RuleBase, ...]:
        """Enabled rules whose ``markets`` globs match ``ticker`` (case-insensitive), or that
        have no ``markets`` (they apply to watched positions; the engine checks that). Cached.
        """
        found = self._by_ticker.get(ticker)
        if found is None:
            found = tuple(
                rule for rule in self.rules if rule.enabled and self.matches(rule, ticker)
            )
            self._by_ticker[ticker] = found
        return found

    def matches(self, rule: RuleBase, ticker: str) -> bool:
        """True when ``rule.markets`` is unset or one of its globs matches ``ticker``."""
        if rule.markets is None:
            return True
        for glob in rule.markets:
            pattern = self._globs.get(glob)
            if pattern is None:
                pattern = self._globs[glob] = re.compile(translate(glob), re.IGNORECASE)
            if pattern.match(ticker):
                return True
        return False

    def targets_of(self, rule: RuleBase) -> tuple[str, ...]:
        """Names of the notify targets the rule's alerts go to (empty: console only)."""
        names = self.defaults.notify if rule.notify is None else rule.notify
        return tuple(name for name in names if self.notify.get(name))

    def cooldown_ms(self, rule: RuleBase) -> int:
        """The rule's cooldown (or ``defaults.cooldown``) in milliseconds."""
        cooldown = self.defaults.cooldown if rule.cooldown is None else rule.cooldown
        return cooldown // _MS

    def severity_of(self, rule: RuleBase) -> Severity:
        """The rule's severity, or ``defaults.severity``."""
        return self.defaults.severity if rule.severity is None else rule.severity

    def basis_of(self, rule: RuleBase) -> Literal["last", "bid", "mid"]:
        """The rule's price basis, or ``defaults.price``."""
        return self.defaults.price if rule.price is None else rule.price

    @property
    def history_ms(self) -> int:
        """The longest ``within`` of any velocity rule, in ms: how much price history to keep."""
        windows = [rule.within // _MS for rule in self.rules if isinstance(rule, VelocityRule)]
        return max(windows, default=0)

    def literal_tickers(self) -> tuple[str, ...]:
        """Tickers named in ``markets`` without glob characters (markets to subscribe to)."""
        found: dict[str, None] = {}
        for rule in self.rules:
            for glob in rule.markets or ():
                if rule.enabled and not any(char in glob for char in "*?["):
                    found[glob.upper()] = None
        return tuple(found)

    def with_load_info(
        self,
        *,
        notify: Mapping[str, tuple[str, ...]],
        warnings: tuple[str, ...],
        origins: dict[str, str],
    ) -> RulesConfig:
        """A copy with the loader's findings: kept targets, warnings and rule locations."""
        config = self.model_copy(update={"notify": dict(notify)})
        config._warnings = warnings
        config._origins = dict(origins)
        config.__dict__.pop("_by_ticker", None)  # model_copy copied the cache dict: start anew
        return config
