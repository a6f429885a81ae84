"""The one line a stopping service logs: what it received, stored and alerted."""

from __future__ import annotations

from watcher.kalshi.dispatch import ClientStats
from watcher.service.keyless import PollStats
from watcher.store.records import WriterStats

__all__ = ["run_summary"]


def run_summary(
    store: WriterStats, *, alerts: int, client: ClientStats | None, poller: PollStats
) -> str:
    """``stopped: 1200 messages (900 ticker, 300 trade), 900 ticks and 300 trades stored, ...``

    Args:
        store: the tick sink's counters.
        alerts: alerts recorded.
        client: the WebSocket client's counters; None in keyless mode (REST polls instead).
        poller: the REST poller's counters.
    """
    stored = (
        f"{store.rows_written.get('tickers', 0)} ticks and"
        f" {store.rows_written.get('trades', 0)} trades stored"
    )
    fired = f"{alerts} alerts"
    if client is None:
        return (
            f"stopped: {poller.polls} REST polls ({poller.ticks} ticker, {poller.trades} trade),"
            f" {stored}, {poller.errors} failed requests, {fired}"
        )
    received = f"{client.by_type.get('ticker', 0)} ticker, {client.by_type.get('trade', 0)} trade"
    return (
        f"stopped: {client.messages} messages ({received}), {stored}, {client.reconnects}"
        f" reconnects, {client.decode_errors} undecodable frames, {fired}"
    )
