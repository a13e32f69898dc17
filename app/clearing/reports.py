"""Finance reports on programs: outstanding points, liability and the period's movements.

Read from the program's own ledger accounts (DESIGN.md): points issued are the debits
of ``program:P:issued`` net of clawbacks; redeemed, converted and expired (breakage)
are the credits of ``program:P:redeemed``/``converted``/``expired`` net of their
reversals. Outstanding = issued - redeemed - converted - expired = the sum of the
members' balances (``members_total``). Liability = outstanding x the
program's value per point in force at the end of the period, rounded half up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import balance
from ledger.models import Account, AccountBalance

from . import accounts, pricing
from .errors import NoRate
from .programs import SYSTEM_ACCOUNTS, get_program, system_account, value_at


@dataclass(frozen=True)
class ProgramReport:
    """One program over [start, end]. Attributes: program; outstanding points at end;
    liability (minor units of currency, None without a value); issued, redeemed,
    converted, expired: the period's net movements; members_total: the members'
    posted balances now (equal to outstanding when the period ends now: a check that
    the program's books and its members' agree)."""

    program: str
    start: datetime
    end: datetime
    outstanding: int
    liability: int | None
    currency: str | None
    issued: int
    redeemed: int
    converted: int
    expired: int
    members_total: int


def _moved(session: Session, code: str, role: str, at: datetime) -> int:
    """Points the program's ``role`` account has moved up to ``at`` (posted)."""
    b = balance(session, system_account(code, role), as_of=at)
    return -b.posted if role == "issued" else b.posted


def _members_total(session: Session, code: str) -> int:
    prefix = accounts.member_points("", code).split(":", 1)[0] + ":"  # "member:"
    return int(session.scalar(
        select(func.coalesce(func.sum(AccountBalance.credits_posted
                                      - AccountBalance.debits_posted), 0))
        .join(Account, Account.id == AccountBalance.account_id)
        .where(Account.unit == code, Account.code.startswith(prefix))))


def program_report(session: Session, code: str, start: datetime, end: datetime) -> ProgramReport:
    program = get_program(session, code)
    at_end = {role: _moved(session, program.code, role, end) for role in SYSTEM_ACCOUNTS}
    at_start = {role: _moved(session, program.code, role, start) for role in SYSTEM_ACCOUNTS}
    outstanding = at_end["issued"] - at_end["redeemed"] - at_end["converted"] - at_end["expired"]
    try:
        value = value_at(session, program.code, end)
        liability = pricing.round_half_up(outstanding, value.value_per_point, value.currency)
        currency = value.currency
    except NoRate:
        liability = currency = None
    return ProgramReport(program.code, start, end, outstanding, liability, currency,
                         *(at_end[r] - at_start[r] for r in SYSTEM_ACCOUNTS),
                         members_total=_members_total(session, program.code))
