"""Opening asyncpg connections and pools, with errors that never show the password.

Every PostgreSQL connection of watcher is made here: each names itself with an
``application_name`` (``watcher-writer``, ``watcher-reader``, ...), so an operator can find it in
``pg_stat_activity``, and a failure becomes a :class:`~watcher.errors.StorageError` naming the
masked URL (:func:`~watcher.store.pg.dsn.mask_dsn`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import asyncpg

from watcher.errors import StorageError
from watcher.store.pg.dsn import mask_dsn

__all__ = [
    "CONNECT_TIMEOUT",
    "DRIVER_ERRORS",
    "close_pool",
    "connect",
    "create_pool",
    "on_pool",
    "storage_error",
]

T = TypeVar("T")

#: Seconds one connection attempt may take.
CONNECT_TIMEOUT = 10.0
#: What a failed connection attempt raises (a malformed URL is a ValueError).
_CONNECT_ERRORS = (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError)
#: What a query on an open pool raises when the server or the connection fails.
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


async def on_pool(pool: Any, body: Callable[[Any], Awaitable[T]], *, what: str) -> T:
    """Run ``body(connection)`` on a pooled connection; a driver error becomes a
    :class:`~watcher.errors.StorageError` naming ``what``."""
    try:
        async with pool.acquire() as conn:
            return await body(conn)
    except DRIVER_ERRORS as exc:
        raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc


async def close_pool(pool: Any) -> None:
    """Close ``pool``, or end it at once when the server is gone."""
    try:
        await pool.close()
    except DRIVER_ERRORS:
        pool.terminate()


def storage_error(action: str, dsn: str, exc: BaseException) -> StorageError:
    """``cannot {action} {masked dsn}: {exc}``, with the password scrubbed from ``exc``'s text."""
    text = str(exc) or type(exc).__name__
    password = urlsplit(dsn).password
    if password:
        for secret in {password, unquote(password)}:
            text = text.replace(secret, "***")
    error = StorageError(f"cannot {action} {mask_dsn(dsn)}: {text}")
    error.__cause__ = exc
    return error


async def connect(dsn: str, *, application_name: str, readonly: bool = False) -> Any:
    """One asyncpg connection named ``application_name``.

    Args:
        dsn: the ``postgresql://`` URL.
        application_name: the name shown in ``pg_stat_activity``.
        readonly: every transaction of the connection is read-only (enforced by the server).

    Raises:
        StorageError: the server cannot be reached or refused the connection.
    """
    try:
        return await asyncpg.connect(
            dsn, timeout=CONNECT_TIMEOUT, server_settings=_settings(application_name, readonly)
        )
    except _CONNECT_ERRORS as exc:
        raise storage_error("connect to", dsn, exc) from exc


async def create_pool(
    dsn: str, *, application_name: str, readonly: bool = False, max_size: int = 4
) -> Any:
    """An asyncpg pool (one connection made at once, up to ``max_size``); errors as in
    :func:`connect`."""
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT,
            server_settings=_settings(application_name, readonly),
        )
    except _CONNECT_ERRORS as exc:
        raise storage_error("connect to", dsn, exc) from exc


def _settings(application_name: str, readonly: bool) -> dict[str, str]:
    settings = {"application_name": application_name}
    if readonly:
        settings["default_transaction_read_only"] = "on"
    return settings
