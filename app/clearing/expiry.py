"""The expiry of authorisations, as the clearing domain records it.

An authorisation past its expiry holds nothing any more. The ledger voids its hold (as
``expiry``) -- in the sweep (:func:`.redemptions.expire_authorisations`) or, so that a
member can spend those points at once, before the member's next spend
(:func:`release_expired_holds`) -- and each such void is recorded here as an operation of
kind ``expiry``, whose events (``transaction.expired``) the caller publishes.

Every function takes the session first and only flushes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from ledger.booking import void
from ledger.errors import NotPending
from ledger.models import Transaction

from . import events
from .models import Operation


def expired_holds(session: Session, member_id: str, programs, now: datetime) -> list:
    """The member's authorisations in ``programs`` past their expiry and not resolved:
    they reserve nothing any more, whether or not the sweep has voided them yet."""
    resolution = aliased(Transaction)
    return list(session.execute(
        select(Operation.id, Operation.program_code, Operation.points)
        .join(Transaction, Transaction.id == Operation.id)
        .where(Operation.member_id == member_id, Operation.kind == "authorisation",
               Operation.program_code.in_(list(programs)), Transaction.expires_at <= now,
               ~exists().where(resolution.resolves_id == Operation.id))))


def release_expired_holds(session: Session, member_id: str, programs, now: datetime) -> int:
    """Void (as ``expiry``) the member's expired authorisations before a spend, so points
    an authorisation no longer holds are spendable at once, not after the next run of
    ``pointclear authorisations expire``; each is recorded (:func:`record_expiries`) as
    the sweep would. Runs under the member's lock."""
    due = expired_holds(session, member_id, programs, now)
    voids = []
    for hold_id, _, _ in due:
        try:
            voids.append(void(session, hold_id, kind="expiry", now=now))
        except NotPending:
            continue  # the sweep voided it meanwhile: nothing was written by this call
    events.publish(session, record_expiries(session, voids))
    return len(due)


def record_expiries(session: Session, voids) -> list[Operation]:
    """Record the ledger's ``expiry`` voids of authorisations as operations of kind
    ``expiry`` (``related_id``: the authorisation; its partner, counterparty, member,
    points and terms; no money), which :func:`.events.publish` reports as
    ``transaction.expired``. Holds the clearing domain did not book are left alone.

    The caller publishes, so that a sweep writes its events set-wise."""
    if not voids:
        return []
    held = {op.id: op for op in session.scalars(select(Operation).where(
        Operation.id.in_([txn.resolves_id for txn in voids]),
        Operation.kind == "authorisation"))}
    expired = []
    for txn in voids:
        auth = held.get(txn.resolves_id)
        if auth is None:
            continue
        expired.append(Operation(
            id=txn.id, kind="expiry", partner_id=auth.partner_id,
            counterparty_id=auth.counterparty_id, member_id=auth.member_id,
            program_code=auth.program_code, points=auth.points, related_id=auth.id,
            currency=auth.currency, agreement_id=auth.agreement_id, terms_id=auth.terms_id,
            reference=auth.reference, created_at=txn.created_at))
    session.add_all(expired)
    return expired
