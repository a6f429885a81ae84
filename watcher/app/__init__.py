"""Composition root: builds the parts from :class:`~watcher.settings.Settings` and runs them.

- :mod:`watcher.app.service`: :class:`Service`, one active run (feed → queue → pipeline → store,
  the jobs, the config watcher, the paper desk).
- :mod:`watcher.app.run`: :func:`run_service`, ``watcher start``'s outer loop (leadership,
  standby, signals, the faces that were switched on).
"""

from watcher.app.run import run_service
from watcher.app.service import FEED_CHANNELS, Endpoint, Mode, Service, open_endpoint

__all__ = ["FEED_CHANNELS", "Endpoint", "Mode", "Service", "open_endpoint", "run_service"]
