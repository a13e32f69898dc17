"""Balances: now from the running totals, at a past instant from the postings.

Sign convention: a balance is credits minus debits, which is what a member's points
account (a liability of the program) shows. Debit-normal accounts read it negated.
Available = posted balance minus pending debits: a hold reduces what can be spent at
once, an incoming pending credit adds nothing until it is posted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from .accounts import get_account
from .models import AccountBalance, Posting, Transaction


@dataclass(frozen=True, slots=True)
class Balance:
    """Totals of one account.

    Attributes:
      account, unit: the account's code and unit.
      debits_posted, credits_posted: sums of posted postings.
      debits_pending, credits_pending: sums of postings of still-pending transactions.
    """

    account: str
    unit: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def posted(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def pending(self) -> int:
        """Net effect of pending transactions (negative for a hold on the account)."""
        return self.credits_pending - self.debits_pending

    @property
    def available(self) -> int:
        return self.posted - self.debits_pending


def balance(session: Session, account: str, *, as_of: datetime | None = None) -> Balance:
    """The balance of ``account`` now, or as it stood at ``as_of`` (UTC, inclusive)."""
    info = get_account(session, account)
    if as_of is None:
        row = session.execute(
            select(
                func.coalesce(func.sum(AccountBalance.debits_posted), 0),
                func.coalesce(func.sum(AccountBalance.credits_posted), 0),
                func.coalesce(func.sum(AccountBalance.debits_pending), 0),
                func.coalesce(func.sum(AccountBalance.credits_pending), 0),
            ).where(AccountBalance.account_id == info.id)
        ).one()
    else:
        row = _totals_as_of(session, info.id, as_of)
    return Balance(info.code, info.unit, *(int(v) for v in row))


def _totals_as_of(session: Session, account_id: int, as_of: datetime):
    """Recompute the four totals from postings booked up to ``as_of``.

    Posted: postings of posted transactions created by then. Pending: postings of pending
    transactions created by then and not resolved by then.
    """
    txn, resolution = Transaction, aliased(Transaction)
    debit, credit = Posting.side == "D", Posting.side == "C"
    unresolved_then = ~select(resolution.id).where(
        resolution.resolves_id == txn.id, resolution.created_at <= as_of
    ).exists()
    posted = txn.status == "posted"
    pending = and_(txn.status == "pending", unresolved_then)

    def total(side, status):
        return func.coalesce(func.sum(case((and_(side, status), Posting.amount), else_=0)), 0)

    return session.execute(
        select(total(debit, posted), total(credit, posted),
               total(debit, pending), total(credit, pending))
        .select_from(Posting)
        .join(txn, txn.id == Posting.transaction_id)
        .where(Posting.account_id == account_id, txn.created_at <= as_of,
               or_(posted, txn.status == "pending"))
    ).one()
