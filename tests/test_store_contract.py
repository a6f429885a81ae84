"""The store's ports, as every backend must honour them: TickSink, AlertStore, ReadModel and
PaperFills.

Test bodies speak only the Protocols of :mod:`watcher.store.ports`; the one ``backend`` fixture
builds the three of them on a fresh database (SQLite: a new file; PostgreSQL: the module's
database from ``postgres_db``, emptied before each test). A new backend is one more fixture
parameter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.domain.alert import Alert
from watcher.kalshi.messages import Ticker, TickerMsg, Trade, decode_message
from watcher.store import open_backend
from watcher.store.ports import AlertStore, Backend, PaperFills, ReadModel, TickSink
from watcher.store.records import AlertStatus, DeliveryStatus, MarketRow, PaperFill

from .support import alert_for, trade_frame

NOW = 1_700_000_000_000
MARKET = "KXCPI-26JAN-T0.3"
LIFECYCLE = (
    '{"type": "market_lifecycle_v2", "sid": 13, "seq": 9, "msg": {"market_ticker": "%s",'
    ' "event_type": "determined", "result": "yes", "settlement_value": "1.0000",'
    ' "determination_ts": 1694721700}}'
)


@dataclass
class Ports:
    sink: TickSink
    alerts: AlertStore
    reader: ReadModel


async def _sqlite(tmp_path: Path) -> AsyncIterator[Ports]:
    backend = open_backend(tmp_path / "watcher.db")
    sink = backend.tick_sink()
    await sink.start()
    alerts = await backend.alert_store()
    reader = await backend.read_model()
    try:
        yield Ports(sink, alerts, reader)
    finally:
        await reader.close()
        await alerts.close()
        await sink.close()


async def _empty_postgres(dsn: str) -> None:
    """Every table emptied (the schema and its partitions kept): a clean database, fast."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'watcher_schema'"
        )
        if tables:
            names = ", ".join(f'"{row[0]}"' for row in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def _postgres(dsn: str) -> AsyncIterator[Ports]:
    backend = open_backend(dsn)
    sink = backend.tick_sink()
    await sink.start()  # migrates a new database
    await _empty_postgres(dsn)
    alerts = await backend.alert_store()
    reader = await backend.read_model()
    try:
        yield Ports(sink, alerts, reader)
    finally:
        await reader.close()
        await alerts.close()
        await sink.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    """A PostgreSQL DSN, or None for SQLite (resolved here, outside the event loop:
    ``postgres_db`` runs its own)."""
    return request.getfixturevalue("postgres_db") if request.param == "postgres" else None


@pytest.fixture
async def ports(database: str | None, tmp_path: Path) -> AsyncIterator[Ports]:
    built = _sqlite(tmp_path) if database is None else _postgres(database)
    async for each in built:
        yield each


@pytest.fixture
def backend(ports: Ports, database: str | None, tmp_path: Path) -> Backend:
    """The backend of ``ports``' database (migrated and emptied by ``ports``)."""
    return open_backend(tmp_path / "watcher.db" if database is None else database)


@pytest.fixture
async def fills(backend: Backend) -> AsyncIterator[PaperFills]:
    store = await backend.paper_fills()
    try:
        yield store
    finally:
        await store.close()


def tick(ts_ms: int, *, market: str = MARKET, bid: str = "0.45") -> Ticker:
    return Ticker(
        sid=1,
        msg=TickerMsg(
            market_ticker=market,
            price_dollars=Decimal("0.455"),
            yes_bid_dollars=Decimal(bid),
            yes_ask_dollars=Decimal("0.55"),
            volume_fp=Decimal("12.5"),
            ts_ms=ts_ms,
        ),
    )


def trade(trade_id: str, ts_ms: int, *, market: str = MARKET) -> Trade:
    return trade_frame(trade_id, market=market, ts_ms=ts_ms)


def make_alert(n: int = 1, targets: tuple[str, ...] = ("phone",), **kw: object) -> Alert:
    return alert_for(n, targets, now=NOW, **kw)


async def events(reader: ReadModel, **kw: object) -> list[tuple[int, str, object]]:
    return [event async for event in reader.replay_events(markets=[MARKET], **kw)]  # type: ignore[arg-type]


# Tick sink → read model


async def test_ticks_and_trades_read_back_exactly(ports: Ports) -> None:
    """Micro-units, ts_ms, received_ms and the late flag survive the round trip."""
    await ports.sink.put(tick(NOW + 1), NOW + 10)
    assert ports.sink.put_nowait(trade("t1", NOW + 2), NOW + 20, late=True)
    await ports.sink.flush()
    latest = await ports.reader.latest_ticker(MARKET)
    assert latest is not None
    assert (latest.ts_ms, latest.received_ms) == (NOW + 1, NOW + 10)
    assert (latest.price_e6, latest.yes_bid_e6, latest.volume_e6) == (455_000, 450_000, 12_500_000)
    [traded] = await ports.reader.trade_history(MARKET)
    assert (traded.trade_id, traded.ts_ms, traded.late) == ("t1", NOW + 2, True)
    assert (traded.yes_price_e6, traded.count_e6, traded.taker_side) == (360_000, 136_000_000, "no")


async def test_history_is_newest_first_and_honours_since_and_limit(ports: Ports) -> None:
    """tick_history/trade_history: at or after since_ms, newest first, at most limit."""
    for n in range(5):
        await ports.sink.put(tick(NOW + n), NOW + n)
        await ports.sink.put(trade(f"t{n}", NOW + n), NOW + n)
    await ports.sink.flush()
    ticks = await ports.reader.tick_history(MARKET, since_ms=NOW + 1, limit=3)
    assert [row.ts_ms for row in ticks] == [NOW + 4, NOW + 3, NOW + 2]
    trades = await ports.reader.trade_history(MARKET, since_ms=NOW + 3)
    assert [row.trade_id for row in trades] == ["t4", "t3"]
    assert await ports.reader.latest_ticker("KXOTHER") is None


async def test_replay_events_are_in_time_order_with_ticks_before_trades(ports: Ports) -> None:
    """replay_events merges kinds by ts_ms (ticks, trades, lifecycle on a tie) within range."""
    await ports.sink.put(trade("late", NOW + 5), NOW)
    await ports.sink.put(tick(NOW + 5), NOW)
    await ports.sink.put(tick(NOW + 1), NOW)
    await ports.sink.put(tick(NOW + 9, market="KXOTHER"), NOW)
    await ports.sink.put(decode_message(LIFECYCLE % MARKET), NOW + 7)
    await ports.sink.flush()
    seen = await events(ports.reader, since_ms=NOW + 1, until_ms=NOW + 10**12)
    assert [kind for _, kind, _ in seen[:3]] == ["ticks", "ticks", "trades"]
    assert [ts for ts, _, _ in seen[:3]] == [NOW + 1, NOW + 5, NOW + 5]
    assert [ts for ts, _, _ in seen] == sorted(ts for ts, _, _ in seen)
    assert {kind for _, kind, _ in seen} == {"ticks", "trades", "lifecycle"}
    assert await ports.reader.count_events(
        since_ms=NOW + 1, until_ms=NOW + 10**12, markets=[MARKET]
    ) == len(seen)
    assert [ts for ts, _, _ in await events(ports.reader, until_ms=NOW + 5)] == [NOW + 1]


async def test_replay_events_read_more_than_one_page(ports: Ports) -> None:
    """A long replay yields every event, in order, across pages."""
    for n in range(2500):
        ports.sink.put_nowait(tick(NOW + n), NOW) or await ports.sink.put(tick(NOW + n), NOW)
    await ports.sink.flush()
    seen = await events(ports.reader)
    assert [ts for ts, _, _ in seen] == [NOW + n for n in range(2500)]


async def test_markets_upsert_keeps_stored_fields(ports: Ports) -> None:
    """A None field keeps the stored value; get_market reads the merged row."""
    await ports.sink.write_market(MarketRow(MARKET, title="CPI", close_time_ms=NOW, updated_ms=1))
    await ports.sink.upsert_markets([MarketRow(MARKET, status="closed", updated_ms=2)])
    await ports.sink.flush()
    market = await ports.reader.get_market(MARKET)
    assert market == MarketRow(MARKET, "CPI", "closed", NOW, None, 2)
    assert await ports.reader.get_market("KXNONE") is None


async def test_events_are_upserted_and_read_back_exactly(ports: Ports) -> None:
    """write_events upserts one row per event ticker; events() reads them back exactly, strikes
    as the exact decimals written, by event ticker."""
    from watcher.domain.event import EventInfo, EventMarket

    ladder = EventInfo(
        "KXRAIN-26", "KXRAIN", "Rain", False,
        (
            EventMarket("KXRAIN-26-T1", "greater", Decimal("1.25"), None, NOW, "active"),
            EventMarket("KXRAIN-26-T2", "between", Decimal("0.1000000001"), Decimal(2)),
        ),
    )  # fmt: skip
    old = EventInfo("KXELECT-26", None, None, True, (EventMarket("KXELECT-26-A"),))
    new = EventInfo("KXELECT-26", "KXELECT", "Who", True, (*old.markets, EventMarket("B")))
    await ports.sink.write_events([old, ladder])
    await ports.sink.write_events([new])
    await ports.sink.flush()
    assert await ports.reader.events() == [new, ladder]


async def test_service_state_is_read_back(ports: Ports) -> None:
    """set_service_state values are what service_state returns."""
    await ports.sink.set_service_state("feed.status", "connected", updated_ms=NOW)
    await ports.sink.set_service_state("feed.status", "stale")
    await ports.sink.flush()
    assert (await ports.reader.service_state())["feed.status"] == "stale"


# Alert store


async def test_alerts_and_rule_states_are_recorded_together_once(ports: Ports) -> None:
    """A key recorded twice inserts once; its rule state is visible with it and reloads."""
    states = {("tight spread", MARKET): '{"armed": false}'}
    ids = await ports.alerts.record([make_alert()], states, now_ms=NOW)
    assert len(ids) == 1
    assert await ports.alerts.record([make_alert(title="again")], now_ms=NOW + 1) == []
    assert await ports.alerts.load_rule_states() == states
    [record] = await ports.alerts.recent()
    assert (record.id, record.status, record.title) == (
        ids[0],
        AlertStatus.PENDING,
        "KXTEST-1 spread 1c",
    )
    assert await ports.reader.last_alert("KXTEST-1") == (NOW, "tight spread")
    assert await ports.reader.open_deliveries() == 1


async def test_suppressed_and_console_alerts_get_no_deliveries(ports: Ports) -> None:
    """Quiet hours → suppressed, no targets → console; neither is ever due."""
    await ports.alerts.record(
        [make_alert(1, suppressed=True), make_alert(2, targets=())], now_ms=NOW
    )
    statuses = {r.market_ticker: r.status for r in await ports.alerts.recent()}
    assert statuses == {"KXTEST-1": AlertStatus.SUPPRESSED, "KXTEST-2": AlertStatus.CONSOLE}
    assert await ports.alerts.due(NOW + 10**9) == []
    assert await ports.alerts.next_due_ms() is None


async def test_deliveries_are_claimed_only_when_due(ports: Ports) -> None:
    """due() returns open deliveries whose time has come; next_due_ms says when."""
    [alert_id] = await ports.alerts.record([make_alert(targets=("a", "b"))], now_ms=NOW)
    assert await ports.alerts.due(NOW - 1) == []
    due = await ports.alerts.due(NOW, limit=1)
    assert [(d.alert_id, d.target, d.attempts) for d in due] == [(alert_id, "a", 0)]
    await ports.alerts.mark_retry(
        [(alert_id, "a")], next_attempt_ms=NOW + 500, error="x", now_ms=NOW
    )
    assert [d.target for d in await ports.alerts.due(NOW + 499)] == ["b"]
    assert await ports.alerts.next_due_ms() == NOW
    await ports.alerts.mark_delivered([(alert_id, "b")], now_ms=NOW + 1)
    assert await ports.alerts.next_due_ms() == NOW + 500
    [again] = await ports.alerts.due(NOW + 500)
    assert (again.target, again.attempts) == ("a", 1)


async def test_settling_keeps_attempts_errors_and_rolls_the_alert_up(ports: Ports) -> None:
    """delivered/retry/config_error/failed count attempts, keep the error and roll up."""
    [alert_id] = await ports.alerts.record([make_alert(targets=("a", "b", "c"))], now_ms=NOW)
    a, b, c = (alert_id, "a"), (alert_id, "b"), (alert_id, "c")
    await ports.alerts.mark_retry([a], next_attempt_ms=NOW + 1, error="json://***: 500", now_ms=NOW)
    await ports.alerts.mark_failed([a], error="gave up", now_ms=NOW + 2)
    await ports.alerts.mark_config_error([b], error="bad url", now_ms=NOW + 2)
    [record] = await ports.alerts.recent()
    assert record.status == AlertStatus.PENDING  # c is still open
    await ports.alerts.mark_delivered([c], now_ms=NOW + 3)
    await ports.alerts.mark_retry([c], next_attempt_ms=NOW + 9, error="late", now_ms=NOW + 4)
    [record] = await ports.alerts.recent()
    found = {d.target: (d.status, d.attempts, d.last_error) for d in record.deliveries}
    assert found == {
        "a": (DeliveryStatus.FAILED, 2, "gave up"),
        "b": (DeliveryStatus.CONFIG_ERROR, 0, "bad url"),
        "c": (DeliveryStatus.DELIVERED, 1, None),
    }
    assert record.status == AlertStatus.PARTIAL
    assert await ports.reader.open_deliveries() == 0


async def test_recent_filters_by_time_status_and_limit(ports: Ports) -> None:
    """recent(): newest first, created at or after since_ms, with the status, at most limit."""
    await ports.alerts.record([make_alert(1)], now_ms=NOW)
    await ports.alerts.record([make_alert(2, targets=())], now_ms=NOW + 10)
    await ports.alerts.record([make_alert(3)], now_ms=NOW + 20)
    assert [r.market_ticker for r in await ports.alerts.recent()] == [
        "KXTEST-3", "KXTEST-2", "KXTEST-1",
    ]  # fmt: skip
    assert [r.market_ticker for r in await ports.alerts.recent(since_ms=NOW + 10)] == [
        "KXTEST-3", "KXTEST-2",
    ]  # fmt: skip
    consoles = await ports.alerts.recent(status=AlertStatus.CONSOLE)
    assert [r.market_ticker for r in consoles] == ["KXTEST-2"]
    assert len(await ports.alerts.recent(limit=1)) == 1
    read = await ports.reader.recent_alerts(since_ms=NOW + 10, status="pending")
    assert [(r.market_ticker, len(r.deliveries)) for r in read] == [("KXTEST-3", 1)]


# Paper fills


def fill(key: str = "k1", **kw: object) -> PaperFill:
    fields: dict[str, object] = {
        "fill_key": key, "position_id": "p1", "ticker": MARKET, "side": "YES",
        "action": "buy", "contracts": Decimal("50"), "price_dollars": Decimal("0.45"),
        "fee_dollars": Decimal("0.87"), "ts_ms": NOW, "source": "cli",
    }  # fmt: skip
    fields.update(kw)
    return PaperFill(**fields)  # type: ignore[arg-type]


async def test_a_fill_key_is_recorded_once(fills: PaperFills) -> None:
    """The second record of a key returns False and stores nothing: one row, the first."""
    first = fill("alert|stop|KX|1", source="rule", action="sell", side="NO")
    assert await fills.record(first) is True
    assert await fills.record(fill("alert|stop|KX|1", contracts=Decimal("7"))) is False
    assert await fills.recent() == [first]


async def test_a_key_recorded_before_a_restart_or_by_another_store_stays_once(
    fills: PaperFills, backend: Backend
) -> None:
    """A store opened later (a restart), or two racing on one key (two instances): one row."""
    await fills.record(fill("k1"))
    again, other = await backend.paper_fills(), await backend.paper_fills()
    try:
        assert await again.record(fill("k1")) is False
        raced = await asyncio.gather(again.record(fill("k2")), other.record(fill("k2")))
        assert sorted(raced) == [False, True]
        assert [f.fill_key for f in await other.recent()] == ["k2", "k1"]
    finally:
        await again.close()
        await other.close()


async def test_fill_amounts_round_trip_exactly(fills: PaperFills) -> None:
    """Whole micro-units, a 7-decimal depth average, a 28-digit average and a sub-micro fee
    come back equal and with the same digits."""
    stored = [
        fill("whole", contracts=Decimal("12.345678"), price_dollars=Decimal("0.4512"), ts_ms=1),
        fill("seven", price_dollars=Decimal("0.4533333"), fee_dollars=Decimal("1.59"), ts_ms=2),
        fill("long", price_dollars=Decimal(136) / Decimal(300), ts_ms=3),
        fill("tiny", price_dollars=Decimal("0.0000005"), fee_dollars=Decimal("0.0000015"), ts_ms=4),
        fill("edges", contracts=Decimal(1), price_dollars=Decimal(1), fee_dollars=0, ts_ms=5),
    ]
    for each in stored:
        assert await fills.record(each)
    back = {f.fill_key: f for f in await fills.recent()}
    assert back == {f.fill_key: f for f in stored}
    assert f"{back['seven'].price_dollars:f}" == "0.4533333"
    assert back["long"].price_dollars == Decimal("0.4533333333333333333333333333")
    assert f"{back['tiny'].fee_dollars:f}" == "0.0000015"
    assert back["whole"].contracts_e6 == 12_345_678


async def test_recent_is_newest_first_and_filters(fills: PaperFills) -> None:
    """recent(): by ts_ms then recording order, newest first; ticker, position, limit."""
    rows = [
        ("a", MARKET, "p1", NOW),
        ("b", "KXOTHER", "p2", NOW + 2),
        ("c", MARKET, "p3", NOW + 1),
        ("d", MARKET, "p1", NOW + 1),
    ]
    for key, market, position, ts in rows:
        await fills.record(fill(key, ticker=market, position_id=position, ts_ms=ts))
    assert [f.fill_key for f in await fills.recent()] == ["b", "d", "c", "a"]
    assert [f.fill_key for f in await fills.recent(ticker=MARKET)] == ["d", "c", "a"]
    assert [f.fill_key for f in await fills.recent(position_id="p1")] == ["d", "a"]
    assert [f.fill_key for f in await fills.recent(ticker="KXOTHER", position_id="p1")] == []
    assert [f.fill_key for f in await fills.recent(ticker=MARKET, limit=2)] == ["d", "c"]
    assert await fills.recent(ticker="KXNONE") == []
    with pytest.raises(ValueError, match="limit"):
        await fills.recent(limit=-1)
