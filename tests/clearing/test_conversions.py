"""Conversions: target points rounded down, money with the spread, limits, agreements,
permissions."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.clearing import agreements, conversions, lots, operations
from app.clearing.errors import (
    InsufficientPoints,
    NoAgreement,
    NotPermitted,
    OutsideLimits,
)
from app.clearing.models import Lot
from ledger import balance, get_transaction

from .conftest import T0

T1 = T0 + timedelta(hours=1)


def postings(session, operation):
    txn = get_transaction(session, operation.id)
    return sorted((p.account, p.side, p.amount) for p in txn.postings)


def agrees(session, member, program):
    b = balance(session, f"member:{member}:{program}")
    return lots.check_agrees(session, member, program, b.available) and b.posted


@pytest.fixture
def m(session, world):
    operations.issue(session, "banka", "c-1", "BANKA", 200_000, now=T0)
    return world.member_id


def _miles_into_points(session):
    """SKYMILES -> BANKA at 2 points a mile, 0.02 CNY a mile, 0.01 a point: no spread."""
    return agreements.create_conversion(
        session, "SKYMILES", "BANKA", ratio=Decimal(2), value_per_point=Decimal("0.02"),
        target_value_per_point=Decimal("0.01"), effective_from=T0)


def test_target_points_round_down_and_the_platform_keeps_the_spread(session, world, m):
    op = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 1_001,
                             reference="swap-1", now=T1)
    # 1,001 x 0.4 = 400.4 -> 400 miles; BankA pays 1,001 fen, SkyAir gets 400 x 2 = 800.
    assert postings(session, op) == sorted([
        (f"member:{m}:BANKA", "D", 1_001), ("program:BANKA:converted", "C", 1_001),
        ("program:SKYMILES:issued", "D", 400), (f"member:{m}:SKYMILES", "C", 400),
        ("partner:banka:position:CNY", "D", 1_001), ("partner:skyair:position:CNY", "C", 800),
        ("platform:spread:CNY", "C", 201)])
    assert (op.kind, op.program_code, op.points, op.target_code, op.target_points, op.gross,
            op.fee, op.currency, op.counterparty_id, op.agreement_id, op.reference) == (
        "conversion", "BANKA", 1_001, "SKYMILES", 400, 1_001, 201, "CNY", "banka",
        world.conversion_id, "swap-1")
    lot = session.scalar(select(Lot).where(Lot.transaction_id == op.id))
    assert (lot.program_code, lot.points, lot.earned_at, lot.expires_at) == (
        "SKYMILES", 400, T1, None)
    assert agrees(session, m, "BANKA") == 198_999
    assert agrees(session, m, "SKYMILES") == 400


def test_the_source_owner_may_ask_too_and_the_counterparty_is_the_other_owner(session, m):
    op = conversions.convert(session, "banka", "c-1", "BANKA", "SKYMILES", 100, now=T1)
    assert (op.partner_id, op.counterparty_id, op.target_points) == ("banka", "skyair", 40)


def test_no_spread_line_when_there_is_no_spread_and_the_new_lot_expires_with_its_program(
        session, m):
    _miles_into_points(session)
    operations.issue(session, "skyair", "sa-1", "SKYMILES", 150, now=T0)
    op = conversions.convert(session, "skyair", "sa-1", "SKYMILES", "BANKA", 150, now=T1)
    assert postings(session, op) == sorted([
        (f"member:{m}:SKYMILES", "D", 150), ("program:SKYMILES:converted", "C", 150),
        ("program:BANKA:issued", "D", 300), (f"member:{m}:BANKA", "C", 300),
        ("partner:skyair:position:CNY", "D", 300), ("partner:banka:position:CNY", "C", 300)])
    assert op.fee == 0
    assert session.scalar(select(Lot.expires_at).where(Lot.transaction_id == op.id)) == \
        T1.replace(year=2028)


@pytest.mark.parametrize("points, target", [(100, 40), (100_000, 40_000)])
def test_the_limits_are_inclusive(session, m, points, target):
    op = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", points, now=T1)
    assert op.target_points == target


@pytest.mark.parametrize("points", [99, 100_001])
def test_outside_the_limits_is_refused(session, m, points):
    with pytest.raises(OutsideLimits) as err:
        conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", points, now=T1)
    assert err.value.field == "points"
    assert agrees(session, m, "BANKA") == 200_000


def test_a_conversion_yielding_less_than_one_target_point_is_refused(session, world):
    agreements.create_conversion(session, "COALITION", "SKYMILES", ratio=Decimal("0.3"),
                                 value_per_point=Decimal("0.01"),
                                 target_value_per_point=Decimal("0.02"), effective_from=T0)
    operations.issue(session, "banka", "c-1", "COALITION", 10, now=T0)
    with pytest.raises(OutsideLimits) as err:
        conversions.convert(session, "skyair", "sa-1", "COALITION", "SKYMILES", 3, now=T1)
    assert err.value.field == "points"
    op = conversions.convert(session, "skyair", "sa-1", "COALITION", "SKYMILES", 4, now=T1)
    # The coalition account pays for coalition points: 4 fen, SkyAir gets 2, spread 2.
    assert [p for p in postings(session, op) if p[0].startswith(("partner", "platform"))] == [
        ("partner:skyair:position:CNY", "C", 2), ("platform:coalition:CNY", "D", 4),
        ("platform:spread:CNY", "C", 2)]
    assert (op.target_points, op.counterparty_id) == (1, None)


def test_new_terms_apply_from_their_effective_instant(session, world, m):
    agreements.set_terms(session, world.conversion_id, ratio=Decimal("0.5"),
                         target_value_per_point=Decimal("0.015"),
                         effective_from=T1 + timedelta(minutes=30))
    before = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 999, now=T1)
    after = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 999,
                                now=T1 + timedelta(hours=1))
    assert (before.target_points, before.fee) == (399, 999 - 798)
    # 499.5 -> 499 miles at 0.015 = 748.5 -> 749 fen; spread 250.
    assert (after.target_points, after.fee) == (499, 250)
    assert before.terms_id != after.terms_id


def test_no_agreement_ended_agreement_and_not_yet_in_force_are_refused(session, world, m):
    operations.issue(session, "skyair", "sa-1", "SKYMILES", 500, now=T0)
    cases = [lambda: conversions.convert(session, "skyair", "sa-1", "SKYMILES", "BANKA", 100,
                                         now=T1),
             lambda: conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 100,
                                         now=T0 - timedelta(days=2))]
    for call in cases:
        with pytest.raises(NoAgreement) as err:
            call()
        assert err.value.field == "target"
    agreements.end_agreement(session, world.conversion_id)
    with pytest.raises(NoAgreement):
        conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 100, now=T1)
    assert (agrees(session, m, "BANKA"), agrees(session, m, "SKYMILES")) == (200_000, 500)


@pytest.mark.parametrize("partner, ref", [("telco", "t-1"), ("megamart", "mm-1")])
def test_only_an_owner_of_one_of_the_programs_converts(session, m, partner, ref):
    with pytest.raises(NotPermitted) as err:
        conversions.convert(session, partner, ref, "BANKA", "SKYMILES", 1_000, now=T1)
    assert err.value.field == "source"


def test_expired_points_do_not_convert(session, world):
    operations.issue(session, "banka", "c-1", "BANKA", 500, now=T0)
    later = T0.replace(year=2028)  # the lot expires at this very instant
    operations.issue(session, "banka", "c-1", "BANKA", 200, now=later - timedelta(days=1))
    with pytest.raises(InsufficientPoints) as err:
        conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 300, now=later)
    assert err.value.details["available"] == 200
    op = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 300,
                             now=later - timedelta(microseconds=1))
    assert op.target_points == 120


def test_a_retry_with_the_same_key_converts_once(session, m):
    first = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 1_000,
                                idempotency_key="c-1", now=T1)
    again = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 1_000,
                                idempotency_key="c-1", now=T1 + timedelta(minutes=5))
    assert again.id == first.id
    assert (agrees(session, m, "BANKA"), agrees(session, m, "SKYMILES")) == (199_000, 400)
