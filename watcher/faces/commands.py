"""The faces' commands: ``watcher web``, registered by :mod:`watcher.cli`.

Only click is imported with this module; the dashboard and its libraries load when the command
runs. ``cli.py`` hands in its own option decorator, settings builder and error mapper
(:func:`web_command`), so ``watcher web`` takes the same ``--trades/--rules/--db/-v/--log-format``
and exits with the same codes as every other command, while this module imports nothing of
``watcher.cli`` (the layers forbid it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from watcher.settings import Settings

__all__ = ["DEFAULT_WEB", "web_command"]

#: Where ``watcher web`` (and ``make run``) serve the dashboard unless told otherwise.
DEFAULT_WEB = ("127.0.0.1", 8780)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def web_command(
    common: Decorator, settings: Callable[..., Settings], errors_exit: Decorator
) -> click.Command:
    """``watcher web [HOST:]PORT``, built with ``cli.py``'s shared pieces.

    Args:
        common: adds ``--trades/--rules/--db/-v/--log-format``.
        settings: resolves them (and ``web=``) into :class:`~watcher.settings.Settings`.
        errors_exit: maps the errors a user can fix to a message and an exit code.
    """

    @click.command("web")
    @common
    @click.argument("address", required=False, metavar="[HOST:]PORT")
    @errors_exit
    def web(address: str | None, **kwargs: Any) -> None:
        """Serve the dashboard read-only from the database, without running the service.

        [HOST:]PORT defaults to WATCHER_WEB, else 127.0.0.1:8780. Binding a host other than
        127.0.0.1/localhost/::1 needs WATCHER_WEB_TOKEN. Stop it with Ctrl-C.
        """
        resolved = settings(kwargs, web=address)
        if resolved.web is None:
            resolved = dataclasses.replace(resolved, web=DEFAULT_WEB)
        asyncio.run(serve_read_only(resolved))

    return web


async def serve_read_only(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Serve the dashboard from ``--db`` until SIGINT/SIGTERM (or ``stop``).

    Raises:
        ConfigError: rules.yaml cannot be loaded.
        StorageError: the database cannot be read.
    """
    from watcher.faces.host import FaceHost
    from watcher.faces.web import serve_web
    from watcher.rules import load_rules
    from watcher.service.process import stop_on_signals
    from watcher.store import open_backend

    rules = load_rules(settings.rules_path, env=settings.env)
    model = await open_backend(settings.db_path).read_model()
    try:
        await model.service_state()  # fails now, clearly, if the database cannot be read
    finally:
        await model.close()
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack, stop_on_signals(stop):
        await serve_web(stack, FaceHost(settings, rules), read_only=True)
        await stop.wait()
