"""The reconnect loop's retry/fatal decision, and the words for how a connection ended.

:func:`classify_failure` is the one documented retry/fatal split (websockets'
``process_exception`` is the model): it translates what a connection attempt raised into an
exception of :mod:`watcher.kalshi.errors`, which the loop retries or gives up on.
"""

from __future__ import annotations

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from watcher.kalshi.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    KalshiError,
    RateLimited,
    ServerRejected,
)

__all__ = ["AUTH_HINT", "classify_failure", "close_reason"]

AUTH_HINT = (
    "check KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH, and that the key belongs to this"
    " environment (demo keys only work against demo)"
)


def classify_failure(exc: BaseException) -> KalshiError:
    """Decide what a failed connection attempt means (websockets ``process_exception``).

    Returns an :class:`AuthenticationFailed` (fatal: HTTP 401/403 or an unusable URL), a
    :class:`RateLimited` (HTTP 429: back off longer), or a :class:`ConnectionFailed`
    (anything else: network errors, timeouts, 5xx, a closed connection; retry).

    Raises:
        BaseException: ``exc`` itself when it is none of those (a bug, not a network failure).
    """
    if isinstance(exc, KalshiError):
        return exc
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return AuthenticationFailed(
                f"Kalshi rejected the WebSocket handshake: HTTP {status}; {AUTH_HINT}"
            )
        if status == 429:
            return RateLimited("server rejected WebSocket connection: HTTP 429 too many requests")
        return ServerRejected(status)
    if isinstance(exc, InvalidURI):
        return AuthenticationFailed(f"invalid WebSocket URL: {exc}")
    if isinstance(exc, OSError | TimeoutError | InvalidHandshake | ConnectionClosed):
        return ConnectionFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    raise exc


def close_reason(exc: ConnectionClosed | None, ws: ClientConnection | None = None) -> str:
    """How a connection ended, for the retry log line (who closed it, with which code)."""
    frame = exc.rcvd if exc is not None else (ws.protocol.close_rcvd if ws is not None else None)
    sent = exc.sent if exc is not None else None
    if sent is not None and sent.code == 1011:
        return "watchdog: no answer to pings, connection presumed dead"
    if sent is not None and sent.code in (1002, 1007, 1009):
        # We closed it: a protocol error, invalid data, or a frame over MAX_FRAME_BYTES.
        return f"closed by watcher: close code {sent.code} {sent.reason}".strip()
    if frame is None:
        return "no close frame (connection dropped)"
    return f"close code {frame.code} {frame.reason}".strip()
