"""The PostgreSQL backend: the same ports as SQLite, for a team that outgrew one machine.

Selected by a ``postgresql://`` (or ``postgres://``) ``--db``; asyncpg is imported only then.
Same tables, columns and units as the SQLite schema (integers in micro-units, ``ts_ms``,
``market_ticker``); ``tickers`` and ``trades`` are partitioned by day on ``ts_ms``.
"""
