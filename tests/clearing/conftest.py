"""The DESIGN.md cast, built through the domain's own functions.

BankA's program BANKA (0.01 CNY a point, points expire after 24 months), SkyAir's
SKYMILES (0.02 CNY), the platform's coalition program COALITION (0.01 CNY), MegaMart
accepting BANKA at 0.01 CNY with a 2 % fee, and BANKA convertible into SKYMILES at 0.4
with SkyAir selling miles at 0.02 CNY. Member "c-1" at BankA is linked at MegaMart as
"mm-1" and at SkyAir as "sa-1".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.clearing import agreements, members, partners, programs

T0 = datetime(2026, 1, 15, 9, 30, tzinfo=timezone.utc)


@dataclass
class World:
    member_id: str
    redemption_id: str
    conversion_id: str
    t0: datetime = T0
    suffix: str = ""

    def id(self, name: str) -> str:
        """A partner id ("banka") or program code ("BANKA") of this world."""
        return name + (self.suffix.upper() if name.isupper() else self.suffix)


def build_world(session, now: datetime = T0, suffix: str = "") -> World:
    """The cast above; ``suffix`` makes every id unique for committed data."""
    w = World("", "", "", now, suffix)
    i = w.id
    before = now - timedelta(days=1)
    for pid, industry, roles in (("banka", "bank", {"issuer"}),
                                 ("skyair", "airline", {"issuer", "redeemer"}),
                                 ("megamart", "retail", {"redeemer"}),
                                 ("telco", "telecom", {"issuer", "redeemer"})):
        partners.onboard_partner(session, i(pid), name=pid.title(), industry=industry,
                                 roles=roles, settlement_currency="CNY")
    programs.create_program(session, i("BANKA"), name="Bank A Points", owner_id=i("banka"),
                            expiry_months=24)
    programs.create_program(session, i("SKYMILES"), name="SkyAir Miles", owner_id=i("skyair"))
    programs.create_program(session, i("COALITION"), name="Coalition Points", owner_id=None,
                            expiry_months=12)
    for code, value in (("BANKA", "0.01"), ("SKYMILES", "0.02"), ("COALITION", "0.01")):
        programs.set_value(session, i(code), Decimal(value), currency="CNY",
                           effective_from=before)
    redemption = agreements.create_redemption(
        session, i("BANKA"), i("megamart"), value_per_point=Decimal("0.01"),
        fee_rate=Decimal("0.02"), effective_from=before)
    agreements.create_redemption(session, i("COALITION"), i("megamart"),
                                 value_per_point=Decimal("0.01"), fee_rate=Decimal("0.02"),
                                 effective_from=before)
    conversion = agreements.create_conversion(
        session, i("BANKA"), i("SKYMILES"), ratio=Decimal("0.4"),
        value_per_point=Decimal("0.01"), target_value_per_point=Decimal("0.02"),
        min_points=100, max_points=100_000, effective_from=before)
    link = members.enrol(session, i("banka"), "c-1", now=before)
    for partner, ref in (("megamart", "mm-1"), ("skyair", "sa-1"), ("telco", "t-1")):
        token, _ = members.issue_token(session, i("banka"), "c-1", now=before)
        members.enrol(session, i(partner), ref, member_token=token, now=before)
    w.member_id, w.redemption_id, w.conversion_id = link.member_id, redemption.id, conversion.id
    return w


@pytest.fixture
def world(session) -> World:
    return build_world(session)
