"""Helpers shared by the tests that run `watcher start` or read its database from outside."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from .conftest import MS

__all__ = ["count", "env_without_kalshi", "poll"]

WAIT = 10_000 * MS


def env_without_kalshi(**extra: str) -> dict[str, str]:
    """This process's environment minus every KALSHI_* and WATCHER_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KALSHI_", "WATCHER_"))}
    return {**env, **extra}


def count(db: Path, sql: str) -> int:
    """The number ``sql`` selects from ``db`` (read-only); 0 before the DB or table exists."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


async def poll(predicate: Callable[[], object], within: float = WAIT) -> None:
    """Wait until ``predicate()`` is true; for conditions in another process or thread."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the condition lives in another task/process
            await asyncio.sleep(0.02)
