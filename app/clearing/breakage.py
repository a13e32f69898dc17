"""Points expiry: lots past their expiry date expire, and the points are breakage.

For each member holding expired points of a program, one posted transaction
``Dr member:M:P / Cr program:P:expired`` for the points left in the member's expired lots
(oldest first), ``expire`` moves on those lots, an operation of kind ``expiry`` (no
``related_id``, which tells it from an authorisation's expiry; no partner asked for it,
the program's owner is its counterparty) and its ``transaction.expired`` event to the
owner -- all in one database transaction.

Points an unresolved authorisation reserved are not expired: the authorisation spent
them while they were valid. Nothing is done twice: each member is expired under the
lock of their points account, after reading what is still due, so two workers (one per
program, or several on one) can run at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.accounts import lock_accounts
from ledger.booking import credit, debit, post

from . import accounts, events, lots
from .models import Lot, Operation, Program
from .programs import system_account


def members_due(session: Session, program: str, now: datetime, *, limit: int = 500) -> list[str]:
    """Members with points left in expired lots of ``program`` (a bounded page)."""
    due = lots.with_points_left(Lot.member_id, where=[Lot.program_code == program,
                                                      Lot.expires_at <= now]).subquery()
    return list(session.scalars(select(due.c.member_id).distinct()
                                .order_by(due.c.member_id).limit(limit)))


def expire_member(session: Session, member_id: str, program: Program,
                  now: datetime) -> Operation | None:
    """Book the expiry of the member's expired points of ``program``; None if none."""
    code = accounts.member_points(member_id, program.code)
    lock_accounts(session, [code])
    due = lots.due(session, member_id, program.code, now)
    points = sum(n for _, n in due)
    if not points:
        return None  # another worker expired them first
    txn = post(session, [debit(code, points), credit(system_account(program.code, "expired"),
                                                      points)], kind="expiry", now=now)
    lots.expire(session, due, txn.id)
    operation = Operation(id=txn.id, kind="expiry", partner_id=None,
                          counterparty_id=program.owner_id, member_id=member_id,
                          program_code=program.code, points=points, created_at=txn.created_at)
    session.add(operation)
    session.flush()
    events.publish(session, [operation])
    return operation


def expire_program(sessions, program_code: str, now: datetime, *, batch: int = 100,
                   progress=None) -> tuple[int, int]:
    """Expire every member's due points of one program, ``batch`` members per
    transaction; returns (members, points). Safe to rerun and to run beside itself."""
    from ledger.unit_of_work import run

    members = points = 0
    while True:
        def work(session):
            program = session.get(Program, program_code)
            booked = [expire_member(session, m, program, now)
                      for m in members_due(session, program_code, now, limit=batch)]
            return [op.points for op in booked if op is not None], len(booked)

        done, seen = run(sessions, work)
        members, points = members + len(done), points + sum(done)
        if progress is not None:
            progress(members, points)
        if seen < batch or not done:
            return members, points
