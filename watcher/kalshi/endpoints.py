"""Kalshi's endpoint table (kalshi-protocol.md §1).

The constants are the recommended dedicated hosts, documented since 2026-05-07. The shared hosts
(``api.elections.kalshi.com``, ``demo-api.kalshi.co``) still work and can be given as overrides.
Demo and production credentials are separate: demo keys only work against demo endpoints.

:func:`resolve_endpoints` is a pure function: the caller (``cli.py``) reads ``KALSHI_ENV``,
``KALSHI_WS_URL`` and ``KALSHI_API_URL`` once and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEMO_API_URL",
    "DEMO_WS_URL",
    "PROD_API_URL",
    "PROD_WS_URL",
    "Endpoints",
    "resolve_endpoints",
]

PROD_WS_URL = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
DEMO_WS_URL = "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"
PROD_API_URL = "https://external-api.kalshi.com/trade-api/v2"
DEMO_API_URL = "https://external-api.demo.kalshi.co/trade-api/v2"


@dataclass(frozen=True)
class Endpoints:
    """Where to connect.

    Attributes:
        ws_url: the WebSocket URL, ending in ``/trade-api/ws/v2``.
        api_url: the REST base URL, ending in ``/trade-api/v2``.
    """

    ws_url: str
    api_url: str


def resolve_endpoints(
    *, demo: bool, ws_url: str | None = None, api_url: str | None = None
) -> Endpoints:
    """Pick the production or demo endpoints; explicit overrides win.

    Args:
        demo: use Kalshi's demo environment instead of production.
        ws_url: a WebSocket URL that replaces the default (tests, proxies, the simulator).
        api_url: a REST base URL that replaces the default.

    Returns:
        The endpoints to use. Empty overrides count as absent.
    """
    default_ws, default_api = (DEMO_WS_URL, DEMO_API_URL) if demo else (PROD_WS_URL, PROD_API_URL)
    return Endpoints(ws_url=ws_url or default_ws, api_url=api_url or default_api)
