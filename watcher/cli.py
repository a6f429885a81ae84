"""``watcher ...`` commands. No business logic here: parse options, call, print, exit code.

Exit codes: 0 ok; 1 invalid configuration or a failed check; 2 usage or missing credentials;
3 Kalshi refused the credentials (HTTP 401/403); 4 the database cannot be used.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

import click

from watcher.errors import (
    AuthenticationFailed,
    ConfigError,
    KeyFileError,
    StorageError,
    WatcherError,
)
from watcher.logs import setup_logging
from watcher.settings import Settings, settings_from_env

__all__ = ["main"]

EXIT_CONFIG = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_STORAGE = 4


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    """--trades/--rules/--db/-v/--log-format, accepted after every subcommand."""
    options = [
        click.option("--trades", metavar="PATH", help="positions file [env WATCHER_TRADES]"),
        click.option("--rules", metavar="PATH", help="rules file [env WATCHER_RULES]"),
        click.option("--db", metavar="PATH", help="SQLite database [env WATCHER_DB]"),
        click.option("-v", "--verbose", count=True, help="more logging (-vv: every frame)"),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="log line format",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(kwargs: dict[str, Any], *, simulate: bool = False) -> Settings:
    setup_logging(verbose=kwargs.pop("verbose", 0), fmt=kwargs.pop("log_format", "text"))
    return settings_from_env(
        trades=kwargs.pop("trades", None),
        rules=kwargs.pop("rules", None),
        db=kwargs.pop("db", None),
        simulate=simulate,
    )


def _fail(message: str, code: int) -> None:
    click.echo(message, err=True)
    raise SystemExit(code)


def _errors_exit(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix into one clear message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            errors = getattr(exc, "errors", None) or [exc]
            _fail("\n".join(e.located() for e in errors), EXIT_CONFIG)
        except KeyFileError as exc:
            _fail(f"error: {exc}", EXIT_CONFIG)
        except AuthenticationFailed as exc:
            _fail(f"error: {exc}", EXIT_AUTH)
        except StorageError as exc:
            _fail(f"error: {exc}", EXIT_STORAGE)
        except WatcherError as exc:
            _fail(f"error: {exc}", EXIT_USAGE)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="watcher")
def cli() -> None:
    """Paper-trading alerts and position watch for Kalshi prediction markets."""


@cli.command()
@_common
@click.option("--simulate", is_flag=True, help="use the built-in simulated exchange (no keys)")
@_errors_exit
def start(simulate: bool, **kwargs: Any) -> None:
    """Run the service until Ctrl-C / SIGTERM; flush and exit 0."""
    from watcher.app import NoCredentials, run_service

    settings = _settings(kwargs, simulate=simulate)
    try:
        summary = asyncio.run(run_service(settings))
    except NoCredentials as exc:
        _fail(str(exc), EXIT_USAGE)
    click.echo(summary)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="KEY_ID=PEM",
    help="verify signatures of this key id against this public key (repeatable)",
)
@click.option("--tick-interval", default=0.5, show_default=True, type=float)
@click.option("-v", "--verbose", count=True)
def simulate(
    host: str, port: int, public_keys: tuple[str, ...], tick_interval: float, verbose: int
) -> None:
    """Run only the simulated Kalshi exchange (WebSocket + REST) on loopback."""
    from watcher.kalshi.auth import load_public_key
    from watcher.kalshi.simulator import run_simulator

    setup_logging(verbose=verbose)
    keys = {}
    for item in public_keys:
        key_id, sep, path = item.partition("=")
        if not sep:
            _fail(f"--public-key must be KEY_ID=PEM, but got {item!r}", EXIT_USAGE)
        with open(path, "rb") as fh:
            keys[key_id] = load_public_key(fh.read())
    click.echo(
        f"simulated exchange: ws://{host}:{port}/trade-api/ws/v2 "
        f"and http://{host}:{port}/trade-api/v2 (Ctrl-C to stop)"
    )
    try:
        asyncio.run(
            run_simulator(host, port, public_keys=keys or None, tick_interval=tick_interval)
        )
    except KeyboardInterrupt:
        pass


@cli.command()
@_common
def check(**kwargs: Any) -> None:
    """Validate trades.json, rules.yaml, notify targets and the API key; exit 1 on any problem."""
    from watcher.checks import run_checks

    settings = _settings(kwargs)
    problems, report = run_checks(settings)
    for line in problems:
        click.echo(line, err=True)
    for line in report:
        click.echo(line)
    raise SystemExit(EXIT_CONFIG if problems else 0)


@cli.command("notify-test")
@_common
@click.argument("target", required=False)
@_errors_exit
def notify_test(target: str | None, **kwargs: Any) -> None:
    """Send a test alert to TARGET (or every target) and print each service's result."""
    from watcher.notify import send_test
    from watcher.rules import load_rules

    settings = _settings(kwargs)
    rules = load_rules(settings.rules_path, env=settings.env)
    if not rules.notify:
        _fail(
            f"no notify targets in {settings.rules_path}; alerts go to the console log", EXIT_CONFIG
        )
    if target is not None and target not in rules.notify:
        _fail(f"unknown target {target!r}; targets: {', '.join(sorted(rules.notify))}", EXIT_USAGE)
    results = asyncio.run(send_test(rules.notify, target))
    for result in results:
        click.echo(str(result))
    raise SystemExit(0 if all(r.ok for r in results) else EXIT_CONFIG)


@cli.command()
@_common
@click.option("--since", metavar="DURATION", help="only alerts newer than this (e.g. 2h, 1d)")
@click.option("--status", help="only alerts with this status (pending, delivered, failed, ...)")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@_errors_exit
def alerts(since: str | None, status: str | None, limit: int, as_json: bool, **kwargs: Any) -> None:
    """List recent alerts with their delivery status."""
    from watcher.notify.outbox import Outbox
    from watcher.rules.fields import parse_duration

    settings = _settings(kwargs)
    since_ms = None
    if since:
        since_ms = int(time.time() * 1000) - parse_duration(since) // timedelta(milliseconds=1)
    outbox = Outbox(settings.db_path)
    try:
        records = outbox.recent(since_ms=since_ms, status=status, limit=limit)
    finally:
        outbox.close()
    if not records:
        click.echo("no alerts")
    for record in records:
        click.echo(json.dumps(_alert_json(record)) if as_json else _alert_line(record))


def _alert_line(record: Any) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created_ms / 1000))
    deliveries = ", ".join(
        f"{d.target}={d.status}" + (f" ({d.attempts} tries)" if d.attempts > 1 else "")
        for d in record.deliveries
    )
    return f"{when}  {record.status:<10} [{record.severity}] {record.title}" + (
        f"  -> {deliveries}" if deliveries else ""
    )


def _alert_json(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "created_ms": record.created_ms,
        "rule": record.rule,
        "market_ticker": record.market_ticker,
        "severity": record.severity,
        "title": record.title,
        "body": record.body,
        "status": record.status,
        "deliveries": [
            {
                "target": d.target,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
            }
            for d in record.deliveries
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``watcher`` console script; returns the exit code."""
    try:
        cli.main(args=argv, prog_name="watcher", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


Format = Literal["text", "json"]

if __name__ == "__main__":
    sys.exit(main())
