"""Conversions: a member turns points of one program into points of another.

One ledger transaction, three units (DESIGN.md's example, 1,000 BANKA -> 400 SKYMILES):

    BANKA:    Dr member:M:BANKA 1,000          Cr program:BANKA:converted 1,000
    SKYMILES: Dr program:SKYMILES:issued 400   Cr member:M:SKYMILES 400
    CNY:      Dr partner:banka:position 1,000  Cr partner:skyair:position 800
                                               Cr platform:spread:CNY 200

Only under a conversion agreement in force, within its minimum and maximum, asked by a
partner that owns one of the two programs for a member linked to it. The source points
come from the oldest unexpired lots; the target points are a new lot earned now.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ledger.booking import credit, debit, post
from ledger.units import check_amount

from . import accounts, lots, pricing
from .agreements import conversion_terms
from .errors import NoAgreement, NotPermitted, OutsideLimits, ProgramNotFound
from .models import Operation
from .operations import check_reference, context, get_operation, lock_points, record, replayed
from .programs import get_program


def _named(lookup, *args, field: str):
    """Call ``lookup``; a refusal names the request's own field (``source``/``target``)."""
    try:
        return lookup(*args)
    except (ProgramNotFound, NoAgreement) as err:
        err.field = field
        raise


def _check_limits(terms, points: int, target_points: int) -> None:
    if terms.min_points is not None and points < terms.min_points:
        raise OutsideLimits(f"convert at least {terms.min_points} points", field="points")
    if terms.max_points is not None and points > terms.max_points:
        raise OutsideLimits(f"convert at most {terms.max_points} points", field="points")
    if target_points < 1:
        raise OutsideLimits("that many points convert into less than one target point",
                            field="points")


def convert(session: Session, partner_id: str, customer_ref: str, source: str, target: str,
            points: int, *, idempotency_key: str | None = None, reference: str | None = None,
            now: datetime | None = None) -> Operation:
    """Convert ``points`` of the member's ``source`` points into ``target`` points."""
    ctx = context(session, partner_id, customer_ref, idempotency_key=idempotency_key, now=now)
    check_amount(points, field="points")
    check_reference(reference)
    source_program = _named(get_program, session, source, field="source")
    target_program = _named(get_program, session, target, field="target")
    if ctx.partner.id not in (source_program.owner_id, target_program.owner_id):
        raise NotPermitted("a partner converts only into or out of its own program",
                           field="source")
    agreement, terms = _named(conversion_terms, session, source, target, ctx.now,
                              field="target")
    amounts = pricing.conversion(points, terms.ratio, terms.value_per_point,
                                 terms.target_value_per_point, agreement.currency)
    _check_limits(terms, points, amounts.target_points)
    accounts.open_member_points(session, ctx.member.id, target)
    codes = lock_points(ctx, source, target)
    # Only under the lock: a duplicate that waited for it sees the first one's record.
    if (earlier := replayed(ctx, "conversion", member_id=ctx.member.id, program_code=source,
                            target_code=target, points=points,
                            reference=reference)) is not None:
        return earlier
    taken = lots.choose(session, ctx.member.id, source, points, ctx.now)
    currency = agreement.currency
    money = [debit(accounts.liability(source_program, currency), amounts.paid),
             credit(accounts.liability(target_program, currency), amounts.received),
             credit(accounts.platform("spread", currency), amounts.spread)]
    txn = post(session, [debit(codes[source], points),
                         credit(f"program:{source}:converted", points),
                         debit(f"program:{target}:issued", amounts.target_points),
                         credit(codes[target], amounts.target_points),
                         *(line for line in money if line.amount)],
               kind="conversion", idempotency=ctx.key, reference=reference, now=ctx.now)
    if txn.replayed:
        return get_operation(session, partner_id, txn.id)
    lots.take(session, taken, txn.id)
    lots.open_lot(session, ctx.member.id, target, amounts.target_points, ctx.now,
                  lots.expiry_of(target_program.expiry_months, ctx.now), txn.id)
    other = ({source_program.owner_id, target_program.owner_id} - {ctx.partner.id}) or {None}
    return record(ctx, txn, "conversion", program=source, points=points, reference=reference,
                  target_code=target, target_points=amounts.target_points,
                  counterparty_id=other.pop(), currency=currency, gross=amounts.paid,
                  fee=amounts.spread, agreement_id=agreement.id, terms_id=terms.id)
