"""Operations: each one ledger transaction that books points and money together.

This module holds what every operation shares -- who may do it, the replay of an
idempotent retry, the Operation record -- and the earning side: issue, bulk import and
clawback. Spending is in :mod:`.redemptions`, conversion in :mod:`.conversions`.

Every function takes the session first and only flushes; the caller runs it through
``ledger.unit_of_work.run`` so that a refusal anywhere leaves nothing written. With an
``idempotency_key`` (scoped to the partner) a retry returns the operation the first
attempt booked, even if the member has since spent the points it would now need.
Recording an operation also writes its webhook events in the same transaction (the
outbox, :mod:`.events`), so a booking and its events commit or roll back together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import idempotency as idem
from ledger.accounts import lock_accounts
from ledger.booking import credit, debit, post, reverse
from ledger.errors import (
    AccountNotFound,
    IdempotencyConflict,
    ReversalExceedsOriginal,
)
from ledger.idempotency import IdempotencyKey
from ledger.types import parse_id, utcnow
from ledger.units import check_amount

from . import accounts, events, lots, members, pricing
from .expiry import release_expired_holds
from .errors import InvalidOperation, InsufficientPoints, NotPermitted, OperationNotFound
from .models import Lot, Member, Operation, Partner, Program, ProgramValue
from .partners import get_partner, require_active
from .programs import get_program, value_at

MAX_REFERENCE = 200


@dataclass
class Context:
    """Who asks, for which member, when, under which key."""

    session: Session
    partner: Partner
    member: Member | None
    now: datetime
    key: IdempotencyKey | None


def context(session: Session, partner_id: str, customer_ref: str | None, *,
            idempotency_key: str | None, now: datetime | None) -> Context:
    """Check the partner is active and, if named, the member linked to it and active."""
    now = now or utcnow()
    if now.tzinfo is None:
        raise InvalidOperation("now must be timezone-aware", field="now")
    partner = require_active(get_partner(session, partner_id))
    member = None
    if customer_ref is not None:
        member = members.require_active(members.member_of(session, partner.id, customer_ref))
    key = IdempotencyKey(partner.id, idempotency_key) if idempotency_key is not None else None
    return Context(session, partner, member, now, key)


def replayed(ctx: Context, kind: str, **request) -> Operation | None:
    """The operation an earlier request with this key booked (or its refusal, raised).

    It must be the same request: an operation of ``kind`` whose fields named in
    ``request`` (member_id, points, ...) are the same; else the key is reused for
    another request and that is a conflict, as in the ledger.
    """
    if ctx.key is None:
        return None
    record = idem.lookup(ctx.session, ctx.key)
    if record is None:
        return None
    if record.transaction_id is None:
        raise idem.stored_refusal(record)
    operation = get_operation(ctx.session, ctx.partner.id, record.transaction_id)
    if operation.kind != kind or any(getattr(operation, name) != value
                                     for name, value in request.items()):
        raise IdempotencyConflict(f"idempotency key {ctx.key.key!r} was already used for a "
                                  "different request", field="idempotency_key")
    return operation


def check_reference(reference) -> str | None:
    if reference is not None and (not isinstance(reference, str)
                                  or not 1 <= len(reference) <= MAX_REFERENCE):
        raise InvalidOperation(f"reference must be 1-{MAX_REFERENCE} characters",
                               field="reference")
    return reference


def lock_points(ctx: Context, *programs: str) -> dict[str, str]:
    """Lock the member's points accounts of ``programs``; return their codes. A member
    who never held a program's points has nothing to spend in it.

    Check for a replay (:func:`replayed`) only after this: a concurrent duplicate of the
    request waits here until the first one commits, and must then see its record rather
    than the points it spent."""
    codes = {p: accounts.member_points(ctx.member.id, p) for p in programs}
    try:
        lock_accounts(ctx.session, codes.values())
    except AccountNotFound as exc:
        raise InsufficientPoints(f"the member holds no {exc.details['missing'][0]} points",
                                 field="points", available=0) from exc
    release_expired_holds(ctx.session, ctx.member.id, programs, ctx.now)
    return codes


def record(ctx: Context, txn, kind: str, *, program: str, points: int, publish: bool = True,
           **fields) -> Operation:
    """The operation that gives ``txn`` its meaning, and (unless the caller publishes a
    batch itself: ``publish=False``) its webhook events, in the same transaction."""
    operation = Operation(id=txn.id, kind=kind, partner_id=ctx.partner.id,
                          member_id=fields.pop("member_id", None) or ctx.member.id,
                          program_code=program, points=points, created_at=txn.created_at,
                          **fields)
    ctx.session.add(operation)
    ctx.session.flush()
    if publish:
        events.publish(ctx.session, [operation])
    return operation


def get_operation(session: Session, partner_id: str, operation_id) -> Operation:
    """One of the partner's operations: booked by it or moving its money or points."""
    wanted = parse_id(operation_id)
    operation = session.get(Operation, wanted) if wanted else None
    if operation is None or partner_id not in (operation.partner_id, operation.counterparty_id):
        raise OperationNotFound(f"no operation {str(operation_id)[:60]!r} of partner "
                                f"{partner_id!r}", field="operation_id")
    return operation


def own_operation(session: Session, partner_id: str, operation_id, kinds) -> Operation:
    """An operation the partner booked itself, of one of ``kinds``."""
    operation = get_operation(session, partner_id, operation_id)
    if operation.partner_id != partner_id:
        raise NotPermitted("only the partner that booked an operation may change it",
                           field="operation_id")
    if operation.kind not in kinds:
        raise InvalidOperation(f"operation {operation.id} is a {operation.kind}, not "
                               f"{' or '.join(kinds)}", field="operation_id")
    return operation


def moved_so_far(session: Session, original: Operation, kind: str) -> tuple[int, list]:
    """Points already moved by ``kind`` operations (refunds, clawbacks) of ``original``."""
    rows = session.execute(select(Operation.id, Operation.points).where(
        Operation.related_id == original.id, Operation.kind == kind)).all()
    return sum(points for _, points in rows), [row.id for row in rows]


def same_part(points) -> dict:
    """What a replay of a partial reversal compares: its points, if it named them."""
    return {} if points is None else {"points": check_amount(points, field="points")}


def part_to_move(original: Operation, done: int, points) -> int:
    left = original.points - done
    if points is None:
        points = left
    else:
        check_amount(points, field="points")
    if points > left:
        raise ReversalExceedsOriginal(
            f"{points} points asked, {left} of operation {original.id} left to reverse",
            field="points")
    if points == 0:
        raise ReversalExceedsOriginal(f"operation {original.id} is fully reversed",
                                      field="operation_id")
    return points


# --- earning ---------------------------------------------------------------------------------

def may_issue(partner: Partner, program: Program) -> None:
    if program.owner_id is None and not partner.is_issuer:
        raise NotPermitted("only an issuer issues coalition points", field="program")
    if program.owner_id is not None and program.owner_id != partner.id:
        raise NotPermitted(f"program {program.code} belongs to another partner", field="program")


def funding(ctx: Context, program: Program, points: int, done: int = 0, value=None):
    """Coalition points are bought from the platform at the program's value: the issuer's
    position pays the platform's coalition account. A partner's own points cost nothing
    here (it carries its own liability)."""
    if program.owner_id is not None:
        return [], None, None
    value = value or value_at(ctx.session, program.code, ctx.now)
    currency = ctx.partner.settlement_currency
    if value.currency != currency:
        raise InvalidOperation(f"program {program.code} is valued in {value.currency}, the "
                               f"partner settles in {currency}", field="program")
    amount = pricing.value_part(done, points, value.value_per_point, currency)
    lines = [debit(accounts.position(ctx.partner.id, currency), amount),
             credit(accounts.platform("coalition", currency), amount)] if amount else []
    return lines, value, amount


def issue(session: Session, partner_id: str, customer_ref: str, program_code: str,
          points: int, *, idempotency_key: str | None = None, reference: str | None = None,
          now: datetime | None = None) -> Operation:
    """Credit ``points`` the member earned with the partner now, as a new lot."""
    ctx = context(session, partner_id, customer_ref, idempotency_key=idempotency_key, now=now)
    return earn(ctx, program_code, points, reference=reference, earned_at=ctx.now)


def earn(ctx: Context, program_code: str, points: int, *, reference=None,
         earned_at: datetime, kind: str = "issue") -> Operation:
    check_amount(points, field="points")
    check_reference(reference)
    program = get_program(ctx.session, program_code)
    may_issue(ctx.partner, program)
    if (earlier := replayed(ctx, kind, member_id=ctx.member.id, program_code=program.code,
                            points=points, reference=reference)) is not None:
        return earlier
    expires_at = lots.expiry_of(program.expiry_months, earned_at)
    if expires_at is not None and expires_at <= ctx.now:
        raise InvalidOperation("these points expired before they were imported",
                               field="earned_at")
    member_account = accounts.open_member_points(ctx.session, ctx.member.id, program.code)
    money, value, amount = funding(ctx, program, points)
    txn = post(ctx.session, [debit(f"program:{program.code}:issued", points),
                             credit(member_account, points), *money],
               kind=kind, idempotency=ctx.key, reference=reference, now=ctx.now)
    if txn.replayed:
        return get_operation(ctx.session, ctx.partner.id, txn.id)
    lots.open_lot(ctx.session, ctx.member.id, program.code, points, earned_at, expires_at, txn.id)
    return record(ctx, txn, kind, program=program.code, points=points, reference=reference,
                  currency=value.currency if value else None, gross=amount,
                  value_id=value.id if value else None)


def clawback(session: Session, partner_id: str, operation_id, points: int | None = None, *,
             idempotency_key: str | None = None, now: datetime | None = None) -> Operation:
    """Take back points the partner issued (all that is left of them, or ``points``):
    from that issue's own lot first, then the member's oldest."""
    ctx = context(session, partner_id, None, idempotency_key=idempotency_key, now=now)
    original = own_operation(session, partner_id, operation_id, ("issue", "import"))
    ctx.member = session.get(Member, original.member_id)
    codes = lock_points(ctx, original.program_code)
    # Only under the lock: a duplicate that waited for it sees the first one's record.
    if (earlier := replayed(ctx, "clawback", related_id=original.id,
                            **same_part(points))) is not None:
        return earlier
    done, _ = moved_so_far(session, original, "clawback")
    points = part_to_move(original, done, points)
    lot_id = session.scalar(select(func.min(Lot.id)).where(Lot.transaction_id == original.id))
    taken = lots.choose(session, ctx.member.id, original.program_code, points, ctx.now,
                        first_lot=lot_id)
    program = get_program(session, original.program_code)
    value = session.get(ProgramValue, original.value_id) if original.value_id else None
    money, _, amount = funding(ctx, program, points, done, value)
    entries = [credit(f"program:{program.code}:issued", points),
               debit(codes[program.code], points),
               *(line._replace(side="C" if line.side == "D" else "D") for line in money)]
    txn = reverse(session, original.id, entries, kind="clawback", idempotency=ctx.key,
                  now=ctx.now)
    if txn.replayed:
        return get_operation(session, partner_id, txn.id)
    lots.take(session, taken, txn.id)
    return record(ctx, txn, "clawback", program=program.code, points=points,
                  related_id=original.id, currency=original.currency, gross=amount,
                  value_id=original.value_id)
