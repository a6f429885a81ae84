"""Which rules apply to no market: warnings for rules.yaml against the positions in force.

The service logs them at start and after every reload; ``watcher check`` prints them.
"""

from __future__ import annotations

from watcher.domain.positions import Portfolio
from watcher.rules.kinds import EventRule
from watcher.rules.model import RulesConfig

__all__ = ["unmatched_rules"]


def unmatched_rules(config: RulesConfig, portfolio: Portfolio) -> list[str]:
    """Warnings for enabled rules that apply to no market, located where the rule is written.

    A rule without ``markets`` needs a watched position or watched events; a rule with
    ``markets`` needs a glob that matches a watched position's ticker (tickers written out in
    full always count: the app subscribes to them; so do watched events' markets, unknown
    until expanded). Rules about events (``event_arbitrage``, ``ladder``) are never warned
    about: they wait for watched events, and a ``watch:`` section is optional (the shipped
    rules.yaml has them on for ``--simulate``, which watches the simulator's demo events; the
    service says once at start when they wait, see :mod:`watcher.service.watchlist`).
    """
    watched = portfolio.tickers()
    known = [*watched, *config.literal_tickers()]
    has_events = bool(config.watch.events or config.watch.series)
    warnings: list[str] = []
    for rule in config.rules:
        if not rule.enabled or isinstance(rule, EventRule):
            continue
        if has_events and rule.markets is None:
            continue
        if rule.markets is None:
            if watched:
                continue
            why = "no position is watched"
        elif any(config.matches(rule, ticker) for ticker in known):
            continue
        else:
            why = f"markets: {', '.join(rule.markets)}"
        origin = config.origin(rule)
        prefix = f"{origin}: " if origin else ""
        warnings.append(f"{prefix}rule {rule.name!r} applies to no market ({why})")
    return warnings
