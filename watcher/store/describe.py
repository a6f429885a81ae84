"""What ``watcher check`` says about ``--db``: reachable or not, and its schema version.

:func:`describe_database` never creates, migrates or writes anything: a SQLite file is opened
read-only (a missing one is reported, not created), a PostgreSQL server is asked for its
version only. Every location it names has its password masked (:func:`mask_dsn`).
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from watcher.store.pg.dsn import is_postgres, mask_dsn

__all__ = ["CONNECT_TIMEOUT_S", "DatabaseInfo", "describe_database"]

#: How long ``watcher check`` waits for a PostgreSQL server.
CONNECT_TIMEOUT_S = 5.0
# ``Path("postgresql://h/db")`` collapses the two slashes; a location that went through a Path
# is put back so that it is still recognised as a URL.
_COLLAPSED_URL = re.compile(r"^(postgres(?:ql)?):/(?!/)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """The state of one database, for a person to read.

    ``problem`` is set when the service could not use the database as it is (unreachable, not
    a watcher database, or written by a newer watcher); ``version`` is None when it could not
    be read (or the SQLite file does not exist yet) and 0 for an empty database.
    """

    location: str  # password masked
    kind: str  # "sqlite" | "postgresql"
    reachable: bool
    version: int | None
    current: int
    problem: str | None = None

    @property
    def line(self) -> str:
        """``database: LOCATION reachable, schema version 1 (current)`` and the like."""
        head = f"database: {self.location}"
        if self.problem is not None:
            return f"{head}: {self.problem}"
        if self.version is None:
            return f"{head} does not exist yet (`watcher start` creates it)"
        if self.version == 0:
            return f"{head} reachable, empty (`watcher start` creates the schema)"
        if self.version < self.current:
            return (
                f"{head} reachable, schema version {self.version}"
                f" (older than {self.current}: `watcher start` migrates it)"
            )
        return f"{head} reachable, schema version {self.version} (current)"


async def describe_database(location: str | os.PathLike[str]) -> DatabaseInfo:
    """Whether ``--db`` can be reached and at which schema version; never raises for a
    database problem (it is in ``problem``)."""
    text = _COLLAPSED_URL.sub(r"\1://", os.fspath(location))
    if is_postgres(text):
        return await _describe_postgres(text)
    return _describe_sqlite(Path(text))


# Private functions


def _describe_sqlite(db: Path) -> DatabaseInfo:
    from watcher.store.schema import SCHEMA_VERSION

    def info(
        version: int | None, problem: str | None = None, reachable: bool = True
    ) -> DatabaseInfo:
        return DatabaseInfo(str(db), "sqlite", reachable, version, SCHEMA_VERSION, problem)

    if not db.exists():
        return info(None, reachable=False)
    try:
        conn = sqlite3.connect(f"file:{quote(str(db.absolute()))}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return info(None, f"cannot be read: {exc}", reachable=False)
    if version > SCHEMA_VERSION:
        return info(version, _newer(version, SCHEMA_VERSION))
    return info(version)


async def _describe_postgres(url: str) -> DatabaseInfo:
    import asyncpg

    from watcher.store.pg.schema import SCHEMA_VERSION, schema_version

    masked = mask_dsn(url)

    def info(
        version: int | None, problem: str | None = None, reachable: bool = True
    ) -> DatabaseInfo:
        return DatabaseInfo(masked, "postgresql", reachable, version, SCHEMA_VERSION, problem)

    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    except (
        OSError,
        TimeoutError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        return info(None, f"unreachable: {_without_password(exc, url)}", reachable=False)
    try:
        version = await schema_version(conn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return info(None, f"cannot be read: {_without_password(exc, url)}")
    finally:
        await conn.close()
    if version > SCHEMA_VERSION:
        return info(version, _newer(version, SCHEMA_VERSION))
    return info(version)


def _newer(version: int, current: int) -> str:
    return (
        f"schema version {version}, newer than the {current} this watcher supports: upgrade watcher"
    )


def _without_password(exc: BaseException, url: str) -> str:
    text = str(exc) or type(exc).__name__
    password = urlsplit(url).password
    if password:
        text = text.replace(password, "***").replace(unquote(password), "***")
    return text
