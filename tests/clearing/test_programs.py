"""Programs: hosted with their own sharded ledger accounts, valued by effective date."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from app.clearing import partners, programs
from app.clearing.errors import (
    InvalidProgram,
    InvalidRate,
    NoRate,
    ProgramExists,
    ProgramNotFound,
)
from ledger import balance
from ledger.accounts import get_account
from ledger.types import utcnow


@pytest.fixture
def bank(session):
    partners.onboard_partner(session, "banka", name="Bank A", industry="bank",
                             roles={"issuer"}, settlement_currency="CNY")
    partners.onboard_partner(session, "megamart", name="MegaMart", industry="retail",
                             roles={"redeemer"}, settlement_currency="CNY")


def test_create_opens_the_program_books(session, bank):
    p = programs.create_program(session, "BANKA", name="Bank A Points", owner_id="banka",
                                expiry_months=24)
    assert (p.owner_id, p.expiry_months) == ("banka", 24)
    for role in programs.SYSTEM_ACCOUNTS:
        account = get_account(session, programs.system_account("BANKA", role))
        assert (account.unit, account.shards, account.no_overdraft) == ("BANKA", 16, False)
        assert balance(session, account.code).posted == 0


def test_platform_program_has_no_owner(session, bank):
    assert programs.create_program(session, "COALITION", name="Coalition",
                                   owner_id=None).owner_id is None


@pytest.mark.parametrize("kwargs, field", [
    (dict(code="CNY"), "code"), (dict(code="ab"), "code"), (dict(name=""), "name"),
    (dict(expiry_months=0), "expiry_months"), (dict(expiry_months=121), "expiry_months"),
    (dict(owner_id="megamart"), "owner_id"),
])
def test_program_inputs_are_checked(session, bank, kwargs, field):
    args = dict(code="BANKA", name="Bank A Points", owner_id="banka", expiry_months=None)
    args.update(kwargs)
    code = args.pop("code")
    with pytest.raises(InvalidProgram) as err:
        programs.create_program(session, code, **args)
    assert err.value.field == field


def test_program_codes_are_unique(session, bank):
    programs.create_program(session, "BANKA", name="A", owner_id="banka")
    with pytest.raises(ProgramExists):
        programs.create_program(session, "BANKA", name="A", owner_id="banka")
    with pytest.raises(ProgramNotFound):
        programs.get_program(session, "NOPE")


def test_value_is_versioned_by_effective_date_and_exact(session, bank):
    programs.create_program(session, "BANKA", name="A", owner_id="banka")
    t0 = utcnow() - timedelta(days=30)
    programs.set_value(session, "BANKA", "0.01", currency="CNY", effective_from=t0)
    programs.set_value(session, "BANKA", Decimal("0.012345"), currency="CNY",
                       effective_from=t0 + timedelta(days=10))
    with pytest.raises(NoRate):
        programs.value_at(session, "BANKA", t0 - timedelta(seconds=1))
    assert programs.value_at(session, "BANKA", t0 + timedelta(days=1)).value_per_point == \
        Decimal("0.01")
    session.expire_all()  # read back from the database, not the identity map
    latest = programs.value_at(session, "BANKA")
    assert latest.value_per_point == Decimal("0.012345") and latest.currency == "CNY"
    assert isinstance(latest.value_per_point, Decimal)


@pytest.mark.parametrize("value, currency, field", [
    (0.01, "CNY", "value_per_point"), ("0", "CNY", "value_per_point"),
    ("-1", "CNY", "value_per_point"), ("abc", "CNY", "value_per_point"),
    ("0.000000001", "CNY", "value_per_point"), ("NaN", "CNY", "value_per_point"),
    ("0.01", "BANKA", "currency"), ("0.01", "XYZ", "currency"),
])
def test_bad_values(session, bank, value, currency, field):
    programs.create_program(session, "BANKA", name="A", owner_id="banka")
    with pytest.raises(InvalidRate) as err:
        programs.set_value(session, "BANKA", value, currency=currency)
    assert err.value.field == field
