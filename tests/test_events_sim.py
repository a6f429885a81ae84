"""The simulator's demo events (issue 14): their markets wander within a band around a start
just inside the fee boundary, so at the default tick interval (0.2 s) an all-NO basket or a
ladder pair is mispriced after fees within two minutes (600 ticks) — `make run` shows an
event alert within a minute or two."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from watcher.domain.event import EventInfo, EventMarket
from watcher.domain.market import Markets
from watcher.kalshi.fixed import CENT, parse_micros
from watcher.kalshi.sim.events import DEMO_BAND, EventBook
from watcher.kalshi.sim.market import SimMarket
from watcher.rules.event_checks import Basket, arbitrage_baskets, ladder_baskets

RATE = Decimal("0.07")
TWO_MINUTES = 600  # ticks of 0.2 s


def demo() -> tuple[EventBook, list[EventInfo]]:
    book = EventBook()
    infos = [
        EventInfo(
            event.event_ticker,
            None,
            event.title,
            event.mutually_exclusive,
            tuple(
                EventMarket(event.ticker(m), m.strike_type, m.floor_strike, m.cap_strike, 1)
                for m in event.markets
            ),
        )
        for event in book.events.values()
    ]
    return book, infos


def baskets(info: EventInfo, view: Markets) -> list[Basket]:
    if info.mutually_exclusive:
        return arbitrage_baskets(info, view, RATE)
    return ladder_baskets(info, view, RATE)


def test_the_demo_events_start_just_inside_the_fee_boundary():
    """Gross mispricing at the start, eaten by the fees: no alert at once, one a few cents
    away."""
    book, infos = demo()
    rng = random.Random(0)
    view = Markets()
    for info in infos:
        for market in info.markets:
            sim = SimMarket(market.ticker, book.spec(market.ticker), rng, 0)
            view.apply_ticker(market.ticker, 0, sim.yes_bid, sim.yes_ask, None)
    edges = {info.event_ticker: max(b.edge for b in baskets(info, view)) for info in infos}
    assert edges == {"KXELECT-26": -3 * CENT, "KXHIGHTEMP-26DEC05": -4 * CENT}


@pytest.mark.parametrize("seed", range(40))
def test_the_demo_walks_cross_into_a_mispricing_within_two_minutes(seed):
    book, infos = demo()
    rng = random.Random(seed)
    sims = [SimMarket(m.ticker, book.spec(m.ticker), rng, 0) for i in infos for m in i.markets]
    starts = {sim.ticker: sim.yes_bid for sim in sims}
    band = parse_micros(DEMO_BAND)
    for step in range(TWO_MINUTES):
        view = Markets()
        for sim in sims:
            sim.step(rng, step, 0.3)
            assert abs(sim.yes_bid - starts[sim.ticker]) <= band
            view.apply_ticker(sim.ticker, step, sim.yes_bid, sim.yes_ask, None)
        if any(b.edge >= CENT for info in infos for b in baskets(info, view)):
            return
    pytest.fail(f"seed {seed}: no mispricing after fees in {TWO_MINUTES} ticks")
