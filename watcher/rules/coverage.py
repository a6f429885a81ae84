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

    A rule about events (``event_arbitrage``, ``ladder``) needs a ``watch:`` section. Another
    rule without ``markets`` needs a watched position or watched events; a rule with
    ``markets`` needs a glob that matches a watched position's ticker (tickers written out in
    full always count: the app subscribes to them; so do watched events' markets, unknown
    until expanded).
    """
    watched = portfolio.tickers()
    known = [*watched, *config.literal_tickers()]
    has_events = bool(config.watch.events or config.watch.series)
    warnings: list[str] = []
    for rule in config.rules:
        if not rule.enabled or (
            has_events and (rule.markets is None or isinstance(rule, EventRule))
        ):
            continue
        if isinstance(rule, EventRule):
            why = "no event or series is watched: add them under watch:"
        elif rule.markets is None:
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
