"""Pricing: exact integer money, half-up rounding, parts that add up to the whole."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from app.clearing import pricing

D = Decimal


def test_design_example_redemption():
    amounts = pricing.redemption(2_000, D("0.01"), D("0.02"), "CNY")
    assert (amounts.gross, amounts.fee, amounts.net) == (2_000, 40, 1_960)


def test_design_example_conversion():
    amounts = pricing.conversion(1_000, D("0.4"), D("0.01"), D("0.02"), "CNY")
    assert (amounts.target_points, amounts.paid, amounts.received, amounts.spread) == (
        400, 1_000, 800, 200)


def test_rounding_is_half_up_on_the_whole_line():
    assert pricing.round_half_up(1, D("0.005"), "CNY") == 1          # 0.5 fen -> 1
    assert pricing.round_half_up(1, D("0.0049"), "CNY") == 0
    assert pricing.round_half_up(3, D("0.0035"), "CNY") == 1          # 1.05 fen, not 3 x 0
    assert pricing.round_half_up(7, D("1.5"), "JPY") == 11            # JPY has no minor unit
    assert pricing.round_half_up(1, D("0.0015"), "KWD") == 2          # KWD has three


def test_conversion_rounds_target_points_down():
    amounts = pricing.conversion(999, D("0.4"), D("0.01"), D("0.02"), "CNY")
    assert amounts.target_points == 399                               # 399.6 -> 399
    assert amounts.spread == 999 - 798


rates = st.decimals(min_value=D("0.00000001"), max_value=D("5"), places=8)
fees = st.decimals(min_value=D("0"), max_value=D("0.99999999"), places=8)


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=8), rates, fees)
def test_redemption_parts_add_up_to_the_whole_and_never_exceed_it(parts, rate, fee):
    whole = pricing.redemption(sum(parts), rate, fee, "CNY")
    done, gross, fee_sum = 0, 0, 0
    for part in parts:
        piece = pricing.redemption_part(done, part, rate, fee, "CNY")
        assert piece.gross >= 0 and piece.fee >= 0 and piece.net >= 0
        done, gross, fee_sum = done + part, gross + piece.gross, fee_sum + piece.fee
        assert gross <= whole.gross and fee_sum <= whole.fee
    assert (gross, fee_sum) == (whole.gross, whole.fee)


@given(st.integers(1, 10**9), rates, fees)
def test_a_smaller_amount_never_costs_more_on_any_line(points, rate, fee):
    # What a partial capture relies on: each line of a part is within the whole's line.
    whole = pricing.redemption(points, rate, fee, "CNY")
    part = pricing.redemption(points // 2, rate, fee, "CNY")
    assert part.gross <= whole.gross and part.fee <= whole.fee and part.net <= whole.net


@given(st.integers(1, 10**9), st.decimals(min_value=D("0.0001"), max_value=D("10"), places=4),
       rates)
def test_spread_is_never_negative_when_the_terms_allow_none(points, ratio, target_value):
    value = ratio * target_value  # the least value the agreement accepts: zero spread
    amounts = pricing.conversion(points, ratio, value, target_value, "CNY")
    assert amounts.spread >= 0
