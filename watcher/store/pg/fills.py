"""The PostgreSQL paper fills: the :class:`~watcher.store.ports.PaperFills` of a database.

A small asyncpg pool (:func:`~watcher.store.pg.connect.create_pool`); opening migrates the
schema under its advisory lock, as the alert store does. A fill is inserted with
``ON CONFLICT (fill_key) DO NOTHING RETURNING id``: the unique key makes the insert happen
once across restarts and across instances sharing the database (the second one waits for the
first's transaction, then inserts nothing). Amounts are encoded by
:mod:`watcher.store.fill_values`, the same way SQLite stores them.
"""

from __future__ import annotations

from watcher.store.fill_values import COLUMNS, row_fields, to_row
from watcher.store.pg.pooled import PooledStore
from watcher.store.records import PaperFill

__all__ = ["APPLICATION_NAME", "PostgresFills"]


#: The pool's ``application_name``.
APPLICATION_NAME = "watcher-paper"

_INSERT_SQL = (
    f"INSERT INTO paper_fills ({', '.join(COLUMNS)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(COLUMNS) + 1))})"
    " ON CONFLICT (fill_key) DO NOTHING RETURNING id"
)
_RECENT_SQL = (
    f"SELECT {', '.join(COLUMNS)} FROM paper_fills"
    " WHERE ($1::text IS NULL OR ticker = $1) AND ($2::text IS NULL OR position_id = $2)"
    " ORDER BY ts_ms DESC, id DESC LIMIT $3"
)


class PostgresFills(PooledStore):
    """``paper_fills`` of a PostgreSQL database (see the module).

    Args:
        pool: an asyncpg pool on a migrated database (see :meth:`open`).
    """

    WHAT = "paper fills"
    APPLICATION_NAME = APPLICATION_NAME
    POOL_SIZE = 2

    # Public methods

    async def record(self, fill: PaperFill) -> bool:
        """Store ``fill``; False (nothing stored) when its ``fill_key`` is there already."""
        row = to_row(fill)
        inserted = await self._call(lambda conn: conn.fetchval(_INSERT_SQL, *row))
        return inserted is not None

    async def recent(
        self, *, ticker: str | None = None, position_id: str | None = None, limit: int = 100
    ) -> list[PaperFill]:
        """The newest fills first, of one market and/or position when given."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, but got {limit}")
        rows = await self._call(lambda conn: conn.fetch(_RECENT_SQL, ticker, position_id, limit))
        return [PaperFill(**row_fields(row)) for row in rows]

    # Private methods
