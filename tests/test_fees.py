"""Kalshi's taker fee (watcher.domain.fees) on worked examples, and rules.yaml's `fees:` section.

The formula is Kalshi's general trading fee: round_up_to_the_cent(0.07 × C × P × (1 − P)).
Checked against the fee schedule as quoted by docs.kalshi.com (Series.fee_type points at
kalshi.com/docs/kalshi-fee-schedule.pdf; getting_started/fee_rounding) and published tables:
100 contracts at 5¢/10¢/25¢/50¢ cost $0.34/$0.63/$1.32/$1.75, one contract at 50¢ $0.02, and the
maker rate 0.0175 charges $0.44 for 100 at 50¢.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from watcher.domain.fees import TAKER_RATE, round_up_cents, taker_fee, taker_fee_fills
from watcher.errors import ConfigError
from watcher.rules.loader import load_rules

D = Decimal


@pytest.mark.parametrize(
    ("contracts", "price", "fee"),
    [
        ("100", "0.50", "1.75"),  # 0.07 × 100 × 0.5 × 0.5 = 1.75 exactly
        ("1", "0.50", "0.02"),  # 0.07 × 0.25 = 0.0175 → up to 0.02
        ("10", "0.01", "0.01"),  # 0.07 × 10 × 0.01 × 0.99 = 0.00693 → 0.01
        ("10", "0.45", "0.18"),  # 0.07 × 10 × 0.45 × 0.55 = 0.17325 → 0.18
        ("10", "0.47", "0.18"),  # 0.07 × 10 × 0.47 × 0.53 = 0.17437 → 0.18
        ("100", "0.10", "0.63"),  # 0.07 × 100 × 0.09 = 0.63 exactly: not rounded further
        ("100", "0.05", "0.34"),  # 0.07 × 100 × 0.0475 = 0.3325 → 0.34
        ("100", "0.25", "1.32"),  # 0.07 × 100 × 0.1875 = 1.3125 → 1.32
        ("100", "0.75", "1.32"),  # P × (1 − P) is symmetric: same as 25¢
        ("50", "0.20", "0.56"),  # 0.07 × 50 × 0.16 = 0.56 exactly
        ("1", "0.99", "0.01"),  # 0.07 × 0.0099 = 0.000693 → 0.01
        ("2.5", "0.455", "0.05"),  # 0.07 × 2.5 × 0.455 × 0.545 = 0.043395625 → 0.05
        ("1000", "0.3333", "15.56"),  # 0.07 × 1000 × 0.3333 × 0.6667 = 15.55477... → 15.56
        ("5", "1", "0.00"),  # a price of $1 (or 0) costs nothing
    ],
)
def test_taker_fee_matches_the_worked_example(contracts: str, price: str, fee: str) -> None:
    """The taker fee is 0.07 × C × P × (1 − P) rounded up to the next cent, exactly."""
    result = taker_fee(D(contracts), D(price))
    assert result == D(fee)
    assert str(result) == fee  # two decimals, never a float's digits


def test_the_maker_rate_and_a_series_multiplier_scale_the_fee() -> None:
    """rate and multiplier multiply the formula before the one rounding up."""
    assert taker_fee(D(100), D("0.5"), rate=D("0.0175")) == D("0.44")  # 0.4375 → 0.44
    assert taker_fee(D(100), D("0.5"), multiplier=D("0.5")) == D("0.88")  # 0.875 → 0.88
    assert taker_fee(D(100), D("0.5"), rate=D(0)) == D("0.00")


def test_an_order_filled_at_several_prices_pays_one_rounding_of_the_sum() -> None:
    """Kalshi's fee accumulator makes many fills cost what one equivalent fill costs."""
    # 0.07 × (10 × 0.47 × 0.53 + 15 × 0.48 × 0.52 + 5 × 0.5 × 0.5)
    # = 0.07 × (2.491 + 3.744 + 1.25) = 0.07 × 7.485 = 0.52395 → 0.53
    parts = [(D("0.47"), D(10)), (D("0.48"), D(15)), (D("0.50"), D(5))]
    assert taker_fee_fills(parts) == D("0.53")
    # Three roundings would have charged 0.18 + 0.27 + 0.09 = 0.54.
    assert sum(taker_fee(c, p) for p, c in parts) == D("0.54")


@pytest.mark.parametrize(("contracts", "price"), [("-1", "0.5"), ("1", "1.01"), ("1", "-0.01")])
def test_a_negative_size_or_a_price_outside_a_dollar_is_refused(contracts: str, price: str) -> None:
    """The formula only makes sense for 0 ≤ P ≤ 1 and C ≥ 0."""
    with pytest.raises(ValueError, match="must"):
        taker_fee(D(contracts), D(price))


def test_rounding_up_goes_to_the_next_cent_only_when_needed() -> None:
    """0.0100 stays 0.01; 0.01000001 becomes 0.02."""
    assert round_up_cents(D("0.0100")) == D("0.01")
    assert round_up_cents(D("0.01000001")) == D("0.02")
    assert round_up_cents(D(0)) == D("0.00")


def write_rules(tmp_path: Path, fees: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(f"version: 1\n{fees}rules: []\n", encoding="utf-8")
    return path


def test_rules_yaml_without_fees_uses_kalshis_rate(tmp_path: Path) -> None:
    """The fees section is optional; the taker rate is then 0.07."""
    assert load_rules(write_rules(tmp_path, ""), env={}).fees.taker_rate == TAKER_RATE


@pytest.mark.parametrize("written", ['"0.035"', "0.035", '" 0.035 "'])
def test_rules_yaml_overrides_the_taker_rate_exactly(tmp_path: Path, written: str) -> None:
    """`fees: {taker_rate: "0.035"}` is read as the exact Decimal 0.035 (string or number)."""
    rules = load_rules(write_rules(tmp_path, f"fees: {{taker_rate: {written}}}\n"), env={})
    assert rules.fees.taker_rate == D("0.035")
    assert isinstance(rules.fees.taker_rate, Decimal)


@pytest.mark.parametrize(
    ("fees", "message"),
    [
        ('fees: {taker_rate: "seven"}\n', "must be a rate from 0 to 1"),
        ("fees: {taker_rate: 7}\n", "must be a rate from 0 to 1"),
        ('fees: {taker_rate: "-0.01"}\n', "must be a rate from 0 to 1"),
        ('fees: {maker_rate: "0.01"}\n', "unknown key"),
    ],
)
def test_a_bad_fees_section_is_located(tmp_path: Path, fees: str, message: str) -> None:
    """A bad rate or an unknown key in `fees:` is an error at rules.yaml:LINE:COL."""
    with pytest.raises(ConfigError, match=message) as caught:
        load_rules(write_rules(tmp_path, fees), env={})
    assert "rules.yaml:2:" in str(caught.value)
