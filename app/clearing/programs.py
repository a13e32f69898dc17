"""Programs hosted on the platform and their value per point over time."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.accounts import open_account
from ledger.errors import InvalidUnit
from ledger.types import utcnow
from ledger.units import is_currency, parse_unit

from .errors import InvalidProgram, InvalidRate, NoRate, ProgramExists, ProgramNotFound
from .models import Program, ProgramValue
from .partners import get_partner

#: The program's system accounts in the ledger. Every operation of the program touches
#: one of them, so each is sharded: concurrent operations never queue on one row.
SYSTEM_ACCOUNTS = ("issued", "redeemed", "converted", "expired")
SYSTEM_SHARDS = 16
MAX_RATE_PLACES = 8


def system_account(code: str, role: str) -> str:
    return f"program:{code}:{role}"


def create_program(session: Session, code: str, *, name: str, owner_id: str | None,
                   expiry_months: int | None = None) -> Program:
    """Host a program (owner None: the platform's coalition points) and open its books."""
    try:
        unit = parse_unit(code)
    except InvalidUnit as exc:
        raise InvalidProgram(exc.message, field="code") from exc
    if unit.is_currency:
        raise InvalidProgram(f"{code!r} is a currency code, not a program code", field="code")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise InvalidProgram("name must be 1-200 characters", field="name")
    if expiry_months is not None and (isinstance(expiry_months, bool)
                                      or not isinstance(expiry_months, int)
                                      or not 1 <= expiry_months <= 120):
        raise InvalidProgram("expiry_months must be 1-120, or none", field="expiry_months")
    if owner_id is not None and not get_partner(session, owner_id).is_issuer:
        raise InvalidProgram(f"partner {owner_id!r} is not an issuer", field="owner_id")
    if session.get(Program, code) is not None:
        raise ProgramExists(f"program {code!r} exists", field="code")
    program = Program(code=code, name=name.strip(), owner_id=owner_id,
                      expiry_months=expiry_months)
    session.add(program)
    session.flush()
    for role in SYSTEM_ACCOUNTS:
        open_account(session, system_account(code, role), code, shards=SYSTEM_SHARDS)
    return program


def get_program(session: Session, code: str) -> Program:
    program = session.get(Program, code) if isinstance(code, str) else None
    if program is None:
        raise ProgramNotFound(f"no program {code!r}", field="program")
    return program


def list_programs(session: Session) -> list[Program]:
    return list(session.scalars(select(Program).order_by(Program.code)))


def _rate(value) -> Decimal:
    if isinstance(value, float) or isinstance(value, bool):
        raise InvalidRate("give the value as a decimal string, never a float",
                          field="value_per_point")
    try:
        rate = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidRate(f"{value!r} is not a decimal", field="value_per_point") from exc
    if not rate.is_finite() or rate <= 0:
        raise InvalidRate("value per point must be greater than zero", field="value_per_point")
    if -rate.as_tuple().exponent > MAX_RATE_PLACES:
        raise InvalidRate(f"value per point has more than {MAX_RATE_PLACES} decimal places",
                          field="value_per_point")
    return rate


def set_value(session: Session, code: str, value_per_point, *, currency: str,
              effective_from: datetime | None = None) -> ProgramValue:
    """Version the program's value: from ``effective_from`` on, a point is worth this."""
    program = get_program(session, code)
    rate = _rate(value_per_point)
    if not is_currency(currency):
        raise InvalidRate(f"{currency!r} is not a currency we settle in", field="currency")
    effective_from = effective_from or utcnow()
    if not isinstance(effective_from, datetime) or effective_from.tzinfo is None:
        raise InvalidRate("effective_from must be a timezone-aware instant",
                          field="effective_from")
    if session.scalar(select(ProgramValue.id).where(
            ProgramValue.program_code == program.code,
            ProgramValue.effective_from == effective_from)) is not None:
        raise InvalidRate("the program already has a value from that instant",
                          field="effective_from")
    version = ProgramValue(program_code=program.code, effective_from=effective_from,
                           value_per_point=rate, currency=currency)
    session.add(version)
    session.flush()
    return version


def value_at(session: Session, code: str, at: datetime | None = None) -> ProgramValue:
    """The version of the program's value in force at ``at`` (default: now)."""
    program = get_program(session, code)
    at = at or utcnow()
    version = session.scalar(
        select(ProgramValue)
        .where(ProgramValue.program_code == program.code, ProgramValue.effective_from <= at)
        .order_by(ProgramValue.effective_from.desc())
        .limit(1)
    )
    if version is None:
        raise NoRate(f"program {code!r} has no value at {at.isoformat()}", field="program")
    return version
