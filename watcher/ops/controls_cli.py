"""``watcher mute|unmute|pause|resume``: silence alerts from the command line.

The same :class:`~watcher.service.controls.Controls` as the Telegram bot's ``/mute`` and the
dashboard's buttons, over ``--db``: the change is stored, and a running service (this machine's
or, on PostgreSQL, the active instance) re-reads it within a second. A held-back alert is still
recorded, as ``suppressed`` with its reason (``watcher alerts``); ``watcher status`` lists what
is silenced. Mutes are made ``by cli``.

Exit codes: 0 done; 1 rules.yaml or trades.json is invalid; 2 a bad duration or a target that is
neither a rule nor a watched market (nothing stored); 4 the database cannot be used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from watcher.errors import WatcherError
from watcher.ops.cli_run import EXIT_USAGE, fail, file_options, run_command

if TYPE_CHECKING:
    from watcher.service.controls import Controls

__all__ = ["CONTROL_COMMANDS"]

_T = TypeVar("_T")
BY = "cli"


@click.command("mute")
@click.argument("duration")
@click.argument("target", required=False)
@file_options
def mute(duration: str, target: str | None, **files: Any) -> None:
    """Hold back alerts for DURATION (30m, 1h, 2d; at most a year): of TARGET (a watched
    market, a rule, or RULE@TICKER), or of everything without one. Critical alerts too."""
    from watcher.rules.fields import parse_duration
    from watcher.service.controls import mute_reason

    try:
        seconds = parse_duration(duration).total_seconds()
    except ValueError as exc:
        fail(f"error: mute for how long? {exc}", EXIT_USAGE)

    async def act(controls: Controls) -> str:
        made = await controls.mute(seconds, target, by=BY)
        return mute_reason(made, controls.tz, made.created_ms)

    click.echo(_run(files, act))


@click.command("unmute")
@click.argument("target", required=False)
@file_options
def unmute(target: str | None, **files: Any) -> None:
    """End the mutes of TARGET (and of that rule or market on one market), or all of them."""

    async def act(controls: Controls) -> str:
        count = await controls.unmute(target)
        return f"unmuted {count} mute{'' if count == 1 else 's'}"

    click.echo(_run(files, act))


@click.command("pause")
@file_options
def pause(**files: Any) -> None:
    """Hold back every non-critical alert until ``watcher resume``."""

    async def act(controls: Controls) -> str:
        await controls.pause(by=BY)
        return "paused: non-critical alerts are held back until `watcher resume`"

    click.echo(_run(files, act))


@click.command("resume")
@file_options
def resume(**files: Any) -> None:
    """Send non-critical alerts again (after ``watcher pause`` or the bot's ``/pause``)."""

    async def act(controls: Controls) -> str:
        return "resumed" if await controls.resume() else "not paused: nothing to resume"

    click.echo(_run(files, act))


#: Registered by :mod:`watcher.cli` through :mod:`watcher.ops.groups`.
CONTROL_COMMANDS = [mute, unmute, pause, resume]


# Private functions


def _run(files: dict[str, Any], act: Callable[[Controls], Awaitable[_T]]) -> _T:
    """Open the Controls of ``--db`` with the rules and positions in force, run ``act``."""
    body = lambda settings: _with_controls(settings, act)  # noqa: E731
    return run_command(files, body, refused=(ValueError, WatcherError), refused_code=EXIT_USAGE)


async def _with_controls(settings: Any, act: Callable[[Controls], Awaitable[_T]]) -> _T:
    from watcher.domain.trades_file import load_positions
    from watcher.rules import load_rules
    from watcher.service.controls import Controls, stored_scope
    from watcher.store import open_backend

    rules = load_rules(settings.rules_path, env=settings.env)
    tickers = load_positions(settings.trades_path).tickers()
    backend = open_backend(settings.db_path)
    async with await Controls.open(backend) as controls:  # creates the database if need be
        model = await backend.read_model()
        try:
            controls.scope = await stored_scope(model, rules, tickers)
        finally:
            await model.close()
        return await act(controls)
