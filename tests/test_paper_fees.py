"""Series fee multipliers in paper fees (issue 12, "Fees"), against the simulator over loopback.

Kalshi's taker fee is round_up_to_the_cent(fee_multiplier × 0.07 × C × P × (1 − P)); the desk
asks each series' fee_multiplier once (GET /markets → /events → /series) and falls back to 1.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from watcher.errors import RestError
from watcher.kalshi.messages import RestEventResponse, RestSeriesResponse, decode_rest
from watcher.kalshi.rest import KalshiRestClient
from watcher.kalshi.sim.exchange import SimulatedExchange
from watcher.kalshi.sim.market import SimMarketSpec

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
