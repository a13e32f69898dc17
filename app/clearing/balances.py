"""A member's points as they stand for the member: what can be spent now.

The ledger's available balance is the rule the ledger guards; a member sees it less
what can no longer be spent -- expired lots the expiry job has not booked yet -- and
plus what no longer is held -- authorisations past their expiry that the sweep has not
voided yet (the next spend voids them itself, see ``expiry.release_expired_holds``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import balance
from ledger.models import Account

from . import accounts, lots, pricing
from .errors import NoRate
from .models import Program
from .expiry import expired_holds
from .programs import value_at

MAX_EXPIRIES = 5


def member_programs(session: Session, member_id: str) -> list[str]:
    """Every program the member has ever held points of."""
    prefix = accounts.member_points(member_id, "")
    return list(session.scalars(select(Account.unit).where(Account.code.startswith(prefix))
                                .order_by(Account.unit)))


def balances(session: Session, member_id: str, programs: list[str], now: datetime) -> list[dict]:
    """Per program: available now, held by authorisations, expired but not yet booked,
    their value in money at the program's current value, and the next expiries."""
    names = dict(session.execute(select(Program.code, Program.name)
                                 .where(Program.code.in_(programs))).all())
    released = {}
    for _, program, points in expired_holds(session, member_id, programs, now):
        released[program] = released.get(program, 0) + points
    out = []
    for code in programs:
        ledger_balance = balance(session, accounts.member_points(member_id, code))
        states = lots.lots(session, member_id, code)
        expired = sum(lot.remaining for lot in states if lot.expired(now))
        held = ledger_balance.debits_pending - released.get(code, 0)
        available = ledger_balance.available + released.get(code, 0) - expired
        expiries: dict[datetime, int] = {}
        for lot in states:
            if lot.expires_at is not None and not lot.expired(now):
                expiries[lot.expires_at] = expiries.get(lot.expires_at, 0) + lot.remaining
        value, currency = _value(session, code, available, now)
        out.append({
            "program": code, "program_name": names.get(code, code), "available": available,
            "pending": held, "expired_unbooked": expired, "value": value, "currency": currency,
            "next_expiries": [{"expires_at": at, "points": n}
                              for at, n in sorted(expiries.items())[:MAX_EXPIRIES]],
        })
    return out


def _value(session: Session, code: str, points: int, now: datetime):
    try:
        version = value_at(session, code, now)
    except NoRate:
        return None, None
    return (pricing.round_half_up(points, version.value_per_point, version.currency),
            version.currency)
