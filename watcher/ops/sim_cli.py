"""``watcher simulate``: only the simulated Kalshi exchange (WebSocket + REST) on loopback.

Registered by :mod:`watcher.cli` through :mod:`watcher.ops.groups`; the simulator is imported
when the command runs, never by the other commands.
"""

from __future__ import annotations

import asyncio

import click

from watcher.ops.logs import setup_logging

__all__ = ["simulate"]


@click.command()
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
    from watcher.kalshi.sim.exchange import run_simulator

    setup_logging(verbose=verbose)
    keys = {}
    for item in public_keys:
        key_id, sep, path = item.partition("=")
        if not sep:
            raise click.BadParameter(
                f"must be KEY_ID=PEM, but got {item!r}", param_hint="--public-key"
            )
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
