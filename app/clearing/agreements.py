"""Agreements: what lets one program's points cross to a redeemer or into another program.

Money moves in the one settlement currency of every partner whose money an agreement
moves (no FX). Terms (see :class:`~.models.AgreementTerms`) are versioned: a change is a
new version from a later instant, so a past operation is revalued exactly as booked. An
ended agreement serves no operation again; as there is one per pair, it cannot be renewed.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation, localcontext

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.types import utcnow
from ledger.units import MAX_AMOUNT, is_currency

from .errors import (
    AgreementExists,
    AgreementNotFound,
    ClearingError,
    InvalidAgreement,
    NoAgreement,
    NoRate,
    PartnerNotFound,
    ProgramNotFound,
)
from .models import Agreement, AgreementTerms, Partner, Program
from .partners import get_partner
from .programs import MAX_RATE_PLACES, value_at

#: The terms each kind of agreement has; the others are NULL in its versions.
TERMS = {"redemption": ("value_per_point", "fee_rate"),
         "conversion": ("value_per_point", "ratio", "target_value_per_point", "min_points",
                        "max_points")}
#: No rate above this is meaningful; refusing it keeps every rate a short exact string.
MAX_RATE = Decimal(MAX_AMOUNT)


def create_redemption(session: Session, program_code: str, redeemer_id: str, *,
                      value_per_point, fee_rate,
                      effective_from: datetime | None = None) -> Agreement:
    """Let ``program_code`` be redeemed at ``redeemer_id``, in the redeemer's currency.

    The redeemer is an active partner with the redeemer role and not the program's owner
    (owners take their own points without an agreement); the owner, if a partner, settles
    in the same currency. Terms: value per point > 0, a fee rate in [0, 1).
    """
    program = _row(session, Program, program_code, ProgramNotFound, "program_code")
    redeemer = _row(session, Partner, redeemer_id, PartnerNotFound, "redeemer_id")
    if not redeemer.is_redeemer or redeemer.status != "active":
        why = "is suspended" if redeemer.is_redeemer else "does not have the redeemer role"
        raise InvalidAgreement(f"partner {redeemer.id!r} {why}", field="redeemer_id")
    if redeemer.id == program.owner_id:
        raise InvalidAgreement(f"{redeemer.id!r} owns {program.code}: owners redeem their "
                               "own points without an agreement", field="redeemer_id")
    currency = _one_currency(session, [program.owner_id, redeemer.id], None,
                             _coalition_currencies(session, [program]))
    terms = _checked("redemption", {"value_per_point": value_per_point, "fee_rate": fee_rate})
    agreement = Agreement(kind="redemption", program_code=program.code, redeemer_id=redeemer.id,
                          counterparty=redeemer.id, currency=currency)
    return _create(session, agreement, terms, _instant(effective_from), "redeemer_id")


def create_conversion(session: Session, program_code: str, target_code: str, *, ratio,
                      value_per_point, target_value_per_point, min_points: int | None = None,
                      max_points: int | None = None, effective_from: datetime | None = None,
                      currency: str | None = None) -> Agreement:
    """Let ``program_code`` be converted into another program, ``target_code``.

    The currency is the owners' common settlement currency; ``currency`` must name it
    when both programs are the platform's (and match it otherwise). Terms: ratio, value
    and target value per point > 0, a spread per source point (``value_per_point - ratio
    * target_value_per_point``) >= 0, optional limits per conversion, 0 < min <= max.
    """
    source = _row(session, Program, program_code, ProgramNotFound, "program_code")
    target = _row(session, Program, target_code, ProgramNotFound, "target_code")
    if target.code == source.code:
        raise InvalidAgreement("a program converts only into another one", field="target_code")
    if currency is not None and not is_currency(currency):
        raise InvalidAgreement(f"{currency!r} is not a currency we settle in", field="currency")
    currency = _one_currency(session, [source.owner_id, target.owner_id], currency,
                             _coalition_currencies(session, [source, target]))
    terms = _checked("conversion", dict(zip(TERMS["conversion"], (
        value_per_point, ratio, target_value_per_point, min_points, max_points), strict=True)))
    agreement = Agreement(kind="conversion", program_code=source.code, target_code=target.code,
                          counterparty=target.code, currency=currency)
    return _create(session, agreement, terms, _instant(effective_from), "target_code")


def _create(session: Session, agreement: Agreement, terms: dict, effective_from: datetime,
            field: str) -> Agreement:
    """Write the agreement and its version 1: one agreement per kind, program and
    counterparty, checked here, with the database's unique constraint as the backstop."""
    exists = AgreementExists(f"{agreement.program_code} already has a {agreement.kind} "
                             f"agreement with {agreement.counterparty}", field=field)
    if _find(session, agreement.kind, agreement.program_code, agreement.counterparty):
        raise exists
    agreement.id, agreement.status = f"agr_{secrets.token_hex(8)}", "active"
    try:
        with session.begin_nested():  # a concurrent duplicate undoes only this insert
            session.add(agreement)
    except IntegrityError as exc:
        raise exists from exc
    session.add(AgreementTerms(agreement_id=agreement.id, version=1,
                               effective_from=effective_from, **terms))
    session.flush()
    return agreement


def set_terms(session: Session, agreement_id: str, *, effective_from: datetime | None = None,
              **terms) -> AgreementTerms:
    """Add a version of an active agreement's terms, in force from ``effective_from``.

    Only the agreement kind's terms are accepted, at least one; those not given are
    carried over from the latest version (``min_points=None`` lifts a limit), and all
    are checked as at creation. The new version starts strictly after the latest one.
    """
    agreement = _lock(session, agreement_id)
    if agreement.status != "active":
        raise InvalidAgreement(f"agreement {agreement.id} has ended", field="agreement_id")
    for name in set(terms) - set(TERMS[agreement.kind]):
        raise InvalidAgreement(f"a {agreement.kind} agreement has no term {name!r}", field=name)
    if not terms:
        raise InvalidAgreement("give at least one term to change", field="terms")
    latest = terms_history(session, agreement.id)[-1]
    merged = {name: getattr(latest, name) for name in TERMS[agreement.kind]} | terms
    checked = _checked(agreement.kind, merged,
                       limit_at_fault="max_points" if "max_points" in terms else "min_points")
    effective_from = _instant(effective_from)
    if effective_from <= latest.effective_from:
        raise InvalidAgreement(f"a new version starts after version {latest.version}'s "
                               f"{latest.effective_from.isoformat()}", field="effective_from")
    version = AgreementTerms(agreement_id=agreement.id, version=latest.version + 1,
                             effective_from=effective_from, **checked)
    session.add(version)
    session.flush()
    return version


def end_agreement(session: Session, agreement_id: str) -> Agreement:
    """End an agreement for good: no operation uses it from now on. Ending twice is a no-op."""
    agreement = _lock(session, agreement_id)
    agreement.status = "ended"
    session.flush()
    return agreement


def get_agreement(session: Session, agreement_id: str) -> Agreement:
    return _row(session, Agreement, agreement_id, AgreementNotFound, "agreement_id")


def redemption_terms(session: Session, program_code: str, redeemer_id: str,
                     at: datetime | None = None) -> tuple[Agreement, AgreementTerms]:
    """The active agreement to redeem ``program_code`` at ``redeemer_id`` and its terms in
    force at ``at`` (default now); else :class:`NoAgreement`."""
    agreement = _find(session, "redemption", program_code, redeemer_id)
    return _in_force(session, agreement, at, f"{program_code} at {redeemer_id}", "program")


def conversion_terms(session: Session, program_code: str, target_code: str,
                     at: datetime | None = None) -> tuple[Agreement, AgreementTerms]:
    """The active agreement to convert ``program_code`` into ``target_code`` and its terms
    in force at ``at`` (default now); else :class:`NoAgreement`."""
    agreement = _find(session, "conversion", program_code, target_code)
    return _in_force(session, agreement, at, f"{program_code} into {target_code}",
                     "target_program")


def terms_at(session: Session, agreement_id: str, at: datetime | None = None) -> AgreementTerms:
    """The terms of an active agreement in force at ``at`` (default now). An ended one has
    none (its end is not dated): its versions are in :func:`terms_history`."""
    agreement = get_agreement(session, agreement_id)
    return _in_force(session, agreement, at, agreement.id, "agreement_id")[1]


def terms_history(session: Session, agreement_id: str) -> list[AgreementTerms]:
    """Every version of the agreement's terms, oldest first."""
    agreement = get_agreement(session, agreement_id)
    return list(session.scalars(select(AgreementTerms)
                                .where(AgreementTerms.agreement_id == agreement.id)
                                .order_by(AgreementTerms.version)))


def list_agreements(session: Session, *, partner_id: str | None = None) -> list[Agreement]:
    """All agreements by id or, given ``partner_id``, those the partner is party to: it
    owns the program or the target program, or it is the redeemer."""
    query = select(Agreement).order_by(Agreement.id)
    if partner_id is not None:
        get_partner(session, partner_id)
        owned = select(Program.code).where(Program.owner_id == partner_id)
        query = query.where(or_(Agreement.redeemer_id == partner_id,
                                Agreement.program_code.in_(owned),
                                Agreement.target_code.in_(owned)))
    return list(session.scalars(query))


def spread_per_point(terms) -> Decimal:
    """What the platform keeps per source point converted under conversion ``terms``:
    ``value_per_point - ratio * target_value_per_point``, exactly."""
    with localcontext(prec=80):  # rates are <= 10^12 with <= 8 places: this is exact
        return terms.value_per_point - terms.ratio * terms.target_value_per_point


def _checked(kind: str, terms: dict, limit_at_fault: str = "max_points") -> dict:
    """The kind's terms, each checked; ``limit_at_fault`` is blamed when min > max."""
    if kind == "redemption":
        return {"value_per_point": _rate(terms["value_per_point"], "value_per_point"),
                "fee_rate": _rate(terms["fee_rate"], "fee_rate", above_zero=False, below=1)}
    checked = AgreementTerms(**{name: _rate(terms[name], name) for name in TERMS[kind][:3]},
                             **{name: _limit(terms[name], name) for name in TERMS[kind][3:]})
    if spread_per_point(checked) < 0:
        raise InvalidAgreement("ratio x target_value_per_point exceeds value_per_point: the "
                               "platform never pays the spread", field="target_value_per_point")
    if None not in (checked.min_points, checked.max_points) \
            and checked.min_points > checked.max_points:
        raise InvalidAgreement("min_points must not exceed max_points", field=limit_at_fault)
    return {name: getattr(checked, name) for name in TERMS[kind]}


def _rate(value, field: str, *, above_zero: bool = True, below=MAX_RATE) -> Decimal:
    """A finite decimal (never a float) of at most 8 places, > 0 (or >= 0), < ``below``."""
    if isinstance(value, (float, bool)):
        raise InvalidAgreement(f"give {field} as a decimal string, never a float", field=field)
    try:
        rate = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidAgreement(f"{field} {value!r} is not a decimal", field=field) from exc
    if not rate.is_finite() or rate < 0 or (above_zero and rate == 0) or rate >= below:
        low = "above" if above_zero else "at least"
        raise InvalidAgreement(f"{field} must be {low} zero and below {below}", field=field)
    if -rate.normalize().as_tuple().exponent > MAX_RATE_PLACES:
        raise InvalidAgreement(f"{field} has more than {MAX_RATE_PLACES} decimal places",
                               field=field)
    return rate


def _limit(value, field: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 1 <= value <= MAX_AMOUNT):
        raise InvalidAgreement(f"{field} must be a whole number of points, 1 to {MAX_AMOUNT}",
                               field=field)
    return value


def _instant(effective_from: datetime | None) -> datetime:
    effective_from = utcnow() if effective_from is None else effective_from
    if not isinstance(effective_from, datetime) or effective_from.utcoffset() is None:
        raise InvalidAgreement("effective_from must be a timezone-aware instant",
                               field="effective_from")
    return effective_from


def _coalition_currencies(session: Session, programs: list[Program]) -> set[str]:
    """The currencies the platform's own programs among ``programs`` are valued in: their
    points are bought and paid for in that currency, so an agreement must use it too."""
    found = set()
    for program in programs:
        if program.owner_id is None:
            try:
                found.add(value_at(session, program.code).currency)
            except NoRate as exc:
                raise InvalidAgreement(f"value the coalition program {program.code} first: "
                                       "its currency decides the agreement's",
                                       field="currency") from exc
    return found


def _one_currency(session: Session, partner_ids: list[str | None], given: str | None,
                  valued_in: set[str] = frozenset()) -> str:
    """The one settlement currency of the partners (None: the platform), ``given`` and
    the coalition programs' value currency."""
    currencies = {session.get(Partner, p).settlement_currency for p in partner_ids if p}
    currencies = (currencies | set(valued_in) | {given}) - {None}
    if not currencies:
        raise InvalidAgreement("both programs are the platform's: give the currency",
                               field="currency")
    if len(currencies) > 1:
        raise InvalidAgreement(f"the parties settle in {', '.join(sorted(currencies))}: "
                               "FX is not supported", field="currency")
    return currencies.pop()


def _row(session: Session, model, key, error: type[ClearingError], field: str):
    row = session.get(model, key) if isinstance(key, str) else None
    if row is None:
        raise error(f"no {model.__name__.lower()} {key!r}", field=field)
    return row


def _find(session: Session, kind: str, program_code: str, counterparty: str) -> Agreement | None:
    return session.scalar(select(Agreement).where(
        Agreement.kind == kind, Agreement.program_code == program_code,
        Agreement.counterparty == counterparty))


def _lock(session: Session, agreement_id: str) -> Agreement:
    """The agreement, its row locked so that concurrent changes to it queue (PostgreSQL)."""
    get_agreement(session, agreement_id)
    return session.get(Agreement, agreement_id, with_for_update=True, populate_existing=True)


def _in_force(session: Session, agreement: Agreement | None, at: datetime | None, what: str,
              field: str) -> tuple[Agreement, AgreementTerms]:
    at = utcnow() if at is None else at
    if agreement is None or agreement.status != "active":
        state = "has ended" if agreement else "does not exist"
        raise NoAgreement(f"the agreement for {what} {state}", field=field)
    terms = session.scalar(select(AgreementTerms)
                           .where(AgreementTerms.agreement_id == agreement.id,
                                  AgreementTerms.effective_from <= at)
                           .order_by(AgreementTerms.effective_from.desc()).limit(1))
    if terms is None:
        raise NoAgreement(f"the agreement for {what} is not in force at {at.isoformat()}",
                          field=field)
    return agreement, terms
