"""The PostgreSQL phase of ``make bench``: ``watcher start --db postgresql://...`` at full speed.

Runs beside the SQLite phase, against the same firehose, when a PostgreSQL server answers at
``BENCH_POSTGRES_DSN`` (else ``WATCHER_TEST_POSTGRES_DSN``, else the local
``postgresql://postgres@127.0.0.1:5432/postgres``). Each run gets a fresh database, dropped
afterwards; the rate is the growth of ``count(*)`` of ``tickers`` + ``trades`` between the end
of the warm-up and the end of the phase, read over another connection, and the service's
summary line is checked as in the SQLite phase. Without a server, or when ``watcher start``
cannot use it, the phase is skipped and ``pg_skipped`` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.procs import Firehose, Watcher, peak_rss_mb

__all__ = ["KEYS", "fresh_database", "postgres_throughput", "server_dsn", "unreachable"]

#: The keys this phase writes (null when skipped).
KEYS = (
    "pg_persisted_msgs_per_s",
    "pg_every_message_persisted",
    "pg_watcher_exit_code",
    "pg_peak_rss_mb",
    "pg_skipped",
)
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT = 3.0
#: Seconds to wait for the first row in PostgreSQL before the phase is given up.
STARTUP_TIMEOUT = 15.0
#: Tries of one row count (a count can lose a deadlock against partition creation).
COUNT_ATTEMPTS = 5


def server_dsn() -> str:
    """The admin URL of the server to use (a database on it is created and dropped)."""
    return (
        os.environ.get("BENCH_POSTGRES_DSN")
        or os.environ.get("WATCHER_TEST_POSTGRES_DSN")
        or DEFAULT_DSN
    )


async def postgres_throughput(plan: Any, firehose: Firehose) -> dict[str, Any]:
    """``watcher start`` into a fresh PostgreSQL database: rows persisted per second."""
    from watcher.store.pg.dsn import mask_dsn

    admin = server_dsn()
    reason = await unreachable(admin)
    if reason is not None:
        return _skipped(f"no PostgreSQL server at {mask_dsn(admin)}: {reason}")
    folder = plan.folder / f"watcher-pg-{firehose.markets}"
    folder.mkdir()
    async with fresh_database(admin) as dsn:

        async def rows() -> int:
            return await _stored_rows(dsn)

        trades = plan.trades(firehose.markets)
        watcher = Watcher(
            folder,
            firehose,
            plan.keys,
            trades=trades,
            db=dsn,
            rows=rows,
            startup_timeout=STARTUP_TIMEOUT,
        )
        try:
            rate, rss = await _measure(plan, watcher)
        except RuntimeError as exc:
            return _skipped(f"watcher start --db postgresql:// failed: {_last_lines(str(exc))}")
        except TimeoutError:
            return _skipped(_no_rows_reason(folder))
    return {
        "pg_persisted_msgs_per_s": rate,
        "pg_every_message_persisted": _complete(watcher.summary),
        "pg_watcher_exit_code": watcher.returncode,
        "pg_peak_rss_mb": rss,
        "pg_skipped": None,
    }


async def _measure(plan: Any, watcher: Watcher) -> tuple[float, float | None]:
    async with watcher.running():
        await asyncio.sleep(plan.warmup)
        t0, n0 = time.perf_counter(), await watcher.rows()
        await asyncio.sleep(plan.duration)
        t1, n1 = time.perf_counter(), await watcher.rows()
        rss = peak_rss_mb(watcher.pid)
    return (n1 - n0) / (t1 - t0), rss


def _complete(summary: dict[str, int]) -> bool:
    """The summary line's ticks and trades stored equal the frames received."""
    stored = (summary.get("ticks_stored"), summary.get("trades_stored"))
    return bool(summary) and stored == (summary["ticker"], summary["trade"])


def _skipped(reason: str) -> dict[str, Any]:
    print(f" skipped: {reason}", end="", file=sys.stderr, flush=True)
    return {**dict.fromkeys(KEYS), "pg_skipped": reason}


def _no_rows_reason(folder: Path) -> str:
    """Why ``watcher start`` stored nothing in PostgreSQL, from what it left in ``folder``."""
    reason = f"no row reached PostgreSQL within {STARTUP_TIMEOUT:g} s of watcher start"
    if any(folder.rglob("postgres*")):
        return f"{reason}: it wrote a SQLite file named after the URL instead"
    log = (folder / "watcher.err").read_text(errors="replace").splitlines()
    errors = [line for line in log if "ERROR" in line or "error" in line]
    last = _last_lines("\n".join(errors or log))
    return f"{reason}: {last}"


def _last_lines(text: str) -> str:
    """The last two non-empty lines of ``text``, on one line (a reason to print)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-2:])[-300:]


async def unreachable(dsn: str) -> str | None:
    """None when the server answers, else why not."""
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return str(exc) or type(exc).__name__
    await conn.close()
    return None


@contextlib.asynccontextmanager
async def fresh_database(admin: str) -> AsyncIterator[str]:
    """A new, empty database on the server of ``admin``; dropped on exit."""
    import asyncpg

    name = f"watcher_bench_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(admin, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        base, sep, query = admin.partition("?")
        try:
            yield f"{base.rpartition('/')[0]}/{name}{sep}{query}"
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _stored_rows(dsn: str) -> int:
    """``count(*)`` of ``tickers`` + ``trades``; 0 before the schema exists."""
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return 0
    try:
        for attempt in range(COUNT_ATTEMPTS):
            try:
                value = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM tickers) + (SELECT count(*) FROM trades)"
                )
                return int(value or 0)
            except asyncpg.UndefinedTableError:
                return 0
            except asyncpg.PostgresError:
                # A count that meets the writer creating a day's partition can be chosen as
                # the victim of a deadlock; it is only a reader, so it asks again.
                if attempt == COUNT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return 0
