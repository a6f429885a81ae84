"""Shared test settings. Timeouts are multiples of MS so a slow CI can scale them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

#: One "millisecond" of test time; WATCHER_TEST_TIMEOUT_FACTOR=3 makes every timeout 3× longer.
MS = 0.001 * float(os.environ.get("WATCHER_TEST_TIMEOUT_FACTOR", "1"))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KALSHI_MESSAGES = SHARED / "kalshi-messages"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def kalshi_messages() -> Path:
    if not KALSHI_MESSAGES.is_dir():
        pytest.fail(f"../shared/kalshi-messages not found at {KALSHI_MESSAGES}")
    return KALSHI_MESSAGES


#: The PostgreSQL server the Postgres tests use: WATCHER_TEST_POSTGRES_DSN, else the local one.
POSTGRES_DSN = os.environ.get(
    "WATCHER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="module")
def postgres_server() -> str:
    """The admin DSN of a reachable PostgreSQL server. Skipped with the reason when none can
    be reached on a developer's machine; under CI=true that is a failure instead."""
    import asyncio

    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = f"no PostgreSQL server at {POSTGRES_DSN}: {exc}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return POSTGRES_DSN


@pytest.fixture(scope="module")
def postgres_db(postgres_server: str, request: pytest.FixtureRequest) -> Any:
    """A fresh database for this test module (dropped afterwards); yields its DSN."""
    import asyncio
    import secrets

    import asyncpg

    name = f"watcher_test_{request.module.__name__.rsplit('.', 1)[-1]}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    head, _, _ = postgres_server.rpartition("/")
    yield f"{head}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
