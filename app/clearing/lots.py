"""Points lots: a member's points of one program, kept by the instant they were earned.

Every credit of points to a member (issue, import, conversion in) opens a lot with its
expiry (N months after it was earned, per the program). Every debit takes points from
lots, oldest first, by writing *moves*; a lot itself never changes:

- ``spend`` (negative): a redemption, capture, conversion out or clawback took them;
- ``reserve`` (negative): an authorisation holds them; the move counts only while the
  authorisation is unresolved -- its capture writes ``spend`` moves over the same lots
  and a void or expiry (by whoever books it, the ledger's sweep included) simply ends it;
- ``restore`` (positive): a refund gave them back to the lots they came from, so a
  refund never makes old points younger;
- ``expire`` (negative): the expiry job booked them as breakage.

Expired lots are never spent, even before the expiry job has booked them -- with one
exception on purpose: points an authorisation reserved while they were valid are
captured even if their lot expired meanwhile (the member spent them at the till when
the authorisation was made). Hence, for
every member account, the unexpired lots' remaining points plus the expired lots' not
yet booked ones equal the ledger's available balance -- :func:`check_agrees` tests it.

Callers lock the member's points account (``ledger.accounts.lock_accounts``) before
reading lots and keep the lock until they have booked: two spends of one member never
pick the same points.
"""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from ledger.models import Transaction

from .errors import InsufficientPoints
from .models import Lot, LotMove


def add_months(instant: datetime, months: int) -> datetime:
    """The same day and time ``months`` later; the month's last day when it is shorter."""
    month0 = instant.month - 1 + months
    year, month = instant.year + month0 // 12, month0 % 12 + 1
    day = min(instant.day, calendar.monthrange(year, month)[1])
    return instant.replace(year=year, month=month, day=day)


def expiry_of(expiry_months: int | None, earned_at: datetime) -> datetime | None:
    return add_months(earned_at, expiry_months) if expiry_months else None


@dataclass(frozen=True, slots=True)
class LotState:
    """A lot and what is left of it. Attributes: id, earned_at, expires_at, remaining."""

    id: int
    earned_at: datetime
    expires_at: datetime | None
    remaining: int

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def open_lot(session: Session, member_id: str, program: str, points: int,
             earned_at: datetime, expires_at: datetime | None,
             transaction_id: uuid.UUID) -> Lot:
    lot = Lot(member_id=member_id, program_code=program, points=points, earned_at=earned_at,
              expires_at=expires_at, transaction_id=transaction_id)
    session.add(lot)
    session.flush()
    return lot


def counting_moves():
    """Moves that count now: all but reservations of resolved holds."""
    resolution = aliased(Transaction)
    return or_(LotMove.kind != "reserve",
               ~exists().where(resolution.resolves_id == LotMove.transaction_id))


def with_points_left(*columns, where):
    """``SELECT columns..., remaining`` of the lots matching ``where`` (a list of
    conditions on :class:`Lot`) that still hold points; ``remaining`` is the lot's points
    plus its counting moves."""
    moved = (select(LotMove.lot_id, func.sum(LotMove.points).label("moved"))
             .join(Lot, Lot.id == LotMove.lot_id)
             .where(*where, counting_moves())
             .group_by(LotMove.lot_id).subquery())
    remaining = Lot.points + func.coalesce(moved.c.moved, 0)
    return (select(*columns, remaining).outerjoin(moved, moved.c.lot_id == Lot.id)
            .where(*where, remaining > 0))


def lots(session: Session, member_id: str, program: str) -> list[LotState]:
    """The member's lots of ``program`` with points left, oldest first."""
    rows = session.execute(
        with_points_left(Lot.id, Lot.earned_at, Lot.expires_at,
                         where=[Lot.member_id == member_id, Lot.program_code == program])
        .order_by(Lot.earned_at, Lot.id))
    # SUM of BIGINT is NUMERIC on PostgreSQL: points are ints here.
    return [LotState(lot_id, earned, expires, int(left)) for lot_id, earned, expires, left in rows]


def _move(session: Session, taken: list[tuple[int, int]], transaction_id, kind: str) -> None:
    sign = 1 if kind == "restore" else -1
    session.add_all(LotMove(lot_id=lot_id, transaction_id=transaction_id, kind=kind,
                            points=sign * points) for lot_id, points in taken)
    session.flush()


def choose(session: Session, member_id: str, program: str, points: int, now: datetime, *,
           first_lot: int | None = None) -> list[tuple[int, int]]:
    """Which lots ``points`` come from: unexpired ones, oldest first. ``first_lot`` (a
    clawback's own issue) goes before all others, even expired: taking back points that
    would otherwise become breakage never costs the member valid ones. Raises
    :class:`InsufficientPoints` if they do not reach."""
    usable = [lot for lot in lots(session, member_id, program)
              if lot.id == first_lot or not lot.expired(now)]
    usable.sort(key=lambda lot: lot.id != first_lot)  # stable: otherwise oldest first
    taken, left = [], points
    for lot in usable:
        if left == 0:
            break
        n = min(left, lot.remaining)
        taken.append((lot.id, n))
        left -= n
    if left:
        have = points - left
        raise InsufficientPoints(
            f"the member has {have} unexpired {program} points available, {points} needed",
            field="points", available=have, required=points)
    return taken


def take(session: Session, taken: list[tuple[int, int]], transaction_id: uuid.UUID, *,
         reserve: bool = False) -> None:
    """Write the moves of a spend (or, ``reserve=True``, of an authorisation)."""
    _move(session, taken, transaction_id, "reserve" if reserve else "spend")


def spend_reserved(session: Session, hold_id: uuid.UUID, points: int,
                   capture_id: uuid.UUID) -> None:
    """A capture of ``points`` spends what its authorisation reserved, oldest lot first."""
    reserved = session.execute(
        select(LotMove.lot_id, -LotMove.points).join(Lot, Lot.id == LotMove.lot_id)
        .where(LotMove.transaction_id == hold_id, LotMove.kind == "reserve")
        .order_by(Lot.earned_at, Lot.id)).all()
    taken, left = [], points
    for lot_id, n in reserved:
        if left == 0:
            break
        taken.append((lot_id, min(n, left)))
        left -= min(n, left)
    assert left == 0, "a capture never exceeds its authorisation (the ledger checks first)"
    _move(session, taken, capture_id, "spend")


def restore(session: Session, original_id: uuid.UUID, earlier: list[uuid.UUID], points: int,
            refund_id: uuid.UUID) -> None:
    """Give ``points`` back to the lots ``original_id`` spent from, newest first, less
    what the ``earlier`` refunds of it already gave back."""
    spent = session.execute(
        select(LotMove.lot_id, -LotMove.points).join(Lot, Lot.id == LotMove.lot_id)
        .where(LotMove.transaction_id == original_id, LotMove.kind == "spend")
        .order_by(Lot.earned_at.desc(), Lot.id.desc())).all()
    given = {lot_id: int(n) for lot_id, n in session.execute(
        select(LotMove.lot_id, func.sum(LotMove.points))
        .where(LotMove.transaction_id.in_(earlier), LotMove.kind == "restore")
        .group_by(LotMove.lot_id))} if earlier else {}
    taken, left = [], points
    for lot_id, n in spent:
        room = n - given.get(lot_id, 0)
        if left and room > 0:
            taken.append((lot_id, min(room, left)))
            left -= min(room, left)
    assert left == 0, "a refund never exceeds what was spent (the ledger checks first)"
    _move(session, taken, refund_id, "restore")


def expire(session: Session, taken: list[tuple[int, int]], transaction_id: uuid.UUID) -> None:
    _move(session, taken, transaction_id, "expire")


def due(session: Session, member_id: str, program: str, now: datetime) -> list[tuple[int, int]]:
    """The member's expired lots with points left, as (lot id, points) to expire."""
    return [(lot.id, lot.remaining) for lot in lots(session, member_id, program)
            if lot.expired(now)]


def check_agrees(session: Session, member_id: str, program: str, available: int) -> bool:
    """Do the member's lots hold exactly the ledger's ``available`` balance?"""
    return sum(lot.remaining for lot in lots(session, member_id, program)) == available
