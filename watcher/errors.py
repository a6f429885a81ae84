"""The exception tree of watcher.

The service's own errors derive from :class:`WatcherError`. The Kalshi library
(:mod:`watcher.kalshi`) stands alone and has its own tree, rooted at
:class:`~watcher.kalshi.errors.KalshiError`; its classes are re-exported here so the service
imports every error from one place. Catch ``(WatcherError, KalshiError)`` for "anything watcher
raises on purpose". Every exception class in the package::

    Exception
     ├── WatcherError                   the service (this module)
     │    ├── ConfigError               a user file is wrong; carries file:line:col
     │    │    ├── RulesError           rules.yaml is invalid; ``errors`` holds every problem
     │    │    └── PositionsError       trades.json is invalid; ``errors`` holds every problem
     │    ├── SettingsError             an option or environment variable is unusable
     │    ├── StorageError              the database cannot be opened or written
     │    └── PaperError                a paper order was refused (no quote, market closed,
     │                                  limit cannot fill, trades.json changed): nothing written
     ├── KalshiError                    the Kalshi library (watcher.kalshi.errors)
     │    ├── KeyFileError              private key missing, public, unsupported, wrong password
     │    ├── DecodeError               a frame or REST body could not be decoded; keeps raw text
     │    ├── ProtocolError             the server broke the protocol (a book level below zero)
     │    ├── ConnectionFailed          one connection attempt failed; the reconnect loop retries
     │    │    ├── RateLimited          HTTP 429 at the handshake or on REST: back off longer
     │    │    └── ServerRejected       the handshake was refused with another HTTP status
     │    ├── AuthenticationFailed     HTTP 401/403: fatal, retrying cannot help
     │    └── RestError                 a REST call answered with an error status or failed
     ├── OSError
     │    └── FileChanged               trades.json changed between reading and replacing it;
     │                                  the settlement writer retries, a paper order is refused
     └── _TooBig                        private to watcher.rules.yamlsource: a YAML file over
                                        the size limit (never escapes)

``RulesError`` lives in :mod:`watcher.rules.loader`, ``PositionsError`` in
:mod:`watcher.domain.trades_file`, ``SettingsError`` in :mod:`watcher.settings` and
``FileChanged`` in :mod:`watcher.service.jsonfile`.
"""

from __future__ import annotations

from watcher.kalshi.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    DecodeError,
    KalshiError,
    KeyFileError,
    ProtocolError,
    RateLimited,
    RestError,
    ServerRejected,
)

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "ConnectionFailed",
    "DecodeError",
    "KalshiError",
    "KeyFileError",
    "PaperError",
    "ProtocolError",
    "RateLimited",
    "RestError",
    "ServerRejected",
    "StorageError",
    "WatcherError",
]


class WatcherError(Exception):
    """Base class of the service's own errors (the Kalshi library's derive from KalshiError)."""


class ConfigError(WatcherError):
    """A user-edited file is invalid. ``str()`` is ``file:line:col: message``."""

    def __init__(
        self, message: str, *, file: str = "", line: int | None = None, col: int | None = None
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        super().__init__(self.located())

    def located(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.message}" if where else self.message


class StorageError(WatcherError):
    """The SQLite database cannot be opened or written."""


class PaperError(WatcherError):
    """A paper order was refused; ``str()`` says why. Nothing was written."""
