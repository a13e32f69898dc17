"""Program reports: outstanding points, liability and the period's movements."""

from __future__ import annotations

from datetime import timedelta

from app.clearing import breakage, conversions, operations, redemptions, reports
from app.clearing.models import Program

from .conftest import T0


def test_a_programs_year(session, world):
    banka, BANKA = world.id("banka"), world.id("BANKA")
    operations.issue(session, banka, "c-1", BANKA, 5_000, now=T0)
    spent = redemptions.redeem(session, world.id("megamart"), "mm-1", BANKA, 2_000,
                               now=T0 + timedelta(days=1))
    redemptions.refund(session, world.id("megamart"), spent.id, 500,
                       now=T0 + timedelta(days=2))
    conversions.convert(session, world.id("skyair"), "sa-1", BANKA, world.id("SKYMILES"),
                        1_000, now=T0 + timedelta(days=3))
    later = T0 + timedelta(days=800)
    breakage.expire_member(session, world.member_id, session.get(Program, BANKA), later)

    first_days = reports.program_report(session, BANKA, T0 - timedelta(days=1),
                                        T0 + timedelta(days=10))
    assert (first_days.issued, first_days.redeemed, first_days.converted,
            first_days.expired, first_days.outstanding) == (5_000, 1_500, 1_000, 0, 2_500)
    assert (first_days.liability, first_days.currency) == (2_500, "CNY")  # 0.01 CNY a point

    whole = reports.program_report(session, BANKA, T0 - timedelta(days=1),
                                   later + timedelta(seconds=1))
    assert (whole.expired, whole.outstanding, whole.liability) == (2_500, 0, 0)
    assert whole.members_total == whole.outstanding  # the books and the members agree
