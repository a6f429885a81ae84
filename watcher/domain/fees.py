"""Kalshi's trading fees, exactly: the one fee module of paper orders, P&L and the rules.

Kalshi's fee schedule (kalshi.com/docs/kalshi-fee-schedule.pdf, "General Trading Fees") charges
the taker of each order::

    fee = round_up_to_the_cent(0.07 × C × P × (1 − P))

where ``C`` is the number of contracts and ``P`` the price in dollars (a NO contract's NO price:
``P × (1 − P)`` is the same either way). A series may scale it with its ``fee_multiplier``
(REST ``GET /series/{ticker}``); makers pay ``0.0175 × …`` on some series (not modelled: paper
orders always take). Settlement pays $1 or $0 and costs nothing.

An order that takes several price levels pays one fee on the sum of its fills' ``C × P × (1 − P)``:
Kalshi rounds each fill finer and rebates the excess, so "the total fee across many small fills
converges to what a single equivalent fill would cost" (docs.kalshi.com/getting_started/
fee_rounding). Everything is :class:`~decimal.Decimal` arithmetic on exact operands, so nothing
is lost before the one rounding up. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_CEILING, Decimal
from typing import Final

__all__ = ["CENT_DOLLARS", "TAKER_RATE", "round_up_cents", "taker_fee", "taker_fee_fills"]

#: Kalshi's general taker rate.
TAKER_RATE: Final = Decimal("0.07")
#: One cent, in dollars.
CENT_DOLLARS: Final = Decimal("0.01")


def taker_fee(
    contracts: Decimal,
    price: Decimal,
    *,
    rate: Decimal = TAKER_RATE,
    multiplier: Decimal = Decimal(1),
) -> Decimal:
    """The taker fee of one order: ``rate × multiplier × C × P × (1 − P)``, rounded up to the cent.

    Args:
        contracts: the order's size ``C`` (more than 0).
        price: the fill price ``P`` in dollars (0 ≤ P ≤ 1).
        rate: the fee rate (``fees.taker_rate`` in rules.yaml; Kalshi's 0.07 by default).
        multiplier: the series' ``fee_multiplier``.

    Returns:
        the fee in dollars with two decimals: ``taker_fee(Decimal(100), Decimal("0.5"))`` is
        ``Decimal("1.75")``.

    Raises:
        ValueError: a negative size, rate or multiplier, or a price outside 0–1.
    """
    return taker_fee_fills([(price, contracts)], rate=rate, multiplier=multiplier)


def taker_fee_fills(
    fills: Iterable[tuple[Decimal, Decimal]],
    *,
    rate: Decimal = TAKER_RATE,
    multiplier: Decimal = Decimal(1),
) -> Decimal:
    """The taker fee of one order filled at several prices: one rounding up of the sum.

    Args:
        fills: ``(price in dollars, contracts)`` of each part of the order.
        rate, multiplier: as for :func:`taker_fee`.

    Raises:
        ValueError: as for :func:`taker_fee`.
    """
    if rate < 0 or multiplier < 0:
        raise ValueError(
            f"fee rate and multiplier must not be negative, but got {rate}, {multiplier}"
        )
    total = Decimal(0)
    for price, contracts in fills:
        if not 0 <= price <= 1:
            raise ValueError(f"price must be between 0 and 1 dollar, but got {price}")
        if contracts < 0:
            raise ValueError(f"contracts must not be negative, but got {contracts}")
        total += contracts * price * (1 - price)
    return round_up_cents(rate * multiplier * total)


def round_up_cents(amount: Decimal) -> Decimal:
    """``amount`` rounded up (toward +∞) to the cent: ``0.0175`` → ``0.02``, ``0.01`` → ``0.01``."""
    return amount.quantize(CENT_DOLLARS, rounding=ROUND_CEILING)
