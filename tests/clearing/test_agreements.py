"""Agreements: DESIGN.md's BANKA at MegaMart and BANKA into SKYMILES, their rules and versions."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.clearing import agreements as agr
from app.clearing import partners, programs
from app.clearing.errors import (
    AgreementExists,
    AgreementNotFound,
    InvalidAgreement,
    NoAgreement,
    PartnerNotFound,
    ProgramNotFound,
)
from app.clearing.models import Agreement, AgreementTerms
from ledger.types import utcnow

T0 = utcnow() - timedelta(days=30)
REDEMPTION = {"value_per_point": "0.01", "fee_rate": "0.02"}
CONVERSION = {"ratio": "0.4", "value_per_point": "0.01", "target_value_per_point": "0.02"}


@pytest.fixture
def world(session):
    """BankA (BANKA), SkyAir (SKYMILES; also accepts points), MegaMart, a USD shop and
    airline, a telecom issuer with no program, and two platform coalition programs."""
    for pid, industry, roles, currency in [
        ("banka", "bank", {"issuer"}, "CNY"), ("skyair", "airline", {"issuer", "redeemer"}, "CNY"),
        ("megamart", "retail", {"redeemer"}, "CNY"), ("usshop", "retail", {"redeemer"}, "USD"),
        ("usair", "airline", {"issuer"}, "USD"), ("telco", "telecom", {"issuer"}, "CNY"),
    ]:
        partners.onboard_partner(session, pid, name=pid, industry=industry, roles=roles,
                                 settlement_currency=currency)
    for code, owner in [("BANKA", "banka"), ("SKYMILES", "skyair"), ("USMILES", "usair"),
                        ("COALITION", None), ("COALITION2", None)]:
        programs.create_program(session, code, name=code, owner_id=owner)
    for code, currency in (("COALITION", "CNY"), ("COALITION2", "USD")):
        programs.set_value(session, code, Decimal("0.01"), currency=currency,
                           effective_from=T0 - timedelta(days=1))


def _redemption(session, program="BANKA", redeemer="megamart", **overrides):
    return agr.create_redemption(session, program, redeemer,
                                 **(REDEMPTION | {"effective_from": T0} | overrides))


def _conversion(session, source="BANKA", target="SKYMILES", **overrides):
    return agr.create_conversion(session, source, target,
                                 **(CONVERSION | {"effective_from": T0} | overrides))


def _nothing_written(session):
    # Other tests commit agreements of their own (uniquely named) programs.
    assert session.scalar(select(func.count()).select_from(Agreement).where(
        Agreement.program_code.in_(("BANKA", "SKYMILES", "COALITION")))) == 0
    assert session.scalar(select(func.count()).select_from(AgreementTerms).join(Agreement).where(
        Agreement.program_code.in_(("BANKA", "SKYMILES", "COALITION")))) == 0


def _refused(error, field, call, *args, **kwargs):
    """``call`` refuses with ``error`` for ``field``."""
    with pytest.raises(error) as err:
        call(*args, **kwargs)
    assert err.value.field == field


def test_redemption_at_megamart(session, world):
    made = _redemption(session)
    assert made.id.startswith("agr_") and len(made.id) == 20
    assert (made.kind, made.counterparty, made.currency, made.status) == \
        ("redemption", "megamart", "CNY", "active")
    session.expire_all()  # read back from the database
    agreement, terms = agr.redemption_terms(session, "BANKA", "megamart")
    assert agreement.id == made.id and terms.version == 1 and terms.effective_from == T0
    assert (terms.value_per_point, terms.fee_rate) == (Decimal("0.01"), Decimal("0.02"))
    assert (terms.ratio, terms.target_value_per_point, terms.min_points, terms.max_points) == \
        (None, None, None, None)


def test_conversion_banka_into_skymiles(session, world):
    made = _conversion(session, min_points=100, max_points=50_000)
    assert (made.kind, made.counterparty, made.currency) == ("conversion", "SKYMILES", "CNY")
    session.expire_all()
    agreement, terms = agr.conversion_terms(session, "BANKA", "SKYMILES")
    assert agreement.id == made.id and terms.fee_rate is None
    assert (terms.ratio, terms.value_per_point, terms.target_value_per_point) == \
        (Decimal("0.4"), Decimal("0.01"), Decimal("0.02"))
    assert (terms.min_points, terms.max_points) == (100, 50_000)
    assert agr.spread_per_point(terms) == Decimal("0.002")  # 1,000 points: 2.00 CNY kept


def test_coalition_programs(session, world):
    # A coalition program's points are bought in the currency it is valued in: an
    # agreement on it must use that currency, so it needs a value first.
    programs.create_program(session, "COALITION3", name="unvalued", owner_id=None)
    _refused(InvalidAgreement, "currency", _redemption, session, "COALITION3")
    assert _redemption(session, "COALITION").currency == "CNY"
    assert _conversion(session, "COALITION", "SKYMILES").currency == "CNY"
    _refused(InvalidAgreement, "currency", _redemption, session, "COALITION2")  # CNY shop
    _refused(InvalidAgreement, "currency", _conversion, session, "COALITION", "COALITION2")
    assert _redemption(session, "COALITION2", "usshop").currency == "USD"


@pytest.mark.parametrize("program, redeemer, error, field", [
    ("NOPE", "megamart", ProgramNotFound, "program_code"),
    ("BANKA", "nobody", PartnerNotFound, "redeemer_id"),
    ("BANKA", "telco", InvalidAgreement, "redeemer_id"),  # not a redeemer
    ("BANKA", "suspended", InvalidAgreement, "redeemer_id"),
    ("SKYMILES", "skyair", InvalidAgreement, "redeemer_id"),  # owners need no agreement
    ("BANKA", "usshop", InvalidAgreement, "currency"),  # CNY owner, USD redeemer: no FX
])
def test_redemption_parties(session, world, program, redeemer, error, field):
    if redeemer == "suspended":
        redeemer = "megamart"
        partners.set_status(session, "megamart", "suspended")
    _refused(error, field, _redemption, session, program, redeemer)
    _nothing_written(session)


@pytest.mark.parametrize("source, target, extra, error, field", [
    ("NOPE", "SKYMILES", {}, ProgramNotFound, "program_code"),
    ("BANKA", "NOPE", {}, ProgramNotFound, "target_code"),
    ("BANKA", "BANKA", {}, InvalidAgreement, "target_code"),
    ("BANKA", "USMILES", {}, InvalidAgreement, "currency"),  # CNY into USD: no FX
    ("COALITION", "COALITION2", {}, InvalidAgreement, "currency"),  # nobody's: name it
    ("BANKA", "SKYMILES", {"currency": "USD"}, InvalidAgreement, "currency"),
    ("COALITION", "COALITION2", {"currency": "XYZ"}, InvalidAgreement, "currency"),
])
def test_conversion_programs_and_currency(session, world, source, target, extra, error, field):
    _refused(error, field, _conversion, session, source, target, **extra)
    _nothing_written(session)


BAD_RATES = [0.01, True, "abc", "0", "-1", "NaN", "Infinity", "0.000000001", "1000000000000"]


@pytest.mark.parametrize("field, value", [("value_per_point", v) for v in BAD_RATES] + [
    ("fee_rate", v) for v in BAD_RATES + ["1", "0.99999999999", "-0.01"] if v != "0"])
def test_redemption_rates(session, world, field, value):
    _refused(InvalidAgreement, field, _redemption, session, **{field: value})
    _nothing_written(session)


def test_rates_are_exact_decimals(session, world):
    _redemption(session, value_per_point=Decimal("0.12345678"), fee_rate="0")  # no fee: fine
    session.expire_all()
    terms = agr.redemption_terms(session, "BANKA", "megamart")[1]
    assert (terms.value_per_point, terms.fee_rate) == (Decimal("0.12345678"), 0)


@pytest.mark.parametrize("value", BAD_RATES)
@pytest.mark.parametrize("field", ["ratio", "value_per_point", "target_value_per_point"])
def test_conversion_rates(session, world, field, value):
    _refused(InvalidAgreement, field, _conversion, session, **{field: value})
    _nothing_written(session)


def test_the_platform_never_pays_the_spread(session, world):
    _refused(InvalidAgreement, "target_value_per_point", _conversion, session,
             target_value_per_point="0.02500001")
    _nothing_written(session)
    terms = agr.terms_at(session, _conversion(session, target_value_per_point="0.025").id)
    assert agr.spread_per_point(terms) == 0  # a zero spread is allowed


@pytest.mark.parametrize("limits, field", [
    ({"min_points": 0}, "min_points"), ({"min_points": -5}, "min_points"),
    ({"min_points": True}, "min_points"), ({"max_points": 1.0}, "max_points"),
    ({"max_points": 10**12 + 1}, "max_points"), ({"min_points": 10, "max_points": 9}, "max_points"),
])
def test_conversion_limits(session, world, limits, field):
    _refused(InvalidAgreement, field, _conversion, session, **limits)
    _nothing_written(session)


@pytest.mark.parametrize("create", [_redemption, _conversion])
def test_effective_from_is_timezone_aware(session, world, create):
    _refused(InvalidAgreement, "effective_from", create, session,
             effective_from=datetime(2026, 1, 1))
    _nothing_written(session)


@pytest.mark.parametrize("create, field", [(_redemption, "redeemer_id"),
                                           (_conversion, "target_code")])
def test_one_agreement_per_pair_even_ended(session, world, create, field):
    agr.end_agreement(session, create(session).id)
    _refused(AgreementExists, field, create, session)


def test_the_database_backstops_duplicates(session, world, monkeypatch):
    first = _redemption(session)
    monkeypatch.setattr(agr, "_find", lambda *args: None)  # as if a concurrent create
    with pytest.raises(AgreementExists):
        _redemption(session)
    assert [a.id for a in agr.list_agreements(session, partner_id="megamart")] == [first.id]
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(Agreement(id="agr_dup", kind="redemption", program_code="BANKA",
                              redeemer_id="megamart", counterparty="megamart", currency="CNY"))


def test_no_agreement(session, world):
    _refused(NoAgreement, "program", agr.redemption_terms, session, "BANKA", "megamart")
    _refused(NoAgreement, "target_program", agr.conversion_terms, session, "BANKA", "SKYMILES")
    for call in (agr.get_agreement, agr.terms_at, agr.terms_history, agr.end_agreement):
        _refused(AgreementNotFound, "agreement_id", call, session, "agr_0000000000000000")
    _refused(AgreementNotFound, "agreement_id", agr.set_terms, session, "agr_0", fee_rate="0")


def test_terms_in_force_then_and_now(session, world):
    made = _redemption(session)
    v2 = agr.set_terms(session, made.id, value_per_point="0.012",
                       effective_from=T0 + timedelta(days=10))
    assert (v2.version, v2.value_per_point, v2.fee_rate) == (2, Decimal("0.012"), Decimal("0.02"))
    session.expire_all()
    then = agr.redemption_terms(session, "BANKA", "megamart", T0 + timedelta(days=9))[1]
    assert (then.version, then.value_per_point) == (1, Decimal("0.01"))
    now = agr.redemption_terms(session, "BANKA", "megamart")[1]
    assert (now.version, now.value_per_point, now.fee_rate) == \
        (2, Decimal("0.012"), Decimal("0.02"))  # the fee was carried over
    assert agr.terms_at(session, made.id, T0).version == 1
    assert [t.version for t in agr.terms_history(session, made.id)] == [1, 2]
    _refused(NoAgreement, "program", agr.redemption_terms, session, "BANKA", "megamart",
             T0 - timedelta(seconds=1))


def test_a_future_version_waits_its_turn(session, world):
    made = _conversion(session, min_points=100)
    later = utcnow() + timedelta(days=7)
    agr.set_terms(session, made.id, ratio="0.5", target_value_per_point="0.018",
                  min_points=None, max_points=10_000, effective_from=later)
    assert agr.conversion_terms(session, "BANKA", "SKYMILES")[1].version == 1
    v2 = agr.conversion_terms(session, "BANKA", "SKYMILES", later)[1]
    assert (v2.ratio, v2.value_per_point, v2.min_points, v2.max_points) == \
        (Decimal("0.5"), Decimal("0.01"), None, 10_000)
    assert agr.spread_per_point(v2) == Decimal("0.001")
    # Now is before the latest version: a version from now would come out of order.
    _refused(InvalidAgreement, "effective_from", agr.set_terms, session, made.id, ratio="0.3")


@pytest.mark.parametrize("create, terms, field", [
    (_redemption, {"fee_rate": "0.03", "effective_from": T0}, "effective_from"),  # not later
    (_redemption, {"fee_rate": "0.03", "effective_from": T0 - timedelta(1)}, "effective_from"),
    (_redemption, {"fee_rate": "0.03", "effective_from": datetime(2030, 1, 1)},
     "effective_from"),  # naive
    (_redemption, {"ratio": "0.5"}, "ratio"),  # conversion-only
    (_redemption, {"min_points": 10}, "min_points"),
    (_conversion, {"fee_rate": "0.01"}, "fee_rate"),  # redemption-only
    (_redemption, {"colour": "red"}, "colour"),
    (_redemption, {}, "terms"),
    (_redemption, {"fee_rate": 0.02}, "fee_rate"),
    (_conversion, {"value_per_point": "0.007"}, "target_value_per_point"),  # spread < 0
    (_conversion, {"min_points": 60}, "min_points"),  # above the kept max of 50
    (_conversion, {"max_points": 5}, "max_points"),  # below the kept min of 10
])
def test_set_terms_refusals(session, world, create, terms, field):
    made = create(session, **({"min_points": 10, "max_points": 50}
                              if create is _conversion else {}))
    _refused(InvalidAgreement, field, agr.set_terms, session, made.id, **terms)
    assert [t.version for t in agr.terms_history(session, made.id)] == [1]


def test_an_ended_agreement_serves_nothing(session, world):
    redemption, conversion = _redemption(session), _conversion(session)
    for made in (redemption, conversion):
        assert agr.end_agreement(session, made.id).status == "ended"
    assert agr.end_agreement(session, redemption.id).status == "ended"  # twice: no-op
    session.expire_all()
    _refused(NoAgreement, "program", agr.redemption_terms, session, "BANKA", "megamart",
             T0 + timedelta(days=1))
    _refused(NoAgreement, "target_program", agr.conversion_terms, session, "BANKA", "SKYMILES")
    _refused(NoAgreement, "agreement_id", agr.terms_at, session, redemption.id)
    _refused(InvalidAgreement, "agreement_id", agr.set_terms, session, redemption.id,
             fee_rate="0.01")
    assert len(agr.terms_history(session, redemption.id)) == 1  # kept for the record


def test_each_partner_sees_the_agreements_it_is_party_to(session, world):
    made = {
        "banka@megamart": _redemption(session),
        "banka@skyair": _redemption(session, redeemer="skyair"),
        "sky@megamart": _redemption(session, "SKYMILES"),
        "banka->sky": _conversion(session),
        "coalition->sky": _conversion(session, "COALITION"),
    }

    def seen(partner_id):
        ids = [a.id for a in agr.list_agreements(session, partner_id=partner_id)]
        assert ids == sorted(ids)
        return {name for name, a in made.items() if a.id in ids}

    assert seen("banka") == {"banka@megamart", "banka@skyair", "banka->sky"}
    assert seen("skyair") == {"banka@skyair", "sky@megamart", "banka->sky", "coalition->sky"}
    assert seen("megamart") == {"banka@megamart", "sky@megamart"}
    assert seen("telco") == set()
    everyone = [a.id for a in agr.list_agreements(session)]  # other tests' committed ones too
    assert everyone == sorted(everyone) and set(everyone) >= {a.id for a in made.values()}
    with pytest.raises(PartnerNotFound):
        agr.list_agreements(session, partner_id="nobody")
