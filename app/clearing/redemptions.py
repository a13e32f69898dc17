"""Redemptions: a member spends points of a program at a partner's till.

Direct (``redeem``: posted at once) or two-phase (``authorise`` reserves the points and
the money, ``capture`` posts the same or a smaller amount, ``void`` releases them; an
authorisation that is neither expires and releases them too: ``expire_authorisations``
is the sweep that books those expiries). ``refund`` gives back all or part of a
redemption. Each is one ledger transaction with the points and the money:

    points: Dr member:M:P            Cr program:P:redeemed
    money:  Dr <P's owner position>  Cr partner:R:position (net)  Cr platform:fees (fee)

The money follows the redemption agreement of P at R in force when the points were
redeemed (or authorised); captures and refunds reuse that terms version and are priced
cumulatively (:mod:`.pricing`), so all parts add up to the whole. A program's owner
redeems its own points without an agreement and without money.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.booking import Entry, capture as ledger_capture, credit, debit, hold, post
from ledger.booking import expire_due, reverse, void as ledger_void
from ledger.errors import CaptureExceedsPending, NotPending, PendingExpired
from ledger.types import utcnow
from ledger.units import check_amount

from . import accounts, events, lots, pricing
from .agreements import redemption_terms
from .errors import InvalidOperation, NotPermitted
from .expiry import record_expiries
from .models import AgreementTerms, Member, Operation, Program
from .operations import (
    Context,
    check_reference,
    context,
    get_operation,
    lock_points,
    moved_so_far,
    own_operation,
    part_to_move,
    record,
    replayed,
    same_part,
)
from .programs import get_program

DEFAULT_AUTHORISATION = timedelta(days=7)
MAX_AUTHORISATION = timedelta(days=30)


def _terms(ctx: Context, program: Program):
    """The agreement and terms for redeeming ``program`` at the asking partner, or
    (None, None) when the partner owns the program."""
    if program.owner_id == ctx.partner.id:
        return None, None
    if not ctx.partner.is_redeemer:
        raise NotPermitted(f"partner {ctx.partner.id!r} is not a redeemer", field="program")
    return redemption_terms(ctx.session, program.code, ctx.partner.id, ctx.now)


def _money(program: Program, redeemer: str, currency: str, amounts) -> list[Entry]:
    lines = [debit(accounts.liability(program, currency), amounts.gross),
             credit(accounts.position(redeemer, currency), amounts.net),
             credit(accounts.platform("fees", currency), amounts.fee)]
    return [line for line in lines if line.amount]


def _entries(ctx, program, member_account, points, terms, currency, done=0):
    amounts = None
    lines = [debit(member_account, points), credit(f"program:{program.code}:redeemed", points)]
    if terms is not None:
        amounts = pricing.redemption_part(done, points, terms.value_per_point, terms.fee_rate,
                                          currency)
        lines += _money(program, ctx.partner.id, currency, amounts)
    return lines, amounts


def _spend(session, partner_id, customer_ref, program_code, points, *, idempotency_key,
           reference, now, pending_until=None) -> Operation:
    ctx = context(session, partner_id, customer_ref, idempotency_key=idempotency_key, now=now)
    check_amount(points, field="points")
    check_reference(reference)
    program = get_program(session, program_code)
    agreement, terms = _terms(ctx, program)
    kind = "redemption" if pending_until is None else "authorisation"
    codes = lock_points(ctx, program.code)
    # Only under the lock: a duplicate that waited for it sees the first one's record.
    if (earlier := replayed(ctx, kind, member_id=ctx.member.id, program_code=program.code,
                            points=points, reference=reference)) is not None:
        return earlier
    taken = lots.choose(session, ctx.member.id, program.code, points, ctx.now)
    currency = agreement.currency if agreement else None
    entries, amounts = _entries(ctx, program, codes[program.code], points, terms, currency)
    if pending_until is None:
        txn = post(session, entries, kind="redemption", idempotency=ctx.key,
                   reference=reference, now=ctx.now)
    else:
        txn = hold(session, entries, kind="authorisation", expires_at=pending_until,
                   idempotency=ctx.key, reference=reference, now=ctx.now)
    if txn.replayed:
        return get_operation(session, partner_id, txn.id)
    lots.take(session, taken, txn.id, reserve=pending_until is not None)
    return record(ctx, txn, kind, program=program.code, points=points, reference=reference,
                  counterparty_id=program.owner_id if agreement else None, currency=currency,
                  gross=amounts.gross if amounts else None,
                  fee=amounts.fee if amounts else None,
                  agreement_id=agreement.id if agreement else None,
                  terms_id=terms.id if terms else None)


def redeem(session: Session, partner_id: str, customer_ref: str, program_code: str,
           points: int, *, idempotency_key: str | None = None, reference: str | None = None,
           now: datetime | None = None) -> Operation:
    """Spend ``points`` of the member's ``program_code`` at the partner, at once."""
    return _spend(session, partner_id, customer_ref, program_code, points,
                  idempotency_key=idempotency_key, reference=reference, now=now)


def authorise(session: Session, partner_id: str, customer_ref: str, program_code: str,
              points: int, *, expires_in: timedelta = DEFAULT_AUTHORISATION,
              idempotency_key: str | None = None, reference: str | None = None,
              now: datetime | None = None) -> Operation:
    """Reserve ``points`` (and their money) until captured, voided or ``expires_in``."""
    if not isinstance(expires_in, timedelta) or not (
            timedelta(minutes=1) <= expires_in <= MAX_AUTHORISATION):
        raise InvalidOperation("an authorisation lasts from 1 minute to 30 days",
                               field="expires_in")
    now = now or utcnow()
    return _spend(session, partner_id, customer_ref, program_code, points,
                  idempotency_key=idempotency_key, reference=reference, now=now,
                  pending_until=now + expires_in)


def _resumed(session, partner_id, operation_id, kinds, idempotency_key, now):
    ctx = context(session, partner_id, None, idempotency_key=idempotency_key, now=now)
    original = own_operation(session, partner_id, operation_id, kinds)
    ctx.member = session.get(Member, original.member_id)
    terms = session.get(AgreementTerms, original.terms_id) if original.terms_id else None
    return ctx, original, get_program(session, original.program_code), terms


def capture(session: Session, partner_id: str, operation_id, points: int | None = None, *,
            idempotency_key: str | None = None, now: datetime | None = None) -> Operation:
    """Post an authorisation for all its points or fewer; the rest is released."""
    ctx, auth, program, terms = _resumed(session, partner_id, operation_id, ("authorisation",),
                                         idempotency_key, now)
    points = auth.points if points is None else check_amount(points, field="points")
    if (earlier := replayed(ctx, "capture", related_id=auth.id, points=points)) is not None:
        return earlier
    if points > auth.points:
        raise CaptureExceedsPending(f"{points} points asked, the authorisation holds "
                                    f"{auth.points}", field="points")
    code = accounts.member_points(auth.member_id, program.code)
    entries, amounts = _entries(ctx, program, code, points, terms, auth.currency)
    with _about_the_operation():
        txn = ledger_capture(session, auth.id, entries, idempotency=ctx.key, now=ctx.now)
    if txn.replayed:
        return get_operation(session, partner_id, txn.id)
    lots.spend_reserved(session, auth.id, points, txn.id)
    return _follow_up(ctx, txn, "capture", auth, points, amounts)


@contextmanager
def _about_the_operation():
    """The ledger names the pending transaction; the partner named the operation."""
    try:
        yield
    except (NotPending, PendingExpired) as err:
        err.field = "operation_id"
        err.message = err.message.replace("transaction", "authorisation", 1)
        err.args = (err.message,)
        raise


def _follow_up(ctx, txn, kind, original, points, amounts) -> Operation:
    return record(ctx, txn, kind, program=original.program_code, points=points,
                  member_id=original.member_id, related_id=original.id,
                  counterparty_id=original.counterparty_id, currency=original.currency,
                  gross=amounts.gross if amounts else None,
                  fee=amounts.fee if amounts else None, agreement_id=original.agreement_id,
                  terms_id=original.terms_id, reference=original.reference)


def void(session: Session, partner_id: str, operation_id, *,
         idempotency_key: str | None = None, now: datetime | None = None) -> Operation:
    """Release an authorisation: nothing is spent."""
    ctx, auth, _, _ = _resumed(session, partner_id, operation_id, ("authorisation",),
                               idempotency_key, now)
    if (earlier := replayed(ctx, "void", related_id=auth.id)) is not None:
        return earlier
    with _about_the_operation():
        txn = ledger_void(session, auth.id, idempotency=ctx.key, now=ctx.now)
    if txn.replayed:
        return get_operation(session, partner_id, txn.id)
    return _follow_up(ctx, txn, "void", auth, auth.points, None)


def _refundable(session, original: Operation) -> Operation:
    """A redemption, or the capture of an authorisation."""
    if original.kind != "authorisation":
        return original
    captured = session.scalar(select(Operation).where(Operation.related_id == original.id,
                                                      Operation.kind == "capture"))
    if captured is None:
        raise InvalidOperation(f"authorisation {original.id} was not captured; void it",
                               field="operation_id")
    return captured


def refund(session: Session, partner_id: str, operation_id, points: int | None = None, *,
           idempotency_key: str | None = None, now: datetime | None = None) -> Operation:
    """Give back all that is left of a redemption, or ``points`` of it, to the lots the
    points came from; the money moves back at the redemption's own terms."""
    ctx, original, program, terms = _resumed(
        session, partner_id, operation_id, ("redemption", "capture", "authorisation"),
        idempotency_key, now)
    original = _refundable(session, original)
    # Concurrent refunds of one redemption queue here, so each prices and restores its
    # part after the ones before it (what is done so far is read under the lock).
    lock_points(ctx, program.code)
    if (earlier := replayed(ctx, "refund", related_id=original.id,
                            **same_part(points))) is not None:
        return earlier
    done, earlier_refunds = moved_so_far(session, original, "refund")
    points = part_to_move(original, done, points)
    code = accounts.member_points(original.member_id, program.code)
    entries, amounts = _entries(ctx, program, code, points, terms, original.currency, done)
    mirrored = [line._replace(side="C" if line.side == "D" else "D") for line in entries]
    txn = reverse(session, original.id, mirrored, kind="refund", idempotency=ctx.key,
                  now=ctx.now)
    if txn.replayed:
        return get_operation(session, partner_id, txn.id)
    lots.restore(session, original.id, earlier_refunds, points, txn.id)
    return _follow_up(ctx, txn, "refund", original, points, amounts)


def expire_authorisations(session: Session, *, now: datetime | None = None,
                          limit: int = 1000) -> int:
    """Void, as ``expiry``, up to ``limit`` holds past their expiry; record each
    authorisation's expiry as an operation with its ``transaction.expired`` events, in
    the same transaction. Several workers may run it at once (the ledger claims holds
    with SKIP LOCKED on PostgreSQL). Returns how many holds it voided."""
    voids = []
    count = expire_due(session, now=now or utcnow(), limit=limit, on_expired=voids.append)
    events.publish(session, record_expiries(session, voids))
    return count
