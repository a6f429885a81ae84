"""The simulated Kalshi exchange: a signed WebSocket and REST server on one loopback port.

Its public names are importable from here. They load on first use (PEP 562), so importing this
package costs nothing until one is used: the service imports the simulator only when asked to
simulate. The modules, from the bottom up: :mod:`~watcher.kalshi.sim.wire` (constants,
counters), :mod:`~watcher.kalshi.sim.values`, :mod:`~watcher.kalshi.sim.market` (the market
model), :mod:`~watcher.kalshi.sim.rest` (REST routing), :mod:`~watcher.kalshi.sim.http`,
:mod:`~watcher.kalshi.sim.state` (what connections share), :mod:`~watcher.kalshi.sim.session`
(one connection), :mod:`~watcher.kalshi.sim.connections` and
:mod:`~watcher.kalshi.sim.exchange` (the server).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watcher.kalshi.sim.exchange import SimulatedExchange, run_simulator
    from watcher.kalshi.sim.http import MAX_CLOCK_SKEW_MS, auth_problem, json_response
    from watcher.kalshi.sim.market import MarketUpdate, SimMarket, SimMarketSpec, TradeRecord
    from watcher.kalshi.sim.rest import route_rest
    from watcher.kalshi.sim.wire import ERROR_TEXT, REST_PREFIX, WS_PATH, MarketStats, SimStats

__all__ = [
    "ERROR_TEXT",
    "MAX_CLOCK_SKEW_MS",
    "REST_PREFIX",
    "WS_PATH",
    "MarketStats",
    "MarketUpdate",
    "SimMarket",
    "SimMarketSpec",
    "SimStats",
    "SimulatedExchange",
    "TradeRecord",
    "auth_problem",
    "json_response",
    "route_rest",
    "run_simulator",
]

#: The module that defines each public name.
_SOURCES = {
    "ERROR_TEXT": "wire",
    "MAX_CLOCK_SKEW_MS": "http",
    "REST_PREFIX": "wire",
    "WS_PATH": "wire",
    "MarketStats": "wire",
    "MarketUpdate": "market",
    "SimMarket": "market",
    "SimMarketSpec": "market",
    "SimStats": "wire",
    "SimulatedExchange": "exchange",
    "TradeRecord": "market",
    "auth_problem": "http",
    "json_response": "http",
    "route_rest": "rest",
    "run_simulator": "exchange",
}


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
