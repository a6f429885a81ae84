"""``watcher db copy``: the command that moves a SQLite history into PostgreSQL.

The ``db`` command group is defined here and registered by :mod:`watcher.cli` (which stays
within the 400-line module limit that way); like the other commands it holds no logic: the
copy is :class:`watcher.store.pg.copy.HistoryCopy`. Exit codes are :mod:`watcher.cli`'s:
0 every table complete, 1 the target has fewer rows than the source (or the copy was stopped
early), 2 a bad option, 4 a database cannot be used.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, NoReturn

import click

from watcher.errors import StorageError
from watcher.ops.logs import setup_logging

__all__ = ["db_group"]

EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_STORAGE = 4


@click.group("db")
def db_group() -> None:
    """Database tools: copy a SQLite history into PostgreSQL."""


@db_group.command("copy")
@click.option(
    "--from",
    "source",
    metavar="PATH",
    default="data/watcher.db",
    show_default=True,
    help="the SQLite database to copy (opened read-only)",
)
@click.option(
    "--to",
    "target",
    metavar="URL",
    envvar="WATCHER_DB",
    required=True,
    help="the PostgreSQL database, postgresql://USER@HOST[:PORT]/DB [env WATCHER_DB]",
)
@click.option(
    "--chunk-rows",
    default=5000,
    show_default=True,
    type=click.IntRange(min=1),
    help="rows per chunk (one PostgreSQL transaction each)",
)
@click.option("--max-chunks", type=click.IntRange(min=0), hidden=True)  # tests: a killed copy
@click.option("-v", "--verbose", count=True, help="more logging")
def copy(source: str, target: str, chunk_rows: int, max_chunks: int | None, verbose: int) -> None:
    """Copy every table of a SQLite history into PostgreSQL; safe to re-run or resume.

    The target is migrated first; rows already there are skipped, so running the command again
    after an interruption finishes the copy without duplicates. Ends with the row counts of
    both sides; exits 1 when the target has fewer rows than the source.
    """
    from watcher.store.pg.dsn import is_postgres, mask_dsn

    setup_logging(verbose=verbose)
    if not is_postgres(target):
        _fail(f"error: --to must be a postgresql:// URL, but got {mask_dsn(target)}", EXIT_USAGE)
    click.echo(f"copying {source} into {mask_dsn(target)}", err=True)
    try:
        report = asyncio.run(_copy(source, target, chunk_rows, max_chunks))
    except StorageError as exc:
        _fail(f"error: {exc}", EXIT_STORAGE)
    from watcher.store.pg.copy import report_lines

    for line in report_lines(report):
        click.echo(line)
    raise SystemExit(0 if report.is_complete else EXIT_INCOMPLETE)


async def _copy(source: str, target: str, chunk_rows: int, max_chunks: int | None) -> Any:
    from watcher.store.pg.copy import HistoryCopy

    async with HistoryCopy(source, target, chunk_rows=chunk_rows) as job:
        with click.progressbar(length=job.total, label="copying", file=sys.stderr) as bar:
            return await job.run(progress=bar.update, max_chunks=max_chunks)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    raise SystemExit(code)
