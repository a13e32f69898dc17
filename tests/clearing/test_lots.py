"""Points lots: oldest first, exact expiry, clawbacks and refunds on the right lots, and
the lots always agreeing with the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from app.clearing import conversions, imports, lots, operations, redemptions
from app.clearing.errors import InsufficientPoints
from app.clearing.models import Lot
from ledger import balance, expire_due

from .conftest import T0

DAY = timedelta(days=1)


def state(session, member, program="BANKA"):
    """(days after T0 the lot was earned, points left), oldest first."""
    return [((lot.earned_at - T0) // DAY, lot.remaining)
            for lot in lots.lots(session, member, program)]


def issue(session, points, day, program="BANKA"):
    return operations.issue(session, "banka" if program == "BANKA" else "skyair",
                            "c-1" if program == "BANKA" else "sa-1", program, points,
                            now=T0 + day * DAY)


def agreeing(session, member, program="BANKA"):
    """The ledger's available points, after checking the lots hold exactly them."""
    available = balance(session, f"member:{member}:{program}").available
    assert lots.check_agrees(session, member, program, available), state(session, member, program)
    return available


def test_points_are_spent_oldest_first(session, world):
    m = world.member_id
    for points, day in ((300, 2), (100, 0), (200, 1)):
        issue(session, points, day)
    redemptions.redeem(session, "megamart", "mm-1", "BANKA", 250, now=T0 + 3 * DAY)
    assert state(session, m) == [(1, 50), (2, 300)]
    redemptions.redeem(session, "megamart", "mm-1", "BANKA", 51, now=T0 + 3 * DAY)
    assert state(session, m) == [(2, 299)]


def test_lots_earned_at_the_same_instant_are_spent_in_the_order_they_were_opened(session, world):
    first, second = issue(session, 10, 0), issue(session, 20, 0)
    lot_of = {op.id: lot.id for op in (first, second) for lot in [session.scalar(
        select(Lot).where(Lot.transaction_id == op.id))]}
    redemptions.redeem(session, "megamart", "mm-1", "BANKA", 15, now=T0 + DAY)
    assert [(lot.id, lot.remaining) for lot in lots.lots(session, world.member_id, "BANKA")] \
        == [(lot_of[second.id], 15)]


def test_expired_points_are_not_spendable_even_before_any_expiry_job(session, world):
    m = world.member_id
    issue(session, 100, 0)                       # expires at T0 + 24 months exactly
    issue(session, 50, 365)
    expiry = T0.replace(year=T0.year + 2)
    assert lots.choose(session, m, "BANKA", 150, expiry - timedelta(microseconds=1)) != []
    with pytest.raises(InsufficientPoints) as err:
        redemptions.redeem(session, "megamart", "mm-1", "BANKA", 51, now=expiry)
    assert err.value.details == {"available": 50, "required": 51}
    # The ledger still holds all 150 until the expiry job books the breakage.
    assert balance(session, f"member:{m}:BANKA").posted == 150
    redemptions.redeem(session, "megamart", "mm-1", "BANKA", 50, now=expiry)
    assert state(session, m) == [(0, 100)]
    assert lots.due(session, m, "BANKA", expiry) == [(lots.lots(session, m, "BANKA")[0].id, 100)]
    assert agreeing(session, m) == 100


@pytest.mark.parametrize("earned, months, expires", [
    (datetime(2024, 1, 31, tzinfo=UTC), 1, datetime(2024, 2, 29, tzinfo=UTC)),
    (datetime(2024, 2, 29, tzinfo=UTC), 24, datetime(2026, 2, 28, tzinfo=UTC)),
    (datetime(2025, 11, 30, 23, 59, tzinfo=UTC), 3,
     datetime(2026, 2, 28, 23, 59, tzinfo=UTC)),
    (datetime(2025, 12, 15, tzinfo=UTC), 120, datetime(2035, 12, 15, tzinfo=UTC)),
])
def test_expiry_is_the_same_day_and_time_months_later_or_the_months_last_day(
        earned, months, expires):
    assert lots.expiry_of(months, earned) == expires
    assert lots.expiry_of(None, earned) is None


def test_a_clawback_takes_its_own_lot_first_then_the_oldest(session, world):
    m = world.member_id
    issue(session, 100, 0)
    own = issue(session, 100, 1)
    issue(session, 100, 2)
    operations.clawback(session, "banka", own.id, 60, now=T0 + 3 * DAY)
    assert state(session, m) == [(0, 100), (1, 40), (2, 100)]
    redemptions.redeem(session, "megamart", "mm-1", "BANKA", 10, now=T0 + 3 * DAY)
    assert state(session, m) == [(0, 90), (1, 40), (2, 100)]
    redemptions.redeem(session, "megamart", "mm-1", "BANKA", 125, now=T0 + 3 * DAY)
    assert state(session, m) == [(1, 5), (2, 100)]
    operations.clawback(session, "banka", own.id, 40, now=T0 + 3 * DAY)  # 5 own, 35 oldest
    assert state(session, m) == [(2, 65)]
    assert agreeing(session, m) == 65


def test_partial_refunds_go_back_newest_lot_first(session, world):
    m = world.member_id
    issue(session, 100, 0)
    issue(session, 200, 1)
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 250, now=T0 + 2 * DAY)
    assert state(session, m) == [(1, 50)]
    redemptions.refund(session, "megamart", spent.id, 100, now=T0 + 3 * DAY)
    assert state(session, m) == [(1, 150)]
    redemptions.refund(session, "megamart", spent.id, 100, now=T0 + 3 * DAY)
    assert state(session, m) == [(0, 50), (1, 200)]
    redemptions.refund(session, "megamart", spent.id, now=T0 + 3 * DAY)
    assert state(session, m) == [(0, 100), (1, 200)]


def test_a_capture_spends_the_lots_its_authorisation_reserved(session, world):
    m = world.member_id
    issue(session, 100, 0)
    issue(session, 100, 1)
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 150, now=T0 + 2 * DAY)
    assert state(session, m) == [(1, 50)]
    issue(session, 100, -1)  # imported-style older lot arriving after the authorisation
    redemptions.capture(session, "megamart", auth.id, 120, now=T0 + 2 * DAY)
    assert state(session, m) == [(-1, 100), (1, 80)]
    assert agreeing(session, m) == 180


def test_the_lots_agree_with_the_ledger_after_every_kind_of_operation(session, world):
    m, at = world.member_id, T0 + 400 * DAY

    def after(expected, program="BANKA"):
        assert agreeing(session, m, program) == expected

    issued = issue(session, 1_000, 0)
    after(1_000)
    imports.import_points(session, "banka", "BANKA", [
        {"customer_ref": "c-1", "points": 500, "earned_at": T0 - 30 * DAY}], now=T0)
    after(1_500)
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 400, now=at)
    after(1_100)
    redemptions.refund(session, "megamart", spent.id, 150, now=at)
    after(1_250)
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 300, now=at)
    after(950)
    redemptions.capture(session, "megamart", auth.id, 200, now=at)
    after(1_050)
    voided = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 100, now=at)
    after(950)
    redemptions.void(session, "megamart", voided.id, now=at)
    after(1_050)
    lapsing = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 100,
                                    expires_in=timedelta(minutes=1), now=at)
    after(950)
    expire_due(session, now=at + timedelta(minutes=1))
    after(1_050)
    operations.clawback(session, "banka", issued.id, 50, now=at)
    after(1_000)
    conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 500, now=at)
    after(500)
    after(200, "SKYMILES")
    assert lapsing.id != voided.id
    # Once the lot has expired (and before any expiry job books it) both still hold it.
    expiry = T0.replace(year=T0.year + 2)
    with pytest.raises(InsufficientPoints):
        lots.choose(session, m, "BANKA", 1, expiry)
    after(500)
    assert state(session, m) == [(0, 500)]


def test_a_clawback_takes_its_own_expired_lot_before_valid_points(session, world):
    old = operations.issue(session, world.id("banka"), "c-1", world.id("BANKA"), 300,
                           now=world.t0)
    operations.issue(session, world.id("banka"), "c-1", world.id("BANKA"), 500,
                     now=world.t0 + timedelta(days=400))
    after_expiry = world.t0 + timedelta(days=800)  # the first lot expired (24 months)
    operations.clawback(session, world.id("banka"), old.id, now=after_expiry)
    remaining = [(lot.remaining, lot.expired(after_expiry))
                 for lot in lots.lots(session, world.member_id, world.id("BANKA"))]
    assert remaining == [(500, False)]
