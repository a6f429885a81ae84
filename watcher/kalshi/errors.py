"""The exception tree of watcher.kalshi.

Every error the library raises on purpose derives from :class:`KalshiError`::

    KalshiError
     ├── KeyFileError           private key missing, public, unsupported, wrong password
     ├── DecodeError            a frame or REST body could not be decoded; keeps raw text
     ├── ProtocolError          the server broke the protocol (a book level below zero)
     ├── ConnectionFailed       one connection attempt failed; the reconnect loop retries it
     │    ├── RateLimited       HTTP 429 at the handshake or on REST: back off longer
     │    └── ServerRejected    the handshake was refused with another HTTP status
     ├── AuthenticationFailed  HTTP 401/403: fatal, retrying cannot help
     └── RestError             a REST call answered with an error status or failed in transit

Third-party exceptions are translated where the library calls the third party, keeping the
cause with ``raise ... from exc``: websockets' in
:func:`~watcher.kalshi.client.classify_failure`, httpx's in
:class:`~watcher.kalshi.rest.KalshiRestClient`, msgspec's in the decoders of
:mod:`watcher.kalshi.messages`, cryptography's in :mod:`watcher.kalshi.auth`.

A sequence gap is not an exception: the protocol reports it as a
:class:`~watcher.kalshi.protocol.SequenceGapEvent` and the session goes on (it resyncs itself).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "ConnectionFailed",
    "DecodeError",
    "KalshiError",
    "KeyFileError",
    "ProtocolError",
    "RateLimited",
    "RestError",
    "ServerRejected",
]

RAW_PREVIEW = 200


class KalshiError(Exception):
    """Base class of every error raised by watcher.kalshi."""


class KeyFileError(KalshiError):
    """The Kalshi private key cannot be loaded or used."""


class DecodeError(KalshiError):
    """A frame could not be decoded. ``raw`` keeps the first bytes for debugging."""

    def __init__(self, message: str, raw: str | bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw[:RAW_PREVIEW]


class ProtocolError(KalshiError):
    """The peer broke the Kalshi protocol."""


class ConnectionFailed(KalshiError):
    """One connection attempt failed; the reconnect loop may try again."""


class RateLimited(ConnectionFailed):
    """The server answered HTTP 429 (too many requests)."""


class ServerRejected(ConnectionFailed):
    """The server refused the WebSocket handshake with an HTTP status."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"server rejected WebSocket connection: HTTP {status}")


class AuthenticationFailed(KalshiError):
    """Kalshi refused the credentials (HTTP 401/403). Retrying cannot help."""


class RestError(KalshiError):
    """A REST call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)
