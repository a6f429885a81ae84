"""Series fee multipliers in paper fees (issue 12, "Fees"), against the simulator over loopback.

Kalshi's taker fee is round_up_to_the_cent(fee_multiplier × 0.07 × C × P × (1 − P)); the desk
asks each series' fee_multiplier once (GET /markets → /events → /series) and falls back to 1,
and an event's fee override in force (GET /events/fee_changes) wins over its series'.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.errors import RestError
from watcher.kalshi.fee_changes import RestEventFeeChange
from watcher.kalshi.messages import (
    RestEvent,
    RestEventResponse,
    RestMarket,
    RestSeries,
    RestSeriesResponse,
    decode_rest,
)
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.kalshi.sim.market import SimMarketSpec
from watcher.service.paper_fees import FeeChange, SeriesFees, effective_multiplier

from .test_paper import open_desk, quote

D = Decimal
T = "KXCPI-26JAN-T0.3"
OTHER = "KXCPI-26JAN-T0.4"


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedExchange]:
    spec = {T: SimMarketSpec(yes_bid="0.4900", yes_ask="0.5000", pinned=True)}
    async with SimulatedExchange(markets=spec, seed=1, fee_multipliers={"KXCPI": "0.5"}) as ex:
        quote(ex, T, "0.4900", "0.5000")
        quote(ex, OTHER, "0.4900", "0.5000")
        yield ex


def test_rest_bodies_decode_kalshi_shaped_events_and_series() -> None:
    """The bodies of docs.kalshi.com's get-event and get-series examples decode; the
    multiplier, a JSON number, decodes exactly; unknown fields are ignored."""
    event = decode_rest(
        b'{"event": {"event_ticker": "KXCPI-26JAN", "series_ticker": "KXCPI", "title": "CPI",'
        b' "sub_title": "Jan", "collateral_return_type": "", "mutually_exclusive": false,'
        b' "category": "Economics", "strike_date": null, "available_on_brokers": true},'
        b' "markets": [{"ticker": "KXCPI-26JAN-T0.3", "event_ticker": "KXCPI-26JAN"}]}',
        RestEventResponse,
    )
    assert (event.event.series_ticker, event.markets[0].ticker) == ("KXCPI", T)
    series = decode_rest(
        b'{"series": {"ticker": "KXCPI", "frequency": "monthly", "title": "CPI",'
        b' "category": "Economics", "tags": [], "settlement_sources": [{"name": "BLS",'
        b' "url": "https://bls.gov"}], "contract_url": "", "contract_terms_url": "",'
        b' "fee_type": "quadratic_with_maker_fees", "fee_multiplier": 0.1,'
        b' "additional_prohibitions": [], "product_metadata": {}}}',
        RestSeriesResponse,
    ).series
    assert (series.fee_type, series.fee_multiplier) == ("quadratic_with_maker_fees", D("0.1"))


async def test_the_client_reads_events_and_series_and_a_missing_one_is_not_found(
    sim: SimulatedExchange,
) -> None:
    async with KalshiRestClient(sim.api_url) as rest:
        event = await rest.get_event("KXCPI-26JAN")
        assert (event.event_ticker, event.series_ticker) == ("KXCPI-26JAN", "KXCPI")
        series = await rest.get_series("KXCPI")
        assert (series.ticker, series.fee_type, series.fee_multiplier) == (
            "KXCPI",
            "quadratic",
            D("0.5"),
        )
        sim.market("KXFED-26DEC-H0")
        assert (await rest.get_series("KXFED")).fee_multiplier == 1  # the default
        with pytest.raises(RestError, match="series not found: NOSUCH") as info:
            await rest.get_series("NOSUCH")
        assert info.value.status == 404
        with pytest.raises(RestError, match="event not found: NOSUCH-1"):
            await rest.get_event("NOSUCH-1")


async def test_a_series_multiplier_of_a_half_halves_every_fee(
    sim: SimulatedExchange, tmp_path: Path
) -> None:
    """Buy, close and a rule's close all pay the series' multiplier."""
    async with open_desk(sim, tmp_path) as paper:
        bought = await paper.desk.buy(T, "yes", 100)
        # 0.5 × 0.07 × 100 × 0.50 × 0.50 = 0.5 × $1.75 = $0.875 → rounded up $0.88
        assert (bought.fill.price, bought.fee) == (D("0.5"), D("0.88"))
        closed = await paper.desk.close(bought.position_id, contracts=40)
        # 0.5 × 0.07 × 40 × 0.49 × 0.51 = 0.349860 → $0.35
        assert closed.exit_fee == D("0.35")
        rule = await paper.desk.close_position(
            bought.position_id, price_micros=400_000, fill_key="rule:stop"
        )
        # 0.5 × 0.07 × 60 × 0.40 × 0.60 = 0.504 → $0.51
        assert rule is not None and rule.exit_fee == D("0.51")
        fees = sorted(f.fee_dollars for f in await paper.fills.recent())
        assert fees == [D("0.35"), D("0.51"), D("0.88")]


async def test_a_failing_series_lookup_falls_back_to_one_and_says_so_once(
    sim: SimulatedExchange, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim.series.failures["KXCPI"] = 500
    caplog.set_level(logging.INFO, logger="watcher.paper")
    async with open_desk(sim, tmp_path) as paper:
        first = await paper.desk.buy(T, "yes", 100)
        second = await paper.desk.buy(OTHER, "yes", 100)
    # multiplier 1: 0.07 × 100 × 0.50 × 0.50 = $1.75
    assert (first.fee, second.fee) == (D("1.75"), D("1.75"))
    lines = [r.getMessage() for r in caplog.records if "fee multiplier 1" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("paper fees of series KXCPI use fee multiplier 1: GET /series")
    assert "HTTP 500" in lines[0]


async def test_a_missing_multiplier_falls_back_and_a_flat_fee_type_keeps_the_formula(
    sim: SimulatedExchange, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim.series.configure("KXCPI", fee_multiplier=None)
    sim.series.configure("KXFLAT", fee_multiplier="2", fee_type="flat")
    quote(sim, "KXFLAT-26-A", "0.4900", "0.5000")
    caplog.set_level(logging.INFO, logger="watcher.paper")
    async with open_desk(sim, tmp_path) as paper:
        assert (await paper.desk.buy(T, "yes", 100)).fee == D("1.75")
        # 2 × 0.07 × 100 × 0.25 = $3.50 (the quadratic formula, though Kalshi's type is flat)
        assert (await paper.desk.buy("KXFLAT-26-A", "yes", 100)).fee == D("3.50")
        await paper.desk.buy("KXFLAT-26-A", "yes", 1)
    messages = [r.getMessage() for r in caplog.records]
    assert "paper fees of series KXCPI use fee multiplier 1: fee_multiplier is None" in messages
    flat = [m for m in messages if "fee_type 'flat'" in m]
    assert flat == ["series KXFLAT has fee_type 'flat': paper fees use the quadratic formula × 2"]


async def test_a_series_lookup_that_failed_is_asked_again_for_the_next_fee(
    sim: SimulatedExchange, tmp_path: Path
) -> None:
    """An outage is not kept for the process: once Kalshi answers again, the series'
    multiplier applies."""
    sim.series.failures["KXCPI"] = 500
    sim.series.configure("KXCPI", fee_multiplier="0.5")
    async with open_desk(sim, tmp_path) as paper:
        assert (await paper.desk.buy(T, "yes", 100)).fee == D("1.75")  # fallback: 1
        del sim.series.failures["KXCPI"]
        # 0.5 × 0.07 × 100 × 0.50 × 0.50 = $0.875, rounded up to $0.88
        assert (await paper.desk.buy(T, "yes", 100)).fee == D("0.88")


# event fee overrides (GET /events/fee_changes): the newest change in force, else the series'

NOW = 1_780_000_000_000
HOUR = 3_600_000
SERIES = D("0.5")


def change(at: int | None, multiplier: str | None) -> FeeChange:
    return FeeChange(at, None if multiplier is None else D(multiplier), "quadratic")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ([], SERIES),  # no override: the series' multiplier
        ([change(NOW - HOUR, "2")], D("2")),  # an override in force
        ([change(NOW, "2")], D("2")),  # in force from this very millisecond
        ([change(NOW - 2 * HOUR, "2"), change(NOW - HOUR, None)], SERIES),  # cleared since
        ([change(NOW + HOUR, "2")], SERIES),  # scheduled for later: not yet
        ([change(NOW - HOUR, "2"), change(NOW + HOUR, "3")], D("2")),  # the one in force
        ([change(NOW - HOUR, None), change(NOW - 2 * HOUR, "2")], SERIES),  # newest, not last
        ([change(NOW - HOUR, "2"), change(NOW - HOUR, "0.25")], D("0.25")),  # a tie: the later
        ([change(None, "2")], D("2")),  # no time given: in force since ever
        ([change(None, "2"), change(NOW - HOUR, "0")], D("0")),  # ... and older than any
    ],
)
def test_the_effective_multiplier_truth_table(changes, expected):
    assert effective_multiplier(changes, SERIES, NOW) == expected


@pytest.mark.parametrize(
    ("schedule", "expected_fee"),
    [
        ([(-1, "2")], D("3.50")),  # 2 × 0.07 × 100 × 0.25 = $3.50 (the series says 0.5)
        ([(-2, "2"), (-1, None)], D("0.88")),  # cleared: the series' 0.5 → $0.875 → $0.88
        ([(+1, "2")], D("0.88")),  # scheduled for tomorrow: the series' for now
        ([(-1, "0")], D("0")),  # a fee-free event
    ],
)
async def test_a_paper_order_pays_the_events_override_in_force(
    sim: SimulatedExchange, tmp_path: Path, schedule, expected_fee
) -> None:
    """The desk knows each market's event (GET /markets names it): its fee override in force
    wins over the series' multiplier, for buys and closes alike."""
    now = datetime.now(UTC)
    for days, multiplier in schedule:
        sim.fee_changes.add("KXCPI-26JAN", multiplier, at=now + timedelta(days=days))
    async with open_desk(sim, tmp_path) as paper:
        bought = await paper.desk.buy(T, "yes", 100)
        assert bought.fee == expected_fee
        closed = await paper.desk.close(bought.position_id)
    # the close at 0.49: 0.07 × 100 × 0.49 × 0.51 = $1.7493, × 2 → $3.50, × 0.5 → $0.88
    assert closed.exit_fee == expected_fee


async def test_a_failing_fee_changes_lookup_warns_once_per_event_and_pays_the_series(
    sim: SimulatedExchange, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kalshi cannot say (HTTP 500): both markets of the event pay the series' 0.5, one WARNING
    names the event; the order goes through."""
    sim.fee_changes.add("KXCPI-26JAN", "2", at=datetime.now(UTC) - timedelta(days=1))
    sim.fee_changes.failures["KXCPI-26JAN"] = 500
    caplog.set_level(logging.INFO, logger="watcher.paper")
    async with open_desk(sim, tmp_path) as paper:
        first = await paper.desk.buy(T, "yes", 100)
        second = await paper.desk.buy(OTHER, "yes", 100)
    assert (first.fee, second.fee) == (D("0.88"), D("0.88"))
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(": HTTP")[0] for r in warned] == [
        "paper fees of event KXCPI-26JAN use its series' fee multiplier:"
        " GET /events/fee_changes failed: kalshi REST error"
    ]


class Clocked:
    """Kalshi's REST for one event, counting the fee-change lookups."""

    def __init__(self, changes: list[RestEventFeeChange]) -> None:
        self.changes, self.asked = changes, 0

    async def get_market(self, ticker: str) -> RestMarket:
        return RestMarket(ticker=ticker, event_ticker="KXE-26")

    async def get_event(self, event_ticker: str) -> RestEvent:
        return RestEvent(event_ticker=event_ticker, series_ticker="KXE")

    async def get_series(self, series_ticker: str) -> RestSeries:
        return RestSeries(ticker=series_ticker, fee_multiplier=SERIES)

    async def get_event_fee_changes(self, event_ticker: str) -> list[RestEventFeeChange]:
        self.asked += 1
        return self.changes


async def test_a_scheduled_override_comes_into_force_at_its_time_and_a_live_update_at_once():
    """The changes are kept max_age: an override scheduled in an hour applies from then on
    without asking again; an event_fee_update applies at once; an unusable multiplier
    (negative) is taken as a clearing."""
    later = RestEventFeeChange(
        event_ticker="KXE-26", fee_multiplier_override=D("2"), scheduled_ts="2026-05-31T21:26:40Z"
    )
    at = later.scheduled_ms
    assert at is not None
    now = [(at - HOUR) / 1000]
    rest = Clocked([later])
    fees = SeriesFees(rest, max_age=2 * 3600, clock=lambda: now[0])
    assert await fees.multiplier("KXE-26-A") == SERIES
    now[0] = at / 1000
    assert await fees.multiplier("KXE-26-B") == D("2")
    assert rest.asked == 1
    fees.apply_update("KXE-26", None)  # cleared live
    assert fees.resolve("KXE-26", "KXE") == SERIES
    fees.apply_update("KXE-26", D("0.25"), "quadratic")
    assert await fees.event_multiplier("KXE-26", "KXE") == D("0.25")
    fees.apply_update("KXE-26", D("-1"))
    assert fees.resolve("KXE-26", "KXE") == SERIES
    assert await fees.event_multiplier("KXE-26", "KXE", fresh=True) == D("2")  # asked again
    assert rest.asked == 2
