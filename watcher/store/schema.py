"""The SQLite schema of watcher, its migrations, and the one way to open the database.

Every money or count column is an INTEGER in micro-units with the suffix ``_e6``
(``price_e6 = 450000`` is $0.45, ``count_e6 = 136000000`` is 136 contracts; see
:mod:`watcher.kalshi.fixed`). Nothing is ever stored as a binary float.

:func:`row_for` maps a frame to its table and row and :data:`INSERTS` holds the statement per
table; both live in :mod:`watcher.store.rows` and are re-exported here.
The schema version lives in ``PRAGMA user_version``. :func:`open_database` applies every pending
entry of :data:`MIGRATIONS` in one transaction, so a crash mid-migration leaves the old version.
Version 1 adds these indexes beyond the product brief: ``orderbook_snapshots_market_ts``,
``fills_market_ts`` and ``lifecycle_events_market_ts`` (all on ``(market_ticker, ts_ms)``).

Version 2 adds ``paper_fills``, the paper desk's own fills, unique by ``fill_key``. Its amounts
are exact: ``contracts_e6`` in micro-contracts (at most 6 decimals are accepted);
``price_e6`` and ``fee_e6`` in micro-dollars rounded half-even, for sorting and sums, with
``price_dollars`` / ``fee_dollars`` NULL when that integer is exact and otherwise the exact
decimal text (a depth-walked average price such as ``0.4533333``), which is then the value.
PostgreSQL stores them the same way; :mod:`watcher.store.fill_values` encodes and decodes.

Version 3 adds ``events``: the last REST expansion of each watched event, one row per
``event_ticker`` (upserted), ``info`` the JSON of the event and its markets with strikes as exact
decimal strings (:mod:`watcher.store.event_json`).

Version 4 adds what the faces silence (:mod:`watcher.domain.controls`): ``mutes``, one row per
target (``target_key`` its case-folded text, ``''`` muting everything, ``target`` as given and
NULL for everything), and ``paused``, one row (``id = 1``) while non-critical alerts are held
back; and ``alerts.suppressed_reason``, why a suppressed alert was held back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from watcher.errors import StorageError
from watcher.store.rows import INSERTS, row_for

__all__ = [
    "BUSY_TIMEOUT_MS",
    "INSERTS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TABLES",
    "open_database",
    "row_for",
    "split_statements",
]

logger = logging.getLogger("watcher.store")

#: How long a connection waits for another writer's lock before failing, in milliseconds.
BUSY_TIMEOUT_MS = 5000

_SCHEMA_V1 = """
CREATE TABLE tickers (id INTEGER PRIMARY KEY, market_ticker TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL, price_e6 INTEGER, yes_bid_e6 INTEGER, yes_ask_e6 INTEGER,
  yes_bid_size_e6 INTEGER, yes_ask_size_e6 INTEGER, last_trade_size_e6 INTEGER, volume_e6 INTEGER,
  open_interest_e6 INTEGER, dollar_volume INTEGER, dollar_open_interest INTEGER);
CREATE INDEX tickers_market_ts ON tickers(market_ticker, ts_ms);
CREATE TABLE trades (id INTEGER PRIMARY KEY, trade_id TEXT NOT NULL UNIQUE,
  market_ticker TEXT NOT NULL, ts_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
  yes_price_e6 INTEGER NOT NULL, no_price_e6 INTEGER NOT NULL, count_e6 INTEGER NOT NULL,
  taker_side TEXT, is_block_trade INTEGER,
  late INTEGER NOT NULL DEFAULT 0);  -- late = 1: backfilled over REST after a seq gap
CREATE INDEX trades_market_ts ON trades(market_ticker, ts_ms);
CREATE TABLE orderbook_snapshots (id INTEGER PRIMARY KEY, market_ticker TEXT NOT NULL,
  ts_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, seq INTEGER,
  yes_levels TEXT NOT NULL, no_levels TEXT NOT NULL);
  -- levels: JSON [[price_e6, count_e6], ...], no_levels in NO-leg pricing
CREATE INDEX orderbook_snapshots_market_ts ON orderbook_snapshots(market_ticker, ts_ms);
CREATE TABLE orderbook_deltas (id INTEGER PRIMARY KEY, market_ticker TEXT NOT NULL,
  ts_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, seq INTEGER, side TEXT NOT NULL,
  price_e6 INTEGER NOT NULL, delta_e6 INTEGER NOT NULL);
CREATE TABLE fills (id INTEGER PRIMARY KEY, trade_id TEXT NOT NULL UNIQUE, order_id TEXT,
  market_ticker TEXT NOT NULL, ts_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, side TEXT,
  yes_price_e6 INTEGER NOT NULL, count_e6 INTEGER NOT NULL, fee_e6 INTEGER, is_taker INTEGER,
  action TEXT);
CREATE INDEX fills_market_ts ON fills(market_ticker, ts_ms);
CREATE TABLE lifecycle_events (id INTEGER PRIMARY KEY, market_ticker TEXT NOT NULL,
  ts_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, event_type TEXT NOT NULL, result TEXT,
  settlement_value_e6 INTEGER, raw TEXT NOT NULL);
CREATE INDEX lifecycle_events_market_ts ON lifecycle_events(market_ticker, ts_ms);
CREATE TABLE markets (market_ticker TEXT PRIMARY KEY, title TEXT, status TEXT,
  close_time_ms INTEGER, result TEXT, updated_ms INTEGER NOT NULL);
CREATE TABLE alerts (id INTEGER PRIMARY KEY, idempotency_key TEXT NOT NULL UNIQUE,
  rule TEXT NOT NULL, market_ticker TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL,
  body TEXT NOT NULL,
  targets TEXT NOT NULL,  -- JSON list of target names
  status TEXT NOT NULL,   -- pending | delivered | partial | failed | suppressed | console
  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX alerts_created ON alerts(created_ms);
CREATE TABLE alert_deliveries (alert_id INTEGER NOT NULL REFERENCES alerts(id),
  target TEXT NOT NULL,
  status TEXT NOT NULL,   -- pending | delivered | retrying | config_error | failed
  attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER, last_error TEXT,
  updated_ms INTEGER NOT NULL, PRIMARY KEY (alert_id, target));
CREATE INDEX alert_deliveries_open ON alert_deliveries(next_attempt_ms)
  WHERE status IN ('pending', 'retrying');
CREATE TABLE rule_state (rule TEXT NOT NULL, scope TEXT NOT NULL, state TEXT NOT NULL,
  updated_ms INTEGER NOT NULL, PRIMARY KEY (rule, scope));  -- state: JSON owned by the rules
CREATE TABLE service_state (key TEXT PRIMARY KEY, value TEXT NOT NULL,
  updated_ms INTEGER NOT NULL);
"""

_SCHEMA_V2 = """
CREATE TABLE paper_fills (id INTEGER PRIMARY KEY, fill_key TEXT NOT NULL UNIQUE,
  position_id TEXT NOT NULL, ticker TEXT NOT NULL,
  side TEXT NOT NULL,     -- YES | NO
  action TEXT NOT NULL,   -- buy | sell
  contracts_e6 INTEGER NOT NULL,
  price_e6 INTEGER NOT NULL, price_dollars TEXT,  -- text: the exact price when not whole e6
  fee_e6 INTEGER NOT NULL, fee_dollars TEXT,      -- text: the exact fee when not whole e6
  ts_ms INTEGER NOT NULL,
  source TEXT NOT NULL);  -- cli | rule | web | chat
CREATE INDEX paper_fills_ticker_ts ON paper_fills(ticker, ts_ms);
"""

_SCHEMA_V3 = """
CREATE TABLE events (event_ticker TEXT PRIMARY KEY,
  info TEXT NOT NULL,  -- JSON of the event and its markets, strikes as exact decimal strings
  updated_ms INTEGER NOT NULL);
"""

_SCHEMA_V4 = """
CREATE TABLE mutes (target_key TEXT PRIMARY KEY,  -- target case-folded; '' mutes everything
  target TEXT,  -- as given: a market ticker, a rule name or rule@TICKER; NULL for everything
  until_ms INTEGER NOT NULL, set_by TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE paused (id INTEGER PRIMARY KEY CHECK (id = 1), set_by TEXT NOT NULL,
  since_ms INTEGER NOT NULL);
ALTER TABLE alerts ADD COLUMN suppressed_reason TEXT;  -- quiet hours | muted ... | paused ...
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

#: Every table of the current schema (used to validate table names in queries).
TABLES = frozenset(
    "tickers trades orderbook_snapshots orderbook_deltas fills lifecycle_events markets alerts"
    " alert_deliveries rule_state service_state paper_fills events mutes paused".split()
)


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (comments and semicolons in them are kept).

    ``executescript`` commits any open transaction first, so migrations run statement by
    statement inside their own ``BEGIN IMMEDIATE`` instead.
    """
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements


def open_database(
    path: str | os.PathLike[str], *, readonly: bool = False, busy_timeout_ms: int = BUSY_TIMEOUT_MS
) -> sqlite3.Connection:
    """Open (and for a writer, create and migrate) the watcher database.

    A writer creates the parent directory and a new file with mode 0600 before SQLite touches
    it, switches to WAL with ``synchronous=NORMAL``, turns on foreign keys and applies pending
    migrations in one transaction. A reader (``readonly=True``) opens ``file:...?mode=ro`` and
    never blocks the writer. The connection is in autocommit mode (``isolation_level=None``):
    callers issue ``BEGIN``/``COMMIT`` themselves.

    Args:
        path: the database file.
        readonly: open for reading only; the file must exist and be at the current version.
        busy_timeout_ms: how long to wait for another connection's lock.

    Returns:
        An open connection, usable only in the thread that opened it.

    Raises:
        StorageError: the path cannot be created or written, the file is not a database, or its
            schema version is newer than :data:`SCHEMA_VERSION` (or, for a reader, older).
    """
    db = Path(path)
    if readonly:
        conn = _connect_readonly(db)
    else:
        _create_file(db)
        conn = _connect(db, str(db), uri=False)
    try:
        _configure(conn, db, readonly=readonly, busy_timeout_ms=busy_timeout_ms)
        if readonly:
            _check_readable_version(conn, db)
        else:
            _migrate(conn, db)
    except BaseException:
        conn.close()
        raise
    return conn


# Private functions


def _create_file(db: Path) -> None:
    """Create the parent directory and, if missing, an empty file with mode 0600."""
    try:
        if not db.parent.is_dir():
            db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
    except OSError as exc:
        raise StorageError(f"cannot create database {db}: {exc.strerror or exc}") from exc
    os.close(fd)
    logger.info("created database %s", db)


def _connect(db: Path, target: str, *, uri: bool) -> sqlite3.Connection:
    try:
        return sqlite3.connect(target, uri=uri, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {db}: {exc}") from exc


def _connect_readonly(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise StorageError(f"cannot open database {db} for reading: no such file")
    return _connect(db, f"file:{quote(str(db.absolute()))}?mode=ro", uri=True)


def _configure(conn: sqlite3.Connection, db: Path, *, readonly: bool, busy_timeout_ms: int) -> None:
    """Apply the connection pragmas; the first read also proves the file is a database."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA user_version").fetchone()
            return
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {db}: {exc}") from exc
    if str(mode).lower() != "wal":
        raise StorageError(f"cannot switch database {db} to WAL mode: journal_mode is {mode}")


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(db: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"database {db} has schema version {version}, newer than the {SCHEMA_VERSION} this"
            " watcher supports: upgrade watcher or use another --db"
        )


def _check_readable_version(conn: sqlite3.Connection, db: Path) -> None:
    try:
        version = _user_version(conn)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read database {db}: {exc}") from exc
    _refuse_newer(db, version)
    if version < SCHEMA_VERSION:
        raise StorageError(
            f"database {db} has schema version {version}, older than {SCHEMA_VERSION}:"
            " run `watcher start` once to migrate it"
        )


def _migrate(conn: sqlite3.Connection, db: Path) -> None:
    """Bring the database to :data:`SCHEMA_VERSION` in one transaction (or leave it as it was)."""
    try:
        if _user_version(conn) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")  # re-read under the write lock: another opener may race
        try:
            version = _user_version(conn)
            _refuse_newer(db, version)
            for target, script in MIGRATIONS:
                if target > version:
                    for statement in split_statements(script):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StorageError(f"cannot migrate database {db}: {exc}") from exc
    logger.info("migrated database %s from schema version %d to %d", db, version, SCHEMA_VERSION)
