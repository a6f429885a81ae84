"""``watcher ...`` commands. No business logic here: parse options, call, print, exit code.

Exit codes: 0 ok; 1 invalid configuration or a failed check; 2 usage (a bad option or
variable); 3 Kalshi refused the credentials (HTTP 401/403); 4 the database cannot be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from watcher.errors import (
    AuthenticationFailed,
    ConfigError,
    KalshiError,
    KeyFileError,
    StorageError,
    WatcherError,
)
from watcher.faces.commands import web_command
from watcher.ops.groups import GROUPS
from watcher.ops.logs import setup_logging
from watcher.settings import Settings, settings_from_env

if TYPE_CHECKING:
    from watcher.store.ports import ReadModel

__all__ = ["main"]

_T = TypeVar("_T")

EXIT_CONFIG = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_STORAGE = 4
#: Replays of at least this many events show a progress bar on stderr.
REPLAY_PROGRESS_MIN = 10_000


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


def _settings(kwargs: dict[str, Any], *, simulate: bool = False, **options: Any) -> Settings:
    setup_logging(verbose=kwargs.pop("verbose", 0), fmt=kwargs.pop("log_format", "text"))
    return settings_from_env(
        trades=kwargs.pop("trades", None),
        rules=kwargs.pop("rules", None),
        db=kwargs.pop("db", None),
        simulate=simulate,
        **options,
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
        except (WatcherError, KalshiError) as exc:
            _fail(f"error: {exc}", EXIT_USAGE)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, commands=GROUPS)
@click.version_option(package_name="watcher")
def cli() -> None:
    """Paper-trading alerts and position watch for Kalshi prediction markets."""


cli.add_command(web_command(_common, _settings, _errors_exit))  # watcher web (faces/commands.py)


#: ``watcher start``'s options: (name, metavar, help, default); each has a WATCHER_* variable.
START_OPTIONS = (
    ("poll-interval", "SECONDS", "keyless mode (no API key): seconds between REST polls", "10"),
    ("stale-after", "SECONDS", "alert when no data arrived for this long", "60"),
    ("refresh-interval", "SECONDS", "seconds between REST market metadata refreshes", "300"),
    ("digest-at", "HH:MM", "send a daily digest at this local time (rules.yaml timezone)", "off"),
    ("retention-days", "DAYS", "keep ticks/trades/book rows this many days, 0 = forever", "30"),
    ("metrics-port", "PORT", "serve Prometheus /metrics and /healthz on 127.0.0.1:PORT", "off"),
    ("web", "[HOST:]PORT", "serve the live dashboard (host defaults to 127.0.0.1)", "off"),
)


def _start_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for name, metavar, text, default in reversed(START_OPTIONS):
        var = "WATCHER_" + name.upper().replace("-", "_")
        func = click.option(
            f"--{name}", metavar=metavar, help=f"{text} [env {var}; default {default}]"
        )(func)
    return func


@cli.command()
@_common
@click.option("--simulate", is_flag=True, help="use the built-in simulated exchange (no keys)")
@_start_options
@click.option(
    "--write-back/--no-write-back",
    default=None,
    help="write settlements into trades.json (backup kept) [env WATCHER_WRITE_BACK=1; default off]",
)
@_errors_exit
def start(simulate: bool, write_back: bool | None, **kwargs: Any) -> None:
    """Run the service until Ctrl-C / SIGTERM; flush and exit 0.

    Without an API key (and without --simulate) it polls Kalshi's public REST API instead of
    streaming: slower, but rules and alerts work.
    """
    from watcher.app import run_service

    options = {
        name.replace("-", "_"): kwargs.pop(name.replace("-", "_")) for name, *_ in START_OPTIONS
    }
    settings = _settings(kwargs, simulate=simulate, write_back=write_back, **options)
    click.echo(asyncio.run(run_service(settings)))


@cli.command()
@_common
def check(**kwargs: Any) -> None:
    """Validate trades.json, rules.yaml, notify targets and the API key; exit 1 on any problem."""
    from watcher.ops.checks import run_checks

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
@click.option("--since", metavar="WHEN", help="only newer than this (2h, 1d, or 2026-01-15T09:00)")
@click.option("--status", help="only alerts with this status (pending, delivered, failed, ...)")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@_errors_exit
def alerts(since: str | None, status: str | None, limit: int, as_json: bool, **kwargs: Any) -> None:
    """List recent alerts with their delivery status (times in the rules' timezone)."""
    from watcher.ops.alerts import alert_json, alert_line

    settings = _settings(kwargs)
    tz = _display_tz(settings)
    since_ms = _when(since, "--since", tz)
    records = _read(
        settings, lambda model: model.recent_alerts(since_ms=since_ms, status=status, limit=limit)
    )
    if not records:
        click.echo("no alerts")
    for record in records:
        click.echo(json.dumps(alert_json(record)) if as_json else alert_line(record, tz))


@cli.command()
@_common
@_errors_exit
def status(**kwargs: Any) -> None:
    """Watched positions: last price, mark, P&L, last alert, and feed health (from the DB).

    Reads the database without locking it, so it works while the service runs.
    """
    from watcher.domain.trades_file import load_positions
    from watcher.ops.status import read_status, render_status

    settings = _settings(kwargs)
    portfolio = load_positions(settings.trades_path)
    tz = _display_tz(settings)
    rows, health = _read(settings, lambda model: read_status(model, portfolio))
    for line in render_status(rows, health, now_ms=_now_ms(), tz=tz):
        click.echo(line)


@cli.command()
@_common
@click.argument("market")
@click.option("--since", metavar="WHEN", help="only newer than this (2h, 1d, or 2026-01-15T09:00)")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@_errors_exit
def history(market: str, since: str | None, limit: int, as_json: bool, **kwargs: Any) -> None:
    """Recent ticks and trades of MARKET, oldest first (YES prices in cents)."""
    from watcher.ops.history import history_json, history_line, read_history

    settings = _settings(kwargs)
    tz = _display_tz(settings)
    since_ms = _when(since, "--since", tz)
    ticker = market.strip().upper()
    rows = _read(
        settings, lambda model: read_history(model, ticker, since_ms=since_ms, limit=limit)
    )
    if not rows and not as_json:
        click.echo(f"no ticks or trades of {ticker} in {settings.database}", err=True)
    for kind, row in rows:
        click.echo(json.dumps(history_json(kind, row)) if as_json else history_line(kind, row, tz))


@cli.command()
@_common
@click.option("--since", metavar="WHEN", help="start here (2h, 1d, or 2026-01-15T09:00)")
@click.option("--until", metavar="WHEN", help="stop here (same forms as --since)")
@click.option("--market", "markets", multiple=True, help="only this market (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per alert")
@_errors_exit
def replay(
    since: str | None,
    until: str | None,
    markets: tuple[str, ...],
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Backtest a rules file: run it over the recorded ticks, trades and lifecycle events and
    print each alert it would have sent (nothing is sent)."""
    from watcher.domain.trades_file import load_positions
    from watcher.ops import replay as ops
    from watcher.rules import load_rules

    settings = _settings(kwargs)
    rules = load_rules(settings.rules_path, env=settings.env)
    portfolio = load_positions(settings.trades_path)
    span: dict[str, Any] = {
        "since_ms": _when(since, "--since", rules.tz),
        "until_ms": _when(until, "--until", rules.tz),
        "markets": {t.strip().upper() for t in markets} or None,
    }
    stats = ops.ReplayStats()

    async def show(model: ReadModel) -> None:
        total = await ops.count_replay_events(model, portfolio, **span)
        with contextlib.ExitStack() as stack:  # alerts are printed after the bar, not through it
            if total >= REPLAY_PROGRESS_MIN:
                bar = click.progressbar(length=total, label="replaying", file=sys.stderr)
                span["progress"] = stack.enter_context(bar).update
            found = [a async for a in ops.replay(model, rules, portfolio, stats=stats, **span)]
        for alert in found:
            click.echo(
                json.dumps(ops.alert_json(alert)) if as_json else ops.alert_line(alert, rules.tz)
            )

    _read(settings, show)
    click.echo(ops.summary_line(stats, rules.tz), err=True)


def _display_tz(settings: Settings) -> Any:
    """The rules' timezone for showing times, or UTC when the rules cannot be read."""
    from zoneinfo import ZoneInfo

    from watcher.rules import load_rules

    try:
        return load_rules(settings.rules_path, env=settings.env).tz
    except ConfigError:
        click.echo(f"note: times in UTC ({settings.rules_path} could not be read)", err=True)
        return ZoneInfo("UTC")


def _when(text: str | None, option: str, tz: Any) -> int | None:
    from watcher.ops.readout import parse_when

    if text is None:
        return None
    try:
        return parse_when(text, now_ms=_now_ms(), tz=tz)
    except ValueError as exc:
        _fail(f"error: {option}: {exc}", EXIT_USAGE)
        raise  # unreachable: _fail exits


def _read(settings: Settings, use: Callable[[ReadModel], Awaitable[_T]]) -> _T:
    """Run ``use`` on the read model of ``--db`` in a fresh event loop, then close it."""
    from watcher.store import open_backend

    async def run() -> _T:
        model = await open_backend(settings.db_path).read_model()
        try:
            return await use(model)
        finally:
            await model.close()

    return asyncio.run(run())


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


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
