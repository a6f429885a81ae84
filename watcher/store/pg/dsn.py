"""Recognising and masking PostgreSQL connection strings (no driver needed).

A password in the URL is never shown: every log line, error, ``watcher check`` line and
metrics label goes through :func:`mask_dsn`. ``PGPASSWORD`` and ``~/.pgpass`` work as libpq
users expect (asyncpg reads both when the URL carries no password).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

__all__ = ["POSTGRES_SCHEMES", "is_postgres", "mask_dsn"]

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres(location: str | os.PathLike[str]) -> bool:
    """True when ``--db`` names a PostgreSQL server rather than a SQLite file."""
    text = os.fspath(location)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in POSTGRES_SCHEMES


def mask_dsn(location: str | os.PathLike[str]) -> str:
    """The URL with any password replaced by ``***`` (query parameters named ``password``
    too); anything that is not a PostgreSQL URL is returned as it is."""
    text = os.fspath(location)
    if not is_postgres(text):
        return text
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else netloc
    query = "&".join(
        f"{key}=***" if key.lower() in ("password", "sslpassword") else f"{key}={value}"
        for key, _, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
