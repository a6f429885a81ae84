"""rules.yaml: the model, a loader with ``file:line:col`` errors, the pure rule engine, and the
one decision step (:mod:`watcher.rules.session`) the live pipeline and replay share.

Typical use::

    config = load_rules("rules/rules.yaml", env=os.environ)   # RulesError lists every problem
    session = Session(rules=config, portfolio=portfolio)       # owns Markets and rule states
    decision = session.step(TickEvent(ticker, ts_ms, yes_bid, yes_ask, yes_last), now_ms)
    # decision.alerts → outbox; decision.changed → rule_state table

See design.md §5 and the comments in ``rules/rules.yaml`` for the semantics of every rule.
"""

from __future__ import annotations

from watcher.rules.coverage import unmatched_rules
from watcher.rules.engine import Decision, StateKey, evaluate
from watcher.rules.events import ClockEvent, Event, LifecycleEvent, TickEvent, TradeEvent
from watcher.rules.loader import RulesError, load_rules, parse_rules
from watcher.rules.model import (
    RULE_TYPES,
    ClosingSoonRule,
    Defaults,
    MoveFromEntryRule,
    PnlRule,
    PriceCrossRule,
    QuietHours,
    Rule,
    RuleBase,
    RulesConfig,
    SettledRule,
    SpreadRule,
    StaleRule,
    TradeSizeRule,
    VelocityRule,
)
from watcher.rules.quiet import is_quiet, is_suppressed
from watcher.rules.session import Session
from watcher.rules.state import RuleState
from watcher.rules.template import PLACEHOLDERS

__all__ = [
    "PLACEHOLDERS",
    "RULE_TYPES",
    "ClockEvent",
    "ClosingSoonRule",
    "Decision",
    "Defaults",
    "Event",
    "LifecycleEvent",
    "MoveFromEntryRule",
    "PnlRule",
    "PriceCrossRule",
    "QuietHours",
    "Rule",
    "RuleBase",
    "RuleState",
    "RulesConfig",
    "RulesError",
    "Session",
    "SettledRule",
    "SpreadRule",
    "StaleRule",
    "StateKey",
    "TickEvent",
    "TradeEvent",
    "TradeSizeRule",
    "VelocityRule",
    "evaluate",
    "is_quiet",
    "is_suppressed",
    "load_rules",
    "parse_rules",
    "unmatched_rules",
]
