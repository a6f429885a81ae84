"""The PostgreSQL schema of watcher: the SQLite tables in PostgreSQL types, its migrations, and
the daily partitions of ``tickers`` and ``trades``.

Same tables, columns and units as :mod:`watcher.store.schema` (every money or count column a
``bigint`` in micro-units with the suffix ``_e6``; ``ts_ms`` in Unix milliseconds). What differs,
and why:

- ``tickers`` and ``trades`` are partitioned by range on ``ts_ms``, one partition per UTC day
  (``tickers_p20260115``); retention drops whole partitions instead of deleting rows. A
  ``*_default`` partition catches a row whose day was not created yet, so no row is ever refused;
  the writer creates the day's partition before writing into it (:func:`ensure_partitions`), so
  the default one stays empty in practice.
- A unique constraint on a partitioned table must include the partition key: ``trades`` is
  unique on ``(trade_id, ts_ms)`` (a trade's time never changes, so this is the same rule as
  SQLite's ``trade_id UNIQUE``), and primary keys are ``(id, ts_ms)``.
- ``alert_deliveries`` has a lease (``leased_by``, ``lease_until_ms``): two instances sharing
  the database claim deliveries with ``FOR UPDATE SKIP LOCKED`` and a claim expires with the
  lease when its instance dies.
- ``store_batches`` records every committed batch id in the batch's own transaction, so a batch
  retried after a dropped connection is written exactly once.
- ``paper_fills`` (version 2) keeps its amounts exactly as SQLite does: ``contracts_e6``,
  ``price_e6`` and ``fee_e6`` (micro-units, the prices rounded half-even), and
  ``price_dollars`` / ``fee_dollars``, NULL unless the integer is inexact, then the exact
  decimal text (:mod:`watcher.store.fill_values`).
- ``events`` (version 3) is SQLite's: one upserted row per ``event_ticker``, ``info`` the JSON
  of the event (:mod:`watcher.store.event_json`).
- ``mutes``, ``paused`` and ``alerts.suppressed_reason`` (version 4) are SQLite's: what the
  faces silence (:mod:`watcher.domain.controls`), shared by every instance on the database.
- The version lives in ``watcher_schema``; :func:`migrate` runs under a transaction-level
  advisory lock, so two instances starting together migrate once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DAY_MS",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "PARTITIONED",
    "SCHEMA_VERSION",
    "day_of",
    "drop_partitions_before",
    "ensure_partitions",
    "migrate",
    "partition_name",
    "schema_version",
]

DAY_MS = 86_400_000
#: The advisory lock key migrations run under (any constant unique to watcher).
MIGRATION_LOCK = 0x57415443_00000001
#: The tables partitioned by day on ``ts_ms``.
PARTITIONED = ("tickers", "trades")

_SCHEMA_V1 = """
CREATE TABLE watcher_schema (version integer PRIMARY KEY, applied_ms bigint NOT NULL);
CREATE SEQUENCE tickers_id_seq;
CREATE TABLE tickers (id bigint NOT NULL DEFAULT nextval('tickers_id_seq'),
  market_ticker text NOT NULL, ts_ms bigint NOT NULL, received_ms bigint NOT NULL,
  price_e6 bigint, yes_bid_e6 bigint, yes_ask_e6 bigint, yes_bid_size_e6 bigint,
  yes_ask_size_e6 bigint, last_trade_size_e6 bigint, volume_e6 bigint, open_interest_e6 bigint,
  dollar_volume bigint, dollar_open_interest bigint, PRIMARY KEY (id, ts_ms))
  PARTITION BY RANGE (ts_ms);
CREATE TABLE tickers_default PARTITION OF tickers DEFAULT;
CREATE INDEX tickers_market_ts ON tickers (market_ticker, ts_ms);
CREATE SEQUENCE trades_id_seq;
CREATE TABLE trades (id bigint NOT NULL DEFAULT nextval('trades_id_seq'),
  trade_id text NOT NULL, market_ticker text NOT NULL, ts_ms bigint NOT NULL,
  received_ms bigint NOT NULL, yes_price_e6 bigint NOT NULL, no_price_e6 bigint NOT NULL,
  count_e6 bigint NOT NULL, taker_side text, is_block_trade integer,
  late integer NOT NULL DEFAULT 0, PRIMARY KEY (id, ts_ms), UNIQUE (trade_id, ts_ms))
  PARTITION BY RANGE (ts_ms);
CREATE TABLE trades_default PARTITION OF trades DEFAULT;
CREATE INDEX trades_market_ts ON trades (market_ticker, ts_ms);
CREATE TABLE orderbook_snapshots (id bigserial PRIMARY KEY, market_ticker text NOT NULL,
  ts_ms bigint NOT NULL, received_ms bigint NOT NULL, seq bigint,
  yes_levels text NOT NULL, no_levels text NOT NULL);
CREATE INDEX orderbook_snapshots_market_ts ON orderbook_snapshots (market_ticker, ts_ms);
CREATE TABLE orderbook_deltas (id bigserial PRIMARY KEY, market_ticker text NOT NULL,
  ts_ms bigint NOT NULL, received_ms bigint NOT NULL, seq bigint, side text NOT NULL,
  price_e6 bigint NOT NULL, delta_e6 bigint NOT NULL);
CREATE TABLE fills (id bigserial PRIMARY KEY, trade_id text NOT NULL UNIQUE, order_id text,
  market_ticker text NOT NULL, ts_ms bigint NOT NULL, received_ms bigint NOT NULL, side text,
  yes_price_e6 bigint NOT NULL, count_e6 bigint NOT NULL, fee_e6 bigint, is_taker integer,
  action text);
CREATE INDEX fills_market_ts ON fills (market_ticker, ts_ms);
CREATE TABLE lifecycle_events (id bigserial PRIMARY KEY, market_ticker text NOT NULL,
  ts_ms bigint NOT NULL, received_ms bigint NOT NULL, event_type text NOT NULL, result text,
  settlement_value_e6 bigint, raw text NOT NULL);
CREATE INDEX lifecycle_events_market_ts ON lifecycle_events (market_ticker, ts_ms);
CREATE TABLE markets (market_ticker text PRIMARY KEY, title text, status text,
  close_time_ms bigint, result text, updated_ms bigint NOT NULL);
CREATE TABLE alerts (id bigserial PRIMARY KEY, idempotency_key text NOT NULL UNIQUE,
  rule text NOT NULL, market_ticker text NOT NULL, severity text NOT NULL, title text NOT NULL,
  body text NOT NULL, targets text NOT NULL, status text NOT NULL,
  created_ms bigint NOT NULL, updated_ms bigint NOT NULL);
CREATE INDEX alerts_created ON alerts (created_ms);
CREATE TABLE alert_deliveries (alert_id bigint NOT NULL REFERENCES alerts (id),
  target text NOT NULL, status text NOT NULL, attempts integer NOT NULL DEFAULT 0,
  next_attempt_ms bigint, last_error text, updated_ms bigint NOT NULL,
  leased_by text, lease_until_ms bigint, PRIMARY KEY (alert_id, target));
CREATE INDEX alert_deliveries_open ON alert_deliveries (next_attempt_ms)
  WHERE status IN ('pending', 'retrying');
CREATE TABLE rule_state (rule text NOT NULL, scope text NOT NULL, state text NOT NULL,
  updated_ms bigint NOT NULL, PRIMARY KEY (rule, scope));
CREATE TABLE service_state (key text PRIMARY KEY, value text NOT NULL,
  updated_ms bigint NOT NULL);
CREATE TABLE store_batches (batch_id text PRIMARY KEY, committed_ms bigint NOT NULL);
"""

_SCHEMA_V2 = """
CREATE TABLE paper_fills (id bigserial PRIMARY KEY, fill_key text NOT NULL UNIQUE,
  position_id text NOT NULL, ticker text NOT NULL, side text NOT NULL, action text NOT NULL,
  contracts_e6 bigint NOT NULL, price_e6 bigint NOT NULL, price_dollars text,
  fee_e6 bigint NOT NULL, fee_dollars text, ts_ms bigint NOT NULL, source text NOT NULL);
CREATE INDEX paper_fills_ticker_ts ON paper_fills (ticker, ts_ms);
"""

_SCHEMA_V3 = """
CREATE TABLE events (event_ticker text PRIMARY KEY, info text NOT NULL,
  updated_ms bigint NOT NULL);
"""

_SCHEMA_V4 = """
CREATE TABLE mutes (target_key text PRIMARY KEY, target text, until_ms bigint NOT NULL,
  set_by text NOT NULL, created_ms bigint NOT NULL);
CREATE TABLE paused (id integer PRIMARY KEY CHECK (id = 1), set_by text NOT NULL,
  since_ms bigint NOT NULL);
ALTER TABLE alerts ADD COLUMN suppressed_reason text;
"""

#: ``(version, sql)`` in ascending order; entry N brings a version N-1 database to version N.
MIGRATIONS: list[tuple[int, str]] = [
    (1, _SCHEMA_V1),
    (2, _SCHEMA_V2),
    (3, _SCHEMA_V3),
    (4, _SCHEMA_V4),
]
#: The schema version this code reads and writes.
SCHEMA_VERSION = MIGRATIONS[-1][0]


async def schema_version(conn: Any) -> int:
    """The database's schema version; 0 for an empty database."""
    exists = await conn.fetchval("SELECT to_regclass('watcher_schema') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM watcher_schema"))


async def migrate(conn: Any, *, now_ms: int) -> int:
    """Apply every pending migration in one transaction under the migration lock.

    Two instances starting together both call this; the second waits for the first's lock,
    then finds nothing to do. Returns the version reached.

    Raises:
        RuntimeError: the database is newer than this code (a later watcher migrated it).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        version = await schema_version(conn)
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the database is at schema version {version}, newer than this watcher's"
                f" {SCHEMA_VERSION}; upgrade watcher"
            )
        for target, script in MIGRATIONS:
            if target > version:
                await conn.execute(script)
                await conn.execute(
                    "INSERT INTO watcher_schema (version, applied_ms) VALUES ($1, $2)",
                    target,
                    now_ms,
                )
                version = target
    return version


def day_of(ts_ms: int) -> int:
    """The UTC day number (days since 1970-01-01) of ``ts_ms``."""
    return ts_ms // DAY_MS


def partition_name(table: str, day: int) -> str:
    """``tickers_p20260115``: the partition of ``table`` for UTC day number ``day``."""
    date = datetime.fromtimestamp(day * DAY_MS / 1000, UTC)
    return f"{table}_p{date:%Y%m%d}"


async def ensure_partitions(conn: Any, days: Iterable[int]) -> list[str]:
    """Create the daily partitions of ``tickers`` and ``trades`` for ``days`` that are missing.

    Rows of a day already in the default partition are moved into the new one in the same
    transaction, so creating a day late never fails. Returns the partitions created.
    """
    created: list[str] = []
    for day in sorted(set(days)):
        for table in PARTITIONED:
            name = partition_name(table, day)
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                continue
            low, high = day * DAY_MS, (day + 1) * DAY_MS
            async with conn.transaction():
                # Parent first, then the default partition: the order a reader of the parent
                # takes them in, so a read at the day's rollover cannot deadlock with this.
                await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                await conn.execute(f"LOCK TABLE {table}_default IN ACCESS EXCLUSIVE MODE")
                if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                    continue  # another instance created it while we waited for the lock
                moved = f"{name}_moving"
                await conn.execute(
                    f"CREATE TEMP TABLE {moved} ON COMMIT DROP AS SELECT * FROM {table}_default"
                    f" WHERE ts_ms >= {low} AND ts_ms < {high}"
                )
                await conn.execute(
                    f"DELETE FROM {table}_default WHERE ts_ms >= {low} AND ts_ms < {high}"
                )
                await conn.execute(
                    f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES FROM ({low}) TO ({high})"
                )
                await conn.execute(f"INSERT INTO {table} SELECT * FROM {moved}")
            created.append(name)
    return created


async def drop_partitions_before(conn: Any, cutoff_ms: int) -> list[str]:
    """Drop every daily partition whose whole day is before ``cutoff_ms`` (retention).

    Returns the partitions dropped. Rows in the default partition are left alone.
    """
    dropped: list[str] = []
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY($1::text[])",
        list(PARTITIONED),
    )
    for (name,) in rows:
        stamp = name.rsplit("_p", 1)[-1]
        if not stamp.isdigit() or len(stamp) != 8:
            continue
        day = int(datetime.strptime(stamp, "%Y%m%d").replace(tzinfo=UTC).timestamp()) * 1000
        if day + DAY_MS <= cutoff_ms:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            dropped.append(name)
    return sorted(dropped)
