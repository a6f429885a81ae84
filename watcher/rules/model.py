"""The rules.yaml model (design.md §5): pydantic v2, unknown keys forbidden, frozen.

A file looks like::

    version: 1
    timezone: America/New_York
    notify:
      phone: ${WATCHER_TELEGRAM_URL:-}
    defaults: {notify: [phone], cooldown: 15m}
    quiet_hours: {start: "23:00", end: "07:00", except: critical}
    control: {telegram: {token: ${WATCHER_TELEGRAM_BOT_TOKEN}, chats: [987654321]}}
    rules:
      - {name: tight spread, type: spread, max_cents: 2}

``rules`` is a list discriminated on ``type``; the rule types are in :mod:`watcher.rules.kinds`
(and importable from here, see :data:`RULE_TYPES`). Load it with
:func:`watcher.rules.loader.load_rules`, which locates every error as ``file:line:col``;
validating a dict directly works too but errors are then pydantic's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from fnmatch import translate
from functools import cached_property
from typing import Annotated, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, PrivateAttr

from watcher.domain.alert import Severity
from watcher.domain.fees import TAKER_RATE
from watcher.rules.control import BOT_TARGET, Control, TelegramControl
from watcher.rules.fields import (
    Basis,
    Duration,
    Names,
    Severities,
    SeverityName,
    TimeOfDay,
    TimeZoneName,
    Urls,
    describe,
)
from watcher.rules.kinds import (
    RULE_TYPES,
    ClosingSoonRule,
    EventRule,
    LevelRule,
    MoveFromEntryRule,
    PnlRule,
    PriceCrossRule,
    Rule,
    RuleBase,
    SettledRule,
    SpreadRule,
    StaleRule,
    TradeSizeRule,
    VelocityRule,
)

__all__ = [
    "BOT_TARGET",
    "RULE_TYPES",
    "ClosingSoonRule",
    "Control",
    "Defaults",
    "Fees",
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
    "TelegramControl",
    "TradeSizeRule",
    "VelocityRule",
    "Watch",
]

_MS = timedelta(milliseconds=1)
_FROZEN = ConfigDict(extra="forbid", frozen=True)


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


def _fee_rate(value: Any) -> Decimal:
    """A fee rate from 0 to 1, exactly: ``"0.07"`` (a YAML number is read exactly too)."""
    rate = None
    if isinstance(value, str):
        try:
            rate = Decimal(value.strip())
        except InvalidOperation:
            rate = None
    elif isinstance(value, int | Decimal) and not isinstance(value, bool):
        rate = Decimal(value)
    if rate is None or not rate.is_finite() or not 0 <= rate <= 1:
        raise ValueError(f'must be a rate from 0 to 1 such as "0.07", but got {describe(value)}')
    return rate


FeeRate: TypeAlias = Annotated[Decimal, PlainValidator(_fee_rate)]


class Fees(BaseModel):
    """Kalshi's fees as paper orders pay them (design.md §11): ``fees: {taker_rate: "0.07"}``.

    ``taker_rate`` is the rate of Kalshi's taker fee, ``rate × C × P × (1 − P)`` rounded up to
    the cent per order (:mod:`watcher.domain.fees`); 0.07 unless Kalshi changes it.
    """

    model_config = _FROZEN

    taker_rate: FeeRate = TAKER_RATE


def _tickers(value: Any) -> tuple[str, ...]:
    """A list of Kalshi tickers, upper-cased, duplicates dropped (order kept)."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"must be a list of tickers, but got {describe(value)}")
    found: dict[str, None] = {}
    for item in value:
        text = item.strip() if isinstance(item, str) else ""
        if not text or any(char.isspace() or char in "*?[" for char in text):
            raise ValueError(f"must be a list of tickers, but got {describe(item)} in it")
        found[text.upper()] = None
    return tuple(found)


Tickers: TypeAlias = Annotated[tuple[str, ...], PlainValidator(_tickers)]


class Watch(BaseModel):
    """Whole events and series to watch (issue 14): ``watch: {events: [..], series: [..]}``.

    The service expands them over REST into watch-only markets (no position): every market of
    each event, and every market of each open event of each series.
    """

    model_config = _FROZEN

    events: Tickers = ()
    series: Tickers = ()

    def __bool__(self) -> bool:
        return bool(self.events or self.series)


class RulesConfig(BaseModel):
    """A whole rules.yaml.

    ``notify`` maps target names to Apprise URLs; after loading it holds only targets with at
    least one URL (a target whose URLs were all empty is dropped, with a warning, and alerts to
    it go to the console). It is hidden from ``repr``: the URLs carry tokens. ``control``
    switches the phone control on (:mod:`watcher.rules.control`); with ``control.telegram``
    the target :data:`BOT_TARGET` (``bot``) exists too, delivered by the bot.
    """

    model_config = _FROZEN

    version: Literal[1] = 1
    timezone: TimeZoneName = "UTC"
    notify: Mapping[str, Urls] = Field(default_factory=dict, repr=False)
    defaults: Defaults = Defaults()
    quiet_hours: QuietHours | None = None
    fees: Fees = Fees()
    watch: Watch = Watch()
    control: Control = Control()
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

    @cached_property
    def event_rules(self) -> tuple[EventRule, ...]:
        """The enabled rules about whole events (``event_arbitrage``, ``ladder``)."""
        return tuple(r for r in self.rules if isinstance(r, EventRule) and r.enabled)

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
        Rules about whole events are not among them (:attr:`event_rules`): the engine's
        per-market loops never look at them.
        """
        found = self._by_ticker.get(ticker)
        if found is None:
            found = tuple(
                rule
                for rule in self.rules
                if rule.enabled and not isinstance(rule, EventRule) and self.matches(rule, ticker)
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
        bots = self.chat_targets
        return tuple(name for name in names if self.notify.get(name) or name in bots)

    @property
    def chat_targets(self) -> tuple[str, ...]:
        """Targets with no URL that a chat bot delivers: ``("bot",)`` with
        ``control.telegram``, else none."""
        return (BOT_TARGET,) if self.control.telegram is not None else ()

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
