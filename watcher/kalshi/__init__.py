"""watcher.kalshi: a reusable Kalshi WebSocket + REST client, sans-I/O core and simulator.

The library stands alone: nothing here imports the rest of watcher (a test checks it). Its
errors are in :mod:`watcher.kalshi.errors`.
"""

__all__ = ["USER_AGENT"]

#: The ``User-Agent`` both clients send unless the caller names itself (the service sends
#: ``watcher/VERSION``).
USER_AGENT = "watcher-kalshi (Python)"
