"""Bulk import: a partner moves its members' existing points onto the platform.

A file of lines (customer reference, points, the instant they were earned) becomes one
posted ``import`` transaction per line, booked set-wise (``ledger.post_many``) -- all or
none. Every line is checked before anything is booked and every bad line is reported,
not only the first, so a partner fixes its file in one round trip. Each line opens a
lot with its real earn date, so imported points expire when they would have.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import idempotency as idem
from ledger.batch import Booking, post_many
from ledger.booking import credit, debit
from ledger.errors import ConcurrentChange, IdempotencyConflict, LedgerError
from ledger.idempotency import IdempotencyKey
from ledger.units import check_amount

from . import accounts, events, lots, members
from .errors import ImportRejected, InvalidOperation
from .models import Lot, MemberLink, Operation
from .operations import check_reference, context, funding, may_issue, record
from .programs import get_program

MAX_LINES = 10_000
#: Points earned before this are not points any program still owes.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _line_keys(partner_id: str, key: str | None, n: int) -> list[IdempotencyKey | None]:
    if key is None:
        return [None] * n
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return [IdempotencyKey(partner_id, f"import:{digest}:{i}") for i in range(n)]


def _check_line(ctx, program, i: int, line) -> tuple:
    if not isinstance(line, dict):
        raise InvalidOperation("a line is an object", field="lines")
    if not isinstance(line.get("customer_ref"), str):
        # Anything else would reach the database as a bind parameter and fail there.
        raise InvalidOperation("customer_ref must be a string", field="customer_ref")
    member = members.require_active(members.member_of(ctx.session, ctx.partner.id,
                                                      line.get("customer_ref")))
    points = check_amount(line.get("points"), field="points")
    earned_at = line.get("earned_at")
    if not isinstance(earned_at, datetime) or earned_at.tzinfo is None:
        raise InvalidOperation("earned_at must be a timezone-aware instant", field="earned_at")
    try:
        earned_at = earned_at.astimezone(timezone.utc)
    except OverflowError:
        earned_at = EARLIEST - timedelta(days=1)  # before year 1 in UTC: refused below
    if earned_at < EARLIEST:
        raise InvalidOperation(f"earned_at must be after {EARLIEST:%Y-%m-%d}", field="earned_at")
    if earned_at > ctx.now:
        raise InvalidOperation("earned_at is in the future", field="earned_at")
    expires_at = lots.expiry_of(program.expiry_months, earned_at)
    if expires_at is not None and expires_at <= ctx.now:
        raise InvalidOperation("these points expired before they were imported",
                               field="earned_at")
    return member, points, earned_at, expires_at, check_reference(line.get("reference"))


def _checked(ctx, program, lines) -> list[tuple]:
    if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_LINES:
        raise InvalidOperation(f"an import has 1-{MAX_LINES} lines", field="lines")
    checked, problems = [], []
    for i, line in enumerate(lines):
        try:
            checked.append(_check_line(ctx, program, i, line))
        except LedgerError as err:
            problems.append({"line": i, "code": err.code, "field": err.field,
                             "detail": err.message})
    if problems:
        raise ImportRejected(f"{len(problems)} of {len(lines)} lines are wrong; nothing was "
                             "imported", field="lines", errors=problems)
    return checked


def _replayed(ctx, program, lines: list, key: str) -> list[Operation]:
    """The operations an earlier import under ``key`` booked, if ``lines`` is the same
    file: as many lines, each for the same member, points, earn date and reference.
    Anything else reuses the key for another request."""
    session, keys = ctx.session, _line_keys(ctx.partner.id, key, len(lines) + 1)
    found = {r.key: r for r in idem.lookup_many(session, [(k.scope, k.key) for k in keys])}
    conflict = IdempotencyConflict(f"idempotency key {key!r} was already used for a "
                                   "different import", field="idempotency_key")
    if len(found) != len(lines) or keys[-1].key in found:
        raise conflict
    for stored in found.values():
        if stored.transaction_id is None:
            raise idem.stored_refusal(stored)
    ids = [found[k.key].transaction_id for k in keys[:-1]]
    refs = list({line.get("customer_ref") for line in lines if isinstance(line, dict)
                 and isinstance(line.get("customer_ref"), str)})
    booked, member_of = {}, {}
    for start in range(0, len(lines), 500):
        booked.update((op.id, (op, earned_at)) for op, earned_at in session.execute(
            select(Operation, Lot.earned_at).join(Lot, Lot.transaction_id == Operation.id)
            .where(Operation.id.in_(ids[start:start + 500]))))
        member_of.update(session.execute(select(MemberLink.customer_ref, MemberLink.member_id)
                                         .where(MemberLink.partner_id == ctx.partner.id,
                                                MemberLink.customer_ref.in_(
                                                    refs[start:start + 500]))).all())
    for line, txn_id in zip(lines, ids):
        op, earned_at = booked[txn_id]
        ref = line.get("customer_ref") if isinstance(line, dict) else None
        if not isinstance(ref, str) or (
                op.program_code, op.member_id, op.points, op.reference, earned_at) != (
                program.code, member_of.get(ref), line.get("points"), line.get("reference"),
                line.get("earned_at")):
            raise conflict
    return [booked[txn_id][0] for txn_id in ids]


def import_points(session: Session, partner_id: str, program_code: str, lines: list[dict], *,
                  idempotency_key: str | None = None,
                  now: datetime | None = None) -> list[Operation]:
    """Import ``lines`` ({customer_ref, points, earned_at, reference?}) into the partner's
    program; returns one operation per line, in order."""
    ctx = context(session, partner_id, None, idempotency_key=idempotency_key, now=now)
    program = get_program(session, program_code)
    may_issue(ctx.partner, program)
    keys = _line_keys(ctx.partner.id, idempotency_key, len(lines) if isinstance(lines, list)
                      else 0)
    if keys and keys[0] is not None and idem.lookup(session, keys[0]) is not None:
        return _replayed(ctx, program, lines, idempotency_key)
    checked = _checked(ctx, program, lines)
    bookings, fundings = [], []
    for (member, points, _, _, reference), key in zip(checked, keys):
        code = accounts.open_member_points(session, member.id, program.code)
        money, value, amount = funding(ctx, program, points)
        fundings.append((value, amount))
        bookings.append(Booking((debit(f"program:{program.code}:issued", points),
                                 credit(code, points), *money),
                                kind="import", idempotency=key, reference=reference))
    booked = post_many(session, bookings, now=ctx.now)
    if any(txn.replayed for txn in booked):
        # Another request with this key committed between our look and our booking:
        # run again from the start, which then replays it.
        raise ConcurrentChange("the import's keys were booked meanwhile")
    operations = []
    for txn, (member, points, earned_at, expires_at, reference), (value, amount) in zip(
            booked, checked, fundings):
        lots.open_lot(session, member.id, program.code, points, earned_at, expires_at, txn.id)
        ctx.member = member
        operations.append(record(ctx, txn, "import", program=program.code, points=points,
                                 reference=reference, currency=value.currency if value else None,
                                 gross=amount, value_id=value.id if value else None,
                                 publish=False))
    events.publish(session, operations)
    return operations
