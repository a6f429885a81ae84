"""The service's own alerts (not a rule's): market closed, unknown market, invalid config.

Pure builders: each takes the rules in force (for the default targets, quiet hours and time
zone) and the time, and returns :class:`~watcher.domain.alert.Alert` values for the pipeline to
record. The scheduled jobs build theirs (feed stale, digest) with :func:`service_alert` too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from watcher.domain.alert import Alert, Severity
from watcher.domain.market import MarketState
from watcher.domain.positions import Portfolio
from watcher.errors import ConfigError
from watcher.rules import RulesConfig, is_suppressed
from watcher.rules.engine import SETTLED_STATUSES
from watcher.rules.wording import clock_text

__all__ = [
    "OPEN_STATUSES",
    "closed_alert",
    "config_alert",
    "has_closed",
    "log_recorded",
    "service_alert",
    "unknown_market_alerts",
]

logger = logging.getLogger("watcher.pipeline")

#: Market statuses (REST words) of a market that still trades.
OPEN_STATUSES = frozenset({"initialized", "active", "inactive"})
_RESULTS = ("yes", "no")


def service_alert(
    rules: RulesConfig,
    *,
    key: str,
    rule: str,
    title: str,
    body: str,
    severity: Severity,
    now_ms: int,
    market_ticker: str = "",
    quiet: bool = True,
) -> Alert:
    """An alert of the service itself: default targets, quiet hours honoured unless ``quiet``
    is False."""
    return Alert(
        key=key,
        rule=rule,
        market_ticker=market_ticker,
        severity=severity,
        title=title,
        body=body,
        targets=tuple(rules.defaults.notify),
        at_ms=now_ms,
        suppressed=quiet and is_suppressed(rules.quiet_hours, rules.tz, now_ms, severity),
    )


def has_closed(state: MarketState, now_ms: int) -> bool:
    """True when REST says ``closed``, or the close time passed before a result is known."""
    if state.status == "closed":
        return True
    if state.status in SETTLED_STATUSES or state.result in _RESULTS:
        return False
    return state.close_time_ms is not None and state.close_time_ms <= now_ms


def closed_alert(rules: RulesConfig, state: MarketState, now_ms: int) -> Alert:
    """The one alert for a market that stopped trading (see :func:`has_closed`)."""
    close = state.close_time_ms or now_ms
    return service_alert(
        rules,
        key=f"market-closed|{state.ticker}|{state.close_time_ms or 'status'}",
        rule="market-closed",
        market_ticker=state.ticker,
        severity="info",
        title=f"{state.ticker} · closed for trading",
        body=f"trading closed at {clock_text(close, rules.tz)}; waiting for the result",
        now_ms=now_ms,
    )


def unknown_market_alerts(
    rules: RulesConfig, portfolio: Portfolio, ticker: str, now_ms: int
) -> list[Alert]:
    """Kalshi does not know ``ticker`` (REST 404): one warning per watched trades.json entry,
    naming it as ``trades.json:LINE: trade #N (TICKER)`` (each also logged)."""
    name = Path(portfolio.path).name
    alerts = []
    for position in portfolio.by_ticker(ticker, watched_only=True):
        where = f"{name}:{position.line}: trade #{position.index} ({ticker})"
        logger.warning("%s: Kalshi has no market with this ticker (REST 404)", where)
        alerts.append(
            service_alert(
                rules,
                key=f"unknown-market|{ticker}|{position.line}",
                rule="unknown-market",
                market_ticker=ticker,
                severity="warning",
                title=f"{ticker} · unknown market",
                body=f"{where}: Kalshi has no market with this ticker (REST 404);"
                f" check the ticker in {name}",
                now_ms=now_ms,
            )
        )
    return alerts


def config_alert(
    rules: RulesConfig, file: str, errors: Sequence[ConfigError], digest: str, now_ms: int
) -> Alert:
    """The alert for an invalid edit of a config file (once per distinct broken content;
    never held by quiet hours)."""
    return Alert(
        key=f"config|{file}|{digest}",
        rule="config",
        market_ticker="",
        severity="warning",
        title=f"{Path(file).name} is invalid; the last good version stays in force",
        body="\n".join(e.located() for e in errors[:10]),
        targets=tuple(rules.defaults.notify),
        at_ms=now_ms,
    )


def log_recorded(alerts: Sequence[Alert]) -> None:
    """Log newly recorded alerts: where each goes, or what holds it (quiet hours, a mute)."""
    for alert in alerts:
        if alert.suppressed:
            logger.info(
                "alert held (%s; recorded, not sent): %s: %s",
                alert.suppressed_reason or "quiet hours",
                alert.title,
                alert.body.replace("\n", " | "),
            )
        elif alert.targets:
            logger.info(
                "alert [%s] %s -> %s", alert.severity, alert.title, ", ".join(alert.targets)
            )
        # Alerts without targets are printed by the outbox as the console delivery.
