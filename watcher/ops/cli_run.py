"""What the command modules outside :mod:`watcher.cli` share: the file options and one way to
run an async command over the resolved settings, mapping the errors a user can fix to one clear
message and an exit code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from watcher.errors import ConfigError, StorageError
from watcher.ops.logs import setup_logging

if TYPE_CHECKING:
    from watcher.settings import Settings

__all__ = ["EXIT_CONFIG", "EXIT_STORAGE", "EXIT_USAGE", "fail", "file_options", "run_command"]

_T = TypeVar("_T")

EXIT_CONFIG = 1
EXIT_USAGE = 2
EXIT_STORAGE = 4


def file_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--trades/--rules/--db/-v, as the other commands take them."""
    options = [
        click.option("--trades", metavar="PATH", help="positions file [env WATCHER_TRADES]"),
        click.option("--rules", metavar="PATH", help="rules file [env WATCHER_RULES]"),
        click.option("--db", metavar="PATH", help="database [env WATCHER_DB]"),
        click.option("-v", "--verbose", count=True, help="more logging"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def run_command(
    files: dict[str, Any],
    body: Callable[[Settings], Coroutine[Any, Any, _T]],
    *,
    refused: tuple[type[BaseException], ...],
    refused_code: int,
) -> _T:
    """Resolve the settings from ``files`` and the environment, run ``body(settings)``, and
    turn a bad option (exit 2), an invalid rules.yaml or trades.json (1), an unusable database
    (4) or one of ``refused`` (``refused_code``) into ``error: …`` on stderr and that exit."""
    from watcher.settings import SettingsError, settings_from_env

    setup_logging(verbose=files.pop("verbose", 0))
    try:
        settings = settings_from_env(**files)
    except SettingsError as exc:
        fail(f"error: {exc}", EXIT_USAGE)
    try:
        return asyncio.run(body(settings))
    except StorageError as exc:
        fail(f"error: {exc}", EXIT_STORAGE)
    except ConfigError as exc:
        errors = getattr(exc, "errors", None) or [exc]
        fail("\n".join(e.located() for e in errors), EXIT_CONFIG)
    except refused as exc:
        fail(f"error: {exc}", refused_code)


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code``."""
    click.echo(message, err=True)
    raise SystemExit(code)
