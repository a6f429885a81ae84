"""``watcher check``: every problem in every input, located, in one pass, and the database's
state (reachable, schema version; a password in a URL is masked)."""

from __future__ import annotations

import asyncio

from watcher.domain.trades_file import PositionsError, load_positions
from watcher.errors import ConfigError, KeyFileError
from watcher.kalshi.auth import KalshiSigner
from watcher.notify import validate_targets
from watcher.rules import RulesConfig, RulesError, load_rules
from watcher.rules.engine import unmatched_rules
from watcher.rules.volume import VolumeSpikeRule, silent_note
from watcher.settings import Settings
from watcher.store.describe import describe_database

__all__ = ["run_checks"]


def run_checks(settings: Settings) -> tuple[list[str], list[str]]:
    """Return ``(problems, report)``: ``file:line:col: message`` lines and a summary."""
    problems: list[str] = []
    report: list[str] = []
    portfolio = None
    try:
        portfolio = load_positions(settings.trades_path)
        report.append(
            f"{settings.trades_path}: {len(portfolio.positions)} positions,"
            f" {len(portfolio.watched())} watched"
        )
    except PositionsError as exc:
        problems += [e.located() for e in exc.errors]
    except ConfigError as exc:
        problems.append(exc.located())
    try:
        rules = load_rules(settings.rules_path, env=settings.env)
    except RulesError as exc:
        problems += [e.located() for e in exc.errors]
    except ConfigError as exc:
        problems.append(exc.located())
    else:
        report.append(f"{settings.rules_path}: {len(rules.rules)} rules")
        if portfolio is not None:
            report += [f"warning: {w}" for w in unmatched_rules(rules, portfolio)]
        report += [f"warning: {w}" for w in rules.warnings]
        spikes = [r for r in rules.rules if isinstance(r, VolumeSpikeRule) and r.enabled]
        report += [silent_note(rule) for rule in spikes]
        report += _targets(rules, problems, settings)
    report.append(_check_key(settings, problems))
    database = asyncio.run(describe_database(settings.db_path))
    (problems if database.problem else report).append(database.line)
    return problems, report


def _targets(rules: RulesConfig, problems: list[str], settings: Settings) -> list[str]:
    """The notify targets (the Telegram bot's ``bot`` too) and the phone control, never
    showing a URL's secret or the bot token; unusable targets are added to ``problems``."""
    target_problems = validate_targets(rules.notify)
    problems += [f"{settings.rules_path}: {p}" for p in target_problems]
    report = []
    targets = sorted([*rules.notify, *rules.chat_targets])
    if targets and not target_problems:
        report.append(f"notify targets: {', '.join(targets)}")
    elif not targets:
        report.append("notify targets: none (alerts go to the console log)")
    control = rules.control.describe()
    if control is not None:
        report.append(f"control: {control}")
    return report


def _check_key(settings: Settings, problems: list[str]) -> str:
    if not settings.has_key:
        return (
            "Kalshi key: not configured; `watcher start` will poll the public REST API every"
            " --poll-interval seconds (keyless mode). Set KALSHI_API_KEY_ID and"
            " KALSHI_PRIVATE_KEY_PATH to stream in real time"
        )
    assert settings.api_key_id and settings.private_key_path
    try:
        signer = KalshiSigner.from_file(
            settings.api_key_id, settings.private_key_path, settings.private_key_password
        )
    except KeyFileError as exc:
        problems.append(f"{settings.private_key_path}: {exc}")
        return "Kalshi key: unusable"
    return f"Kalshi key: {signer.key_id} ({signer.algorithm}), {settings.ws_url}"
