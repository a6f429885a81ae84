"""The PostgreSQL read model: the :class:`~watcher.store.ports.ReadModel` over an asyncpg pool.

The pool's connections (``watcher-reader``) are read-only at the server
(``default_transaction_read_only``) and made on first use, like SQLite's reader. Readers never
block the writer (MVCC). A replay reads in one ``REPEATABLE READ`` transaction through three
server-side cursors (ticks, trades, lifecycle events), :data:`REPLAY_PAGE` rows at a time, merged
in time order with the same tie order as SQLite: ticks, trades, lifecycle.
"""

from __future__ import annotations

import asyncio
import heapq
import json
from collections.abc import AsyncIterator, Collection
from typing import Any

import asyncpg

from watcher.domain.controls import ControlState
from watcher.domain.event import EventInfo
from watcher.kalshi import messages as m
from watcher.store.event_json import EVENTS_SQL, event_from_json
from watcher.store.pg.connect import create_pool, storage_error
from watcher.store.pg.controls import load_controls
from watcher.store.pg.dsn import mask_dsn
from watcher.store.records import (
    AlertRecord,
    DeliveryRecord,
    MarketRow,
    ReplayEvent,
    TickerRow,
    TradeRow,
)

__all__ = ["APPLICATION_NAME", "REPLAY_PAGE", "PostgresReadModel"]

#: The reader connections' ``application_name``.
APPLICATION_NAME = "watcher-reader"
#: Rows fetched from each cursor at a time during a replay.
REPLAY_PAGE = 1000

_TICKER_COLUMNS = (
    "market_ticker, ts_ms, received_ms, price_e6, yes_bid_e6, yes_ask_e6, yes_bid_size_e6,"
    " yes_ask_size_e6, last_trade_size_e6, volume_e6, open_interest_e6, dollar_volume,"
    " dollar_open_interest"
)
_TRADE_COLUMNS = (
    "trade_id, market_ticker, ts_ms, received_ms, yes_price_e6, no_price_e6, count_e6,"
    " taker_side, is_block_trade, late"
)
_ALERT_COLUMNS = (
    "id, idempotency_key, rule, market_ticker, severity, title, body, targets, status,"
    " created_ms, updated_ms, suppressed_reason"
)
#: The replay's sources, in tie order: kind, columns, table.
_REPLAYED = (
    ("ticks", _TICKER_COLUMNS, "tickers"),
    ("trades", _TRADE_COLUMNS, "trades"),
    ("lifecycle", "ts_ms, raw", "lifecycle_events"),
)
_SPAN = "market_ticker = ANY($1::text[]) AND ts_ms >= $2 AND ($3::bigint IS NULL OR ts_ms < $3)"
_MIN_MS = -(2**63)
_READ_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class PostgresReadModel:
    """Read-only queries over PostgreSQL.

    Args:
        dsn: the ``postgresql://`` URL (never shown: messages use the masked one).

    Raises:
        StorageError: the database cannot be reached or read (from any method).
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.location = mask_dsn(dsn)
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._pool is not None else "new"
        return f"<PostgresReadModel {self.location!r} {state}>"

    async def __aenter__(self) -> PostgresReadModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Public methods

    async def latest_ticker(self, ticker: str) -> TickerRow | None:
        """The newest ticker update of a market (by ``ts_ms``, then arrival), or ``None``."""
        row = await self._fetchrow(
            f"SELECT {_TICKER_COLUMNS} FROM tickers WHERE market_ticker = $1"
            " ORDER BY ts_ms DESC, id DESC LIMIT 1",
            ticker,
        )
        return None if row is None else TickerRow(*row)

    async def last_alert(self, ticker: str) -> tuple[int, str] | None:
        """``(created_ms, rule)`` of the newest alert about a market, or ``None``."""
        row = await self._fetchrow(
            "SELECT created_ms, rule FROM alerts WHERE market_ticker = $1"
            " ORDER BY created_ms DESC, id DESC LIMIT 1",
            ticker,
        )
        return None if row is None else (int(row[0]), str(row[1]))

    async def service_state(self) -> dict[str, str]:
        """Every ``service_state`` key and its value."""
        rows = await self._fetch("SELECT key, value FROM service_state ORDER BY key")
        return {row[0]: row[1] for row in rows}

    async def tick_history(
        self, ticker: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[TickerRow]:
        """Ticker updates of a market at or after ``since_ms``, newest first, at most ``limit``."""
        rows = await self._fetch(
            f"SELECT {_TICKER_COLUMNS} FROM tickers WHERE market_ticker = $1 AND ts_ms >= $2"
            " ORDER BY ts_ms DESC, id DESC LIMIT $3",
            ticker,
            _since(since_ms),
            limit,
        )
        return [TickerRow(*row) for row in rows]

    async def tick_series(
        self, ticker: str, *, since_ms: int | None = None, points: int = 300
    ) -> list[TickerRow]:
        """Ticker updates at or after ``since_ms`` thinned to at most ``points`` rows, oldest
        first: the newest update of each of ``points`` equal time buckets."""
        if points < 1:
            raise ValueError(f"points must be positive, but got {points}")
        first, last = await self._fetchrow(
            "SELECT min(ts_ms), max(ts_ms) FROM tickers WHERE market_ticker = $1 AND ts_ms >= $2",
            ticker,
            _since(since_ms),
        )
        if first is None:
            return []
        width = max(1, -(-(last - first + 1) // points))
        rows = await self._fetch(
            f"SELECT DISTINCT ON ((ts_ms - $2) / $3) {_TICKER_COLUMNS} FROM tickers"
            " WHERE market_ticker = $1 AND ts_ms >= $2"
            " ORDER BY (ts_ms - $2) / $3, ts_ms DESC, id DESC",
            ticker,
            first,
            width,
        )
        return [TickerRow(*row) for row in rows]

    async def trade_history(
        self, ticker: str, *, since_ms: int | None = None, limit: int = 100
    ) -> list[TradeRow]:
        """Trades of a market at or after ``since_ms``, newest first, at most ``limit``."""
        rows = await self._fetch(
            f"SELECT {_TRADE_COLUMNS} FROM trades WHERE market_ticker = $1 AND ts_ms >= $2"
            " ORDER BY ts_ms DESC, id DESC LIMIT $3",
            ticker,
            _since(since_ms),
            limit,
        )
        return [TradeRow.from_sql(tuple(row)) for row in rows]

    async def get_market(self, ticker: str) -> MarketRow | None:
        """The stored metadata of a market, or ``None``."""
        row = await self._fetchrow(
            "SELECT market_ticker, title, status, close_time_ms, result, updated_ms"
            " FROM markets WHERE market_ticker = $1",
            ticker,
        )
        return None if row is None else MarketRow(*row)

    async def events(self) -> list[EventInfo]:
        """Every stored event expansion, by event ticker."""
        return [event_from_json(row[0]) for row in await self._fetch(EVENTS_SQL)]

    async def recent_alerts(
        self, *, since_ms: int | None = None, status: str | None = None, limit: int = 50
    ) -> list[AlertRecord]:
        """The newest alerts first (created at or after ``since_ms``), with their deliveries."""
        rows = await self._fetch(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE created_ms >= $1"
            " AND ($2::text IS NULL OR status = $2) ORDER BY created_ms DESC, id DESC LIMIT $3",
            since_ms or 0,
            status,
            limit,
        )
        found = await self._fetch(
            "SELECT alert_id, target, status, attempts, next_attempt_ms, last_error, updated_ms"
            " FROM alert_deliveries WHERE alert_id = ANY($1::bigint[])",
            [row[0] for row in rows],
        )
        deliveries: dict[int, list[DeliveryRecord]] = {row[0]: [] for row in rows}
        for alert_id, *fields in found:
            deliveries[alert_id].append(DeliveryRecord(*fields))
        return [_alert_record(row, deliveries[row[0]]) for row in rows]

    async def control_state(self) -> ControlState:
        """The stored mutes (ended ones too, until purged) and the pause."""
        pool = await self._open()
        try:
            async with pool.acquire() as conn:
                return await load_controls(conn)
        except _READ_ERRORS as exc:
            raise storage_error("read", self._dsn, exc) from exc

    async def open_deliveries(self) -> int:
        """How many deliveries are still to send (``pending`` or ``retrying``)."""
        # The statuses of watcher.store.records.OPEN_STATUSES.
        sql = "SELECT count(*) FROM alert_deliveries WHERE status IN ('pending', 'retrying')"
        return int((await self._fetchrow(sql))[0])

    async def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each status."""
        rows = await self._fetch("SELECT status, count(*) FROM alert_deliveries GROUP BY status")
        return {str(row[0]): int(row[1]) for row in rows}

    async def count_events(
        self, *, since_ms: int | None, until_ms: int | None, markets: Collection[str]
    ) -> int:
        """How many ticks, trades and lifecycle events :meth:`replay_events` will yield."""
        args = (sorted(set(markets)), _since(since_ms), until_ms)
        counts = (f"(SELECT count(*) FROM {table} WHERE {_SPAN})" for *_, table in _REPLAYED)
        return int((await self._fetchrow(f"SELECT {' + '.join(counts)}", *args))[0])

    async def replay_events(
        self,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        markets: Collection[str],
    ) -> AsyncIterator[ReplayEvent]:
        """Ticks, trades and lifecycle frames merged in time order (ticks, trades, lifecycle on
        a tie; arrival order within a kind), read :data:`REPLAY_PAGE` rows at a time."""
        args = (sorted(set(markets)), _since(since_ms), until_ms)
        pool = await self._open()
        try:
            async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                sources = [
                    _events(conn, kind, f"SELECT {columns} FROM {table} WHERE {_SPAN}", args)
                    for kind, columns, table in _REPLAYED
                ]
                async for event in _merge(sources):
                    yield event
        except _READ_ERRORS as exc:
            raise storage_error("read recorded events from", self._dsn, exc) from exc

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # Private methods

    async def _open(self) -> Any:
        if self._closed:
            raise storage_error("read", self._dsn, RuntimeError("the read model is closed"))
        async with self._opening:
            if self._pool is None:
                self._pool = await create_pool(
                    self._dsn, application_name=APPLICATION_NAME, readonly=True
                )
        return self._pool

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        pool = await self._open()
        try:
            return list(await pool.fetch(sql, *args))
        except _READ_ERRORS as exc:
            raise storage_error("read", self._dsn, exc) from exc

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        pool = await self._open()
        try:
            return await pool.fetchrow(sql, *args)
        except _READ_ERRORS as exc:
            raise storage_error("read", self._dsn, exc) from exc


def _since(since_ms: int | None) -> int:
    return _MIN_MS if since_ms is None else since_ms


async def _events(
    conn: Any, kind: str, sql: str, args: tuple[Any, ...]
) -> AsyncIterator[ReplayEvent]:
    """One kind's events in ``(ts_ms, id)`` order, through a cursor (inside a transaction)."""
    async for row in conn.cursor(f"{sql} ORDER BY ts_ms, id", *args, prefetch=REPLAY_PAGE):
        if kind == "ticks":
            yield row[1], kind, TickerRow(*row)
        elif kind == "trades":
            yield row[2], kind, TradeRow.from_sql(tuple(row))
        else:
            frame = m.decode_message(row[1])
            if isinstance(frame, m.MarketLifecycle):
                yield row[0], kind, frame


async def _merge(sources: list[AsyncIterator[ReplayEvent]]) -> AsyncIterator[ReplayEvent]:
    """Merge time-ordered sources by ``(ts_ms, source index)``: the index breaks ties."""
    heads: list[tuple[int, int, ReplayEvent]] = []
    for order, source in enumerate(sources):
        if (event := await anext(source, None)) is not None:
            heads.append((event[0], order, event))
    heapq.heapify(heads)
    while heads:
        _, order, event = heads[0]
        yield event
        following = await anext(sources[order], None)
        if following is None:
            heapq.heappop(heads)
        else:
            heapq.heapreplace(heads, (following[0], order, following))


def _alert_record(row: Any, deliveries: list[DeliveryRecord]) -> AlertRecord:
    targets = tuple(json.loads(row[7]))
    # Deliveries in the order of the alert's targets (SQLite keeps insertion order).
    deliveries.sort(key=lambda d: targets.index(d.target) if d.target in targets else len(targets))
    alert_id, key, rule, market, severity, title, body, _, status, created, updated, why = row
    return AlertRecord(
        id=alert_id, key=key, rule=rule, market_ticker=market, severity=severity, title=title,
        body=body, targets=targets, status=status, created_ms=created, updated_ms=updated,
        deliveries=tuple(deliveries), suppressed_reason=why,
    )  # fmt: skip
