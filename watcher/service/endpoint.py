"""Where the service gets its data, and how it signs: :func:`open_endpoint`.

Three modes: the built-in simulator (with an ephemeral Ed25519 key whose signatures it checks),
Kalshi with the user's key, or keyless REST polling when there is no key.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from watcher.kalshi.auth import KalshiSigner
from watcher.service.keyless import KEYLESS_NOTICE

if TYPE_CHECKING:
    from watcher.kalshi.sim.exchange import SimulatedExchange

__all__ = ["SIM_KEY_ID", "Endpoint", "Mode", "open_endpoint"]

logger = logging.getLogger("watcher.app")

SIM_KEY_ID = "watcher-simulator"

#: ``websocket``: Kalshi with the user's key; ``simulate``: the built-in simulator;
#: ``keyless``: no key, REST polling instead of the WebSocket.
Mode = Literal["websocket", "simulate", "keyless"]


@dataclass(frozen=True)
class Endpoint:
    """Where the service gets its data, and how it signs."""

    ws_url: str
    api_url: str
    signer: KalshiSigner | None
    mode: Mode = "websocket"


async def open_endpoint(
    stack: contextlib.AsyncExitStack,
    *,
    simulate: bool,
    ws_url: str,
    api_url: str,
    api_key_id: str | None,
    private_key_path: str | None,
    private_key_password: str | None = None,
    poll_interval: float,
) -> Endpoint:
    """Pick the simulator (started on ``stack``), Kalshi with the user's key, or keyless REST
    polling when there is no key.

    Args:
        stack: where the simulator is entered (it runs until the stack closes).
        simulate: use the built-in simulator.
        ws_url, api_url: Kalshi's WebSocket and REST base URLs.
        api_key_id, private_key_path, private_key_password: the user's key, if any.
        poll_interval: seconds between keyless polls (named in the keyless notice).
    """
    if simulate:
        return await _open_simulator(stack)
    if not (api_key_id and private_key_path):
        logger.warning(KEYLESS_NOTICE, f"{poll_interval:g}")
        return Endpoint(ws_url, api_url, None, mode="keyless")
    signer = KalshiSigner.from_file(api_key_id, private_key_path, private_key_password)
    return Endpoint(ws_url, api_url, signer)


async def _open_simulator(stack: contextlib.AsyncExitStack) -> Endpoint:
    # Imported here: the simulator (a websockets server) is not needed by a real run.
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from watcher.kalshi.sim.exchange import SimulatedExchange

    key = ed25519.Ed25519PrivateKey.generate()
    sim = SimulatedExchange(public_keys={SIM_KEY_ID: key.public_key()})
    await stack.enter_async_context(sim)
    logger.info("simulated exchange on %s (signatures verified)", sim.ws_url)
    stack.callback(_log_sim_stats, sim)
    return Endpoint(sim.ws_url, sim.api_url, KalshiSigner(SIM_KEY_ID, key), mode="simulate")


def _log_sim_stats(sim: SimulatedExchange) -> None:
    sent = sim.stats.frames_sent
    logger.info(
        "simulator sent %d ticker and %d trade frames", sent.get("ticker", 0), sent.get("trade", 0)
    )
