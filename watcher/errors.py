"""The exception tree of watcher.

Every error the package raises on purpose derives from :class:`WatcherError`::

    WatcherError
     ├── ConfigError            a user file is wrong; carries file:line:col
     ├── KeyFileError           private key missing, public, unsupported, wrong password
     ├── DecodeError            a frame or REST body could not be decoded; keeps raw text
     ├── ProtocolError          the server broke the protocol (unexpected reply, unknown sid)
     │    └── SequenceGap       a sequenced channel skipped numbers; the caller must resync
     ├── ConnectionFailed       one connection attempt failed; the reconnect loop retries it
     │    ├── RateLimited       HTTP 429 at the handshake or on REST: back off longer
     │    └── ServerRejected    the handshake was refused with another HTTP status
     ├── AuthenticationFailed  HTTP 401/403: fatal, retrying cannot help
     ├── RestError             a REST call answered with an error status
     └── StorageError          the database cannot be opened or written

Third-party exceptions are translated at the boundary with :func:`map_exceptions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "ConnectionFailed",
    "DecodeError",
    "KeyFileError",
    "ProtocolError",
    "RateLimited",
    "RestError",
    "SequenceGap",
    "ServerRejected",
    "StorageError",
    "WatcherError",
    "map_exceptions",
]

RAW_PREVIEW = 200


class WatcherError(Exception):
    """Base class of every error raised by watcher."""


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


class KeyFileError(WatcherError):
    """The Kalshi private key cannot be loaded or used."""


class DecodeError(WatcherError):
    """A frame could not be decoded. ``raw`` keeps the first bytes for debugging."""

    def __init__(self, message: str, raw: str | bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw[:RAW_PREVIEW]


class ProtocolError(WatcherError):
    """The peer broke the Kalshi protocol."""


class SequenceGap(ProtocolError):
    """A sequenced subscription skipped one or more ``seq`` numbers."""

    def __init__(self, *, sid: int, channel: str, expected: int, received: int) -> None:
        self.sid = sid
        self.channel = channel
        self.expected = expected
        self.received = received
        super().__init__(
            f"sequence gap on {channel} sid {sid}: expected seq {expected}, got {received}"
        )


class ConnectionFailed(WatcherError):
    """One connection attempt failed; the reconnect loop may try again."""


class RateLimited(ConnectionFailed):
    """The server answered HTTP 429 (too many requests)."""


class ServerRejected(ConnectionFailed):
    """The server refused the WebSocket handshake with an HTTP status."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"server rejected WebSocket connection: HTTP {status}")


class AuthenticationFailed(WatcherError):
    """Kalshi refused the credentials (HTTP 401/403). Retrying cannot help."""


class RestError(WatcherError):
    """A REST call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class StorageError(WatcherError):
    """The SQLite database cannot be opened or written."""


@contextlib.contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], type[WatcherError]]) -> Iterator[None]:
    """Translate third-party exceptions into ours, keeping the cause (httpcore's habit)."""
    try:
        yield
    except Exception as exc:
        for from_exc, to_exc in mapping.items():
            if isinstance(exc, from_exc):
                raise to_exc(str(exc) or type(exc).__name__) from exc
        raise
