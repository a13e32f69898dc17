"""Verification: prove the books are whole, or say exactly where they are not.

Checks, each a set-based query so it runs on the whole ledger in one pass:

- every transaction balances per unit; posted and pending ones have two or more postings,
  voided ones none; every posting is in its account's unit;
- every account's running totals equal the sum of its postings (posted: postings of
  posted transactions; pending: postings of pending transactions not yet resolved);
- no guarded account is overdrawn (counting pending debits);
- every resolution points at a pending transaction, captures no more than it reserved,
  and every reversal stays within what its original moved, line by line;
- the sealed blocks form an unbroken, correctly signed hash chain over unchanged rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, case, func, literal, select
from sqlalchemy.orm import Session, aliased

from .models import Account, AccountBalance, Block, Posting, Transaction
from .seal import unsealed_count, verify_chain


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule. Attributes: rule (short name), detail (human sentence)."""

    rule: str
    detail: str


@dataclass
class Report:
    """Outcome of :func:`verify`. Attributes: problems, counts (rows checked)."""

    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, rule: str, detail: str) -> None:
        self.problems.append(Problem(rule, detail))


MAX_REPORTED = 50  # per rule; the count of the rest is still reported


def _signed():
    return case((Posting.side == "D", Posting.amount), else_=-Posting.amount)


def verify(session: Session, *, public_keys=None, check_signatures: bool = True,
           tip: tuple[int, str] | None = None) -> Report:
    report = Report()
    report.counts = {
        "accounts": session.scalar(select(func.count()).select_from(Account)),
        "transactions": session.scalar(select(func.count()).select_from(Transaction)),
        "postings": session.scalar(select(func.count()).select_from(Posting)),
        "blocks": session.scalar(select(func.count()).select_from(Block)),
        "unsealed": unsealed_count(session),
    }
    _check_balanced(session, report)
    _check_totals(session, report)
    _check_shards(session, report)
    _check_guards(session, report)
    _check_resolutions(session, report)
    _check_reversals(session, report)
    for detail in verify_chain(session, public_keys if check_signatures else None, tip):
        report.add("seal", detail)
    return report


def _emit(report: Report, rule: str, rows, describe) -> None:
    rows = list(rows)
    for row in rows[:MAX_REPORTED]:
        report.add(rule, describe(row))
    if len(rows) > MAX_REPORTED:
        report.add(rule, f"... and {len(rows) - MAX_REPORTED} more")


def _check_balanced(session: Session, report: Report) -> None:
    _emit(report, "balanced", session.execute(
        select(Posting.transaction_id, Posting.unit, func.sum(_signed()).label("net"))
        .group_by(Posting.transaction_id, Posting.unit)
        .having(func.sum(_signed()) != 0)
    ), lambda r: f"transaction {r.transaction_id} is off by {r.net} {r.unit} (debits - credits)")

    count = func.count(Posting.line)
    _emit(report, "postings", session.execute(
        select(Transaction.id, Transaction.status, count.label("n"))
        .outerjoin(Posting, Posting.transaction_id == Transaction.id)
        .group_by(Transaction.id, Transaction.status)
        .having(case((Transaction.status == "voided", count > 0), else_=count < 2))
    ), lambda r: f"{r.status} transaction {r.id} has {r.n} postings")

    _emit(report, "unit", session.execute(
        select(Posting.transaction_id, Posting.line, Posting.unit, Account.code, Account.unit)
        .join(Account, Account.id == Posting.account_id)
        .where(Posting.unit != Account.unit)
    ), lambda r: f"transaction {r[0]} line {r[1]} is in {r[2]} but account {r[3]} is in {r[4]}")


def _expected_totals():
    txn, resolution = Transaction, aliased(Transaction)
    posted = txn.status == "posted"
    pending = and_(txn.status == "pending", resolution.id.is_(None))

    def total(side, status):
        return func.coalesce(
            func.sum(case((and_(Posting.side == side, status), Posting.amount), else_=0)), 0)

    return (
        select(Posting.account_id.label("account_id"),
               total("D", posted).label("dp"), total("C", posted).label("cp"),
               total("D", pending).label("dpend"), total("C", pending).label("cpend"))
        .join(txn, txn.id == Posting.transaction_id)
        .outerjoin(resolution, resolution.resolves_id == txn.id)
        .group_by(Posting.account_id)
        .subquery()
    )


def _check_totals(session: Session, report: Report) -> None:
    actual = (
        select(AccountBalance.account_id.label("account_id"),
               func.sum(AccountBalance.debits_posted).label("dp"),
               func.sum(AccountBalance.credits_posted).label("cp"),
               func.sum(AccountBalance.debits_pending).label("dpend"),
               func.sum(AccountBalance.credits_pending).label("cpend"))
        .group_by(AccountBalance.account_id)
        .subquery()
    )
    expected = _expected_totals()
    cols = ("dp", "cp", "dpend", "cpend")
    mismatch = [func.coalesce(actual.c[c], 0) != func.coalesce(expected.c[c], 0) for c in cols]
    rows = session.execute(
        select(Account.code, *(func.coalesce(actual.c[c], 0) for c in cols),
               *(func.coalesce(expected.c[c], 0) for c in cols))
        .outerjoin(actual, actual.c.account_id == Account.id)
        .outerjoin(expected, expected.c.account_id == Account.id)
        .where(mismatch[0] | mismatch[1] | mismatch[2] | mismatch[3])
    )
    names = ("debits posted", "credits posted", "debits pending", "credits pending")

    def describe(r):
        diffs = [f"{names[i]} {r[1 + i]} but postings say {r[5 + i]}"
                 for i in range(4) if r[1 + i] != r[5 + i]]
        return f"account {r[0]}: " + "; ".join(diffs)

    _emit(report, "totals", rows, describe)


def _check_shards(session: Session, report: Report) -> None:
    """Every account has exactly its shards, each mirroring its guard and flags."""
    shard_rows = (
        select(AccountBalance.account_id, func.count().label("n"),
               func.min(case((AccountBalance.guarded == Account.no_overdraft, 1), else_=0))
               .label("guard_ok"),
               func.min(case((and_(AccountBalance.frozen == Account.frozen,
                                   AccountBalance.closed == Account.closed), 1), else_=0))
               .label("flags_ok"),
               func.min(AccountBalance.shard).label("lo"), func.max(AccountBalance.shard).label("hi"))
        .join(Account, Account.id == AccountBalance.account_id)
        .group_by(AccountBalance.account_id)
        .subquery()
    )
    _emit(report, "shards", session.execute(
        select(Account.code, Account.shards, func.coalesce(shard_rows.c.n, 0).label("n"),
               shard_rows.c.guard_ok, shard_rows.c.flags_ok)
        .outerjoin(shard_rows, shard_rows.c.account_id == Account.id)
        .where((func.coalesce(shard_rows.c.n, 0) != Account.shards)
               | (shard_rows.c.lo != 0) | (shard_rows.c.hi != Account.shards - 1)
               | (shard_rows.c.guard_ok == 0) | (shard_rows.c.flags_ok == 0))
    ), lambda r: f"account {r.code} should have {r.shards} balance row(s) mirroring its guard "
                 f"and flags; it has {r.n}"
                 + ("" if r.n == 0 or (r.guard_ok and r.flags_ok) else ", not mirroring them"))


def _check_guards(session: Session, report: Report) -> None:
    available = (AccountBalance.credits_posted - AccountBalance.debits_posted
                 - AccountBalance.debits_pending)
    _emit(report, "guard", session.execute(
        select(Account.code, available.label("available"))
        .join(Account, Account.id == AccountBalance.account_id)
        .where(Account.no_overdraft | AccountBalance.guarded, available < 0)
    ), lambda r: f"no-overdraft account {r.code} is overdrawn: available {r.available}")


def _check_resolutions(session: Session, report: Report) -> None:
    txn, target = Transaction, aliased(Transaction)
    _emit(report, "resolution", session.execute(
        select(txn.id, target.status)
        .join(target, target.id == txn.resolves_id)
        .where(target.status != "pending")
    ), lambda r: f"transaction {r.id} resolves a {r.status} transaction")

    # Per account and side, a capture never posts more than its pending one reserved.
    _check_within_original(session, report, "capture", txn.resolves_id, flip=False,
                           describe=lambda r: f"capture of {r.oid} posts {r.amount} on account "
                                              f"#{r.account_id}, reserved {r.limit}")


def _check_within_original(session, report, rule, link, *, flip: bool, describe) -> None:
    """Per (original, account, side): what the linked transactions post <= the original.

    ``link`` is the column pointing at the original (resolves_id or reverses_id);
    ``flip`` compares reversals' sides with the original's opposite sides.
    """
    txn, line = Transaction, aliased(Posting)
    side = case((line.side == "D", "C"), else_="D") if flip else line.side
    linked = (
        select(link.label("oid"), line.account_id, side.label("side"),
               func.sum(line.amount).label("amount"))
        .join(line, line.transaction_id == txn.id)
        .where(link.is_not(None))
        .group_by(link, line.account_id, line.side)
        .subquery()
    )
    original = (
        select(Posting.transaction_id.label("oid"), Posting.account_id, Posting.side,
               func.sum(Posting.amount).label("amount"))
        .where(Posting.transaction_id.in_(select(link)))
        .group_by(Posting.transaction_id, Posting.account_id, Posting.side)
        .subquery()
    )
    limit = func.coalesce(original.c.amount, literal(0))
    _emit(report, rule, session.execute(
        select(linked.c.oid, linked.c.account_id, linked.c.amount, limit.label("limit"))
        .outerjoin(original, and_(original.c.oid == linked.c.oid,
                                  original.c.account_id == linked.c.account_id,
                                  original.c.side == linked.c.side))
        .where(linked.c.amount > limit)
    ), describe)


def _check_reversals(session: Session, report: Report) -> None:
    txn, original = Transaction, aliased(Transaction)
    _emit(report, "reversal", session.execute(
        select(txn.id, original.status, original.reverses_id)
        .join(original, original.id == txn.reverses_id)
        .where((original.status != "posted") | original.reverses_id.is_not(None))
    ), lambda r: f"reversal {r.id} reverses a transaction that is not a posted original")

    _check_within_original(session, report, "reversal", txn.reverses_id, flip=True,
                           describe=lambda r: f"reversals of {r.oid} move {r.amount} on account "
                                              f"#{r.account_id}, the original moved {r.limit}")
