"""Booking: the only code that writes transactions, postings and running totals.

Every write goes through the same steps, in this order:

1. Check the request's shape (amounts, sides, at least two postings) -- nothing read yet.
2. Read what the rules need (accounts; the pending or original transaction under a row
   lock) and check them: units, balance per unit, frozen/closed, capture and reversal
   limits.
3. Lock the guarded (no-overdraft) balance rows, in account-id order, and check under
   the lock that they are not frozen or closed and that the new totals keep every guard.
   Locking in one global order is what keeps two opposing transfers from deadlocking.
4. Store the idempotency record with the outcome (the new transaction's id, or the
   refusal). If the key already has a record, return or re-raise that outcome instead.
5. Insert the transaction and its postings, and add the deltas to the running totals:
   guarded rows are already locked; sharded system accounts add to one random shard
   (a hold's reservation to the shard its id picks, so its release finds it). The
   UPDATE re-checks frozen/closed; a row that changed meanwhile raises ConcurrentChange.

A refusal leaves nothing written by this call but, when the request carried a key, the
idempotency record of that refusal; the unit of work then rolls back the whole unit and
keeps only that record (see :mod:`ledger.unit_of_work`). Functions here take the
session first and only flush; the statements of steps 3-5 are in :mod:`ledger.sql`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import idempotency as idem
from .accounts import AccountInfo, load_accounts
from .errors import (
    AccountClosed,
    AccountFrozen,
    CaptureExceedsPending,
    ConcurrentChange,
    HoldNotExpired,
    InvalidMetadata,
    InsufficientFunds,
    InvalidPosting,
    LedgerError,
    NotPending,
    NotReversible,
    PendingExpired,
    ReversalExceedsOriginal,
    TooFewPostings,
    TransactionNotFound,
    Unbalanced,
)
from .models import Account, Posting, Transaction
from .sql import Sql
from .types import new_id, utcnow
from .units import check_amount

SIDES = ("D", "C")
_TXN = Transaction.__table__
_POSTING = Posting.__table__

class Entry(NamedTuple):
    """One line of a booking request (a named tuple: batches make thousands of them).

    Attributes:
      account: the account's code.
      side: ``"D"`` (debit) or ``"C"`` (credit).
      amount: positive ``int`` in the account's unit.
    """

    account: str
    side: str
    amount: int


def debit(account: str, amount: int) -> Entry:
    return Entry(account, "D", amount)


def credit(account: str, amount: int) -> Entry:
    return Entry(account, "C", amount)


class PostingRecord(NamedTuple):
    """A booked posting. Attributes: account (code), side, amount, unit."""

    account: str
    side: str
    amount: int
    unit: str


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """A booked transaction as the ledger returns it.

    Attributes:
      id: UUIDv7 of the transaction.
      kind: what the caller called it (``issue``, ``redemption``, ``void``...).
      status: ``pending``, ``posted`` or ``voided`` as booked. A pending transaction's
        later fate is another transaction that resolves it (see :func:`resolution_of`).
      reference, metadata: the caller's reference and JSON metadata.
      created_at, expires_at: UTC timestamps; ``expires_at`` only for pending ones.
      resolves_id: the pending transaction this one posted or voided.
      reverses_id: the posted transaction this one reverses.
      postings: the lines, in order.
      replayed: True when returned from an idempotency record rather than booked now.
    """

    id: uuid.UUID
    kind: str
    status: str
    reference: str | None
    metadata: dict | None
    created_at: datetime
    expires_at: datetime | None
    resolves_id: uuid.UUID | None
    reverses_id: uuid.UUID | None
    postings: tuple[PostingRecord, ...]
    replayed: bool = False


@dataclass
class _Plan:
    """Everything step 5 writes, computed before anything is written."""

    txn: dict
    postings: list[dict]
    accounts: dict[int, AccountInfo]
    deltas: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))


# --- step 1: shape -----------------------------------------------------------------------

def _normalise(entries, *, minimum: int = 2) -> tuple[Entry, ...]:
    out = []
    for i, e in enumerate(entries or ()):
        if not isinstance(e, Entry):
            try:
                e = Entry(*e)
            except TypeError as exc:
                raise InvalidPosting(f"posting {i} is not (account, side, amount)",
                                     field=f"postings[{i}]") from exc
        if not isinstance(e.account, str) or not e.account:
            raise InvalidPosting(f"posting {i} has no account", field=f"postings[{i}].account")
        if e.side not in SIDES:
            raise InvalidPosting(f"posting {i} side must be 'D' or 'C', got {e.side!r}",
                                 field=f"postings[{i}].side")
        check_amount(e.amount, field=f"postings[{i}].amount")
        out.append(e)
    if len(out) < minimum:
        raise TooFewPostings(f"a transaction needs at least {minimum} postings, got {len(out)}",
                             field="postings")
    return tuple(out)


def _request(entries, **extra) -> dict:
    return {"postings": [[e.account, e.side, e.amount] for e in entries or ()], **extra}


# --- step 2: rules that need the accounts -----------------------------------------------

def _check_accounts(entries, accounts: dict[str, AccountInfo], *, allow_frozen=False) -> None:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, e in enumerate(entries):
        acc = accounts[e.account]
        if acc.closed:
            raise AccountClosed(f"account {acc.code!r} is closed", field=f"postings[{i}].account")
        if acc.frozen and not allow_frozen:
            raise AccountFrozen(f"account {acc.code!r} is frozen", field=f"postings[{i}].account")
        totals[acc.unit][0 if e.side == "D" else 1] += e.amount
    for unit, (debits, credits) in sorted(totals.items()):
        if debits != credits:
            raise Unbalanced(
                f"debits {debits} and credits {credits} in {unit} differ", field="postings",
                unit=unit, debits=debits, credits=credits,
            )


def _new_plan(entries, accounts, *, status, kind, reference, metadata, now, expires_at=None,
              resolves_id=None, reverses_id=None) -> _Plan:
    txn_id = new_id()
    plan = _Plan(
        txn=dict(id=txn_id, kind=kind, status=status, reference=reference, meta=metadata,
                 created_at=now, expires_at=expires_at, resolves_id=resolves_id,
                 reverses_id=reverses_id),
        postings=[],
        accounts={},
    )
    pending = status == "pending"
    for line, e in enumerate(entries):
        acc = accounts[e.account]
        plan.accounts[acc.id] = acc
        plan.postings.append(dict(transaction_id=txn_id, line=line, account_id=acc.id,
                                  side=e.side, amount=e.amount, unit=acc.unit))
        plan.deltas[acc.id][(0 if e.side == "D" else 1) + (2 if pending else 0)] += e.amount
    return plan


def _release(plan: _Plan, pending_postings, accounts_by_id) -> None:
    """Take a pending transaction's reservations off the running totals."""
    for p in pending_postings:
        plan.accounts.setdefault(p.account_id, accounts_by_id[p.account_id])
        plan.deltas[p.account_id][2 if p.side == "D" else 3] -= p.amount


# --- step 3: guards ----------------------------------------------------------------------

def _takes_amounts(d: list[int]) -> bool:
    return d[0] > 0 or d[1] > 0 or d[2] > 0 or d[3] > 0


def _lock_and_check_guards(sql: Sql, plan: _Plan) -> None:
    """Lock the guarded rows in account order, then re-check flags and guards under lock."""
    guarded = sorted(a for a in plan.deltas if plan.accounts[a].no_overdraft)
    if not guarded:
        return
    for account_id, dp, cp, dpend, frozen, closed in sql.lock_balances(guarded):
        d = plan.deltas[account_id]
        code = plan.accounts[account_id].code
        if _takes_amounts(d) and (frozen or closed):
            error = AccountClosed if closed else AccountFrozen
            raise error(f"account {code!r} is {'closed' if closed else 'frozen'}",
                        field="postings", account=code)
        available = cp - dp - dpend
        after = (cp + d[1]) - (dp + d[0]) - (dpend + d[2])
        if after < 0 and after < available:
            raise InsufficientFunds(
                f"account {code!r} has {available} available, the booking needs "
                f"{available - after}",
                field="postings", account=code, available=available, required=available - after,
            )


# --- steps 4 and 5 ------------------------------------------------------------------------

def _execute(session, operation: str, request: dict, key, now, make_plan) -> TransactionRecord:
    fp = idem.fingerprint(operation, request) if key is not None else None
    sql = Sql(session)
    try:
        plan = make_plan(sql)
        _lock_and_check_guards(sql, plan)
    except LedgerError as err:
        if key is None:
            raise
        # The first answer for a key is the answer: a retry of a request that succeeded
        # gets its transaction even if it would be refused now.
        earlier = idem.lookup(session, key)
        if earlier is None:
            earlier = idem.record_refusal(session, key, fp, err, now)
        if earlier is not None:
            return _replay(session, earlier, fp, key)
        # Recorded in this session; the unit of work rolls back whatever else the work
        # wrote and records the refusal again on its own (see ledger.unit_of_work).
        err.refusal = (key, fp, now)
        raise
    if key is not None:
        earlier = idem.claim(session, key, fp, plan.txn["id"], now, sql=sql)
        if earlier is not None:
            return _replay(session, earlier, fp, key)
    _write(sql, plan)
    return _record_from_plan(plan)


def _replay(session, record, fp, key) -> TransactionRecord:
    idem.check_same_request(record, fp, key)
    if record.error_code is not None:
        raise idem.stored_refusal(record)
    return dataclasses.replace(get_transaction(session, record.transaction_id), replayed=True)


def _write(sql: Sql, plan: _Plan) -> None:
    sql.insert_transaction(plan.txn)
    if plan.postings:
        sql.insert_postings(plan.postings)
    # A hold and its release must touch the same shard, or that shard's pending total
    # would go negative: pending amounts go to the shard picked by the pending
    # transaction's id; posted amounts go to any shard.
    anchor = plan.txn["id"] if plan.txn["status"] == "pending" else plan.txn["resolves_id"]
    rows: dict[tuple[int, int], list[int]] = {}
    for account_id, (dp, cp, dpend, cpend) in plan.deltas.items():
        shards = plan.accounts[account_id].shards
        posted_shard = random.randrange(shards) if shards > 1 else 0
        pending_shard = anchor.int % shards if anchor is not None and shards > 1 else 0
        if dp or cp:
            row = rows.setdefault((account_id, posted_shard), [0, 0, 0, 0])
            row[0] += dp
            row[1] += cp
        if dpend or cpend:
            row = rows.setdefault((account_id, pending_shard), [0, 0, 0, 0])
            row[2] += dpend
            row[3] += cpend
    if rows:
        # Sorted: row locks are always taken in (account, shard) order.
        updated = sql.add_to_totals([(a, s, *d) for (a, s), d in sorted(rows.items())])
        if updated != len(rows):
            raise ConcurrentChange(
                f"{len(rows) - updated} balance row(s) of transaction {plan.txn['id']} "
                "were frozen, closed or missing when written; roll back and retry")


def _record_from_plan(plan: _Plan) -> TransactionRecord:
    t = plan.txn
    postings = tuple(
        PostingRecord(plan.accounts[p["account_id"]].code, p["side"], p["amount"], p["unit"])
        for p in plan.postings
    )
    return TransactionRecord(
        id=t["id"], kind=t["kind"], status=t["status"], reference=t["reference"],
        metadata=t["meta"], created_at=t["created_at"], expires_at=t["expires_at"],
        resolves_id=t["resolves_id"], reverses_id=t["reverses_id"], postings=postings,
    )


# --- public operations ---------------------------------------------------------------------

def post(session: Session, entries, *, kind: str, idempotency=None, reference=None,
         metadata=None, now: datetime | None = None) -> TransactionRecord:
    """Book a posted transaction at once."""
    return _book_new(session, entries, "posted", kind=kind, idempotency=idempotency,
                     reference=reference, metadata=metadata, now=now)


def hold(session: Session, entries, *, kind: str, expires_at: datetime | None = None,
         idempotency=None, reference=None, metadata=None,
         now: datetime | None = None) -> TransactionRecord:
    """Book a pending transaction: it reserves its amounts until posted, voided or expired."""
    return _book_new(session, entries, "pending", kind=kind, idempotency=idempotency,
                     reference=reference, metadata=metadata, now=now, expires_at=expires_at)


def _book_new(session, entries, status, *, kind, idempotency, reference, metadata, now,
              expires_at=None):
    entries = _normalise(entries)
    _check_kind(kind)
    _check_reference(reference)
    _check_metadata(metadata)
    now = _check_time(now or utcnow(), "now")
    if expires_at is not None:
        _check_time(expires_at, "expires_at")
    request = _request(entries, kind=kind, status=status, reference=reference,
                       metadata=metadata, expires_at=expires_at)

    def make_plan(sql):
        if expires_at is not None and expires_at <= now:
            raise InvalidPosting("expires_at must be in the future", field="expires_at")
        accounts = load_accounts(session, {e.account for e in entries}, sql=sql)
        _check_accounts(entries, accounts)
        return _new_plan(entries, accounts, status=status, kind=kind, reference=reference,
                         metadata=metadata, now=now, expires_at=expires_at)

    return _execute(session, status, request, idempotency, now, make_plan)


def capture(session: Session, pending_id: uuid.UUID, entries=None, *, idempotency=None,
            metadata=None, now: datetime | None = None) -> TransactionRecord:
    """Post a pending transaction, in full (``entries=None``) or for less.

    Partial entries must name the pending transaction's accounts and sides, each for at
    most what it reserved, and still balance per unit. Whatever is not captured is
    released.
    """
    entries = _normalise(entries) if entries is not None else None
    pending_id = _as_id(pending_id, "pending_id")
    _check_metadata(metadata)
    now = _check_time(now or utcnow(), "now")
    request = _request(entries, pending_id=pending_id, metadata=metadata, full=entries is None)

    def make_plan(sql):
        pending, lines = _lock_pending(session, pending_id, now, capturing=True)
        reserved = _by_account_side(lines)
        chosen = entries or tuple(Entry(code, side, amount)
                                  for (code, side), amount in reserved.items())
        for i, (key, amount) in enumerate(_by_account_side(chosen).items()):
            if amount > reserved.get(key, 0):
                raise CaptureExceedsPending(
                    f"capture of {amount} on {key[0]!r} side {key[1]} exceeds the "
                    f"{reserved.get(key, 0)} reserved", field="postings")
        accounts = load_accounts(session, {e.account for e in chosen} | {l.account for l in lines},
                                 sql=sql)
        _check_accounts(chosen, accounts)
        plan = _new_plan(chosen, accounts, status="posted", kind=pending.kind,
                         reference=pending.reference, metadata=metadata or pending.meta,
                         now=now, resolves_id=pending.id)
        _release(plan, lines, {a.id: a for a in accounts.values()})
        return plan

    return _execute(session, "capture", request, idempotency, now, make_plan)


def void(session: Session, pending_id: uuid.UUID, *, idempotency=None, kind: str = "void",
         metadata=None, now: datetime | None = None) -> TransactionRecord:
    """Release a pending transaction without posting anything."""
    pending_id = _as_id(pending_id, "pending_id")
    _check_kind(kind)
    _check_metadata(metadata)
    now = _check_time(now or utcnow(), "now")
    request = {"pending_id": pending_id, "kind": kind, "metadata": metadata}

    def make_plan(sql):
        pending, lines = _lock_pending(session, pending_id, now, capturing=False)
        if kind == "expiry" and (pending.expires_at is None or pending.expires_at > now):
            raise HoldNotExpired(f"transaction {pending_id} has not expired",
                                 field="pending_id")
        accounts = load_accounts(session, {l.account for l in lines}, sql=sql)
        plan = _new_plan((), accounts, status="voided", kind=kind, reference=pending.reference,
                         metadata=metadata, now=now, resolves_id=pending.id)
        _release(plan, lines, {a.id: a for a in accounts.values()})
        return plan

    return _execute(session, kind, request, idempotency, now, make_plan)


def reverse(session: Session, original_id: uuid.UUID, entries=None, *, idempotency=None,
            kind: str = "reversal", reference=None, metadata=None,
            now: datetime | None = None) -> TransactionRecord:
    """Reverse a posted transaction, in full (``entries=None``: all that is left) or in part.

    Partial entries mirror the original's lines (same account, opposite side); across all
    reversals of one transaction, no line is reversed by more than it moved.
    """
    entries = _normalise(entries) if entries is not None else None
    original_id = _as_id(original_id, "original_id")
    _check_kind(kind)
    _check_reference(reference)
    _check_metadata(metadata)
    now = _check_time(now or utcnow(), "now")
    request = _request(entries, original_id=original_id, kind=kind, reference=reference,
                       metadata=metadata, full=entries is None)

    def make_plan(sql):
        original = _lock_transaction(session, original_id)
        if original.status != "posted" or original.reverses_id is not None:
            raise NotReversible(
                f"transaction {original_id} is {original.status}"
                + (" and itself a reversal" if original.reverses_id else ""),
                field="original_id")
        left = _left_to_reverse(session, original_id)
        if entries is None:
            chosen = tuple(Entry(code, side, amount) for (code, side), amount in left.items()
                           if amount > 0)
            if not chosen:
                raise ReversalExceedsOriginal(f"transaction {original_id} is fully reversed",
                                              field="original_id")
        else:
            chosen = entries
            for (code, side), amount in _by_account_side(chosen).items():
                if amount > left.get((code, side), 0):
                    raise ReversalExceedsOriginal(
                        f"reversing {amount} on {code!r} side {side} exceeds the "
                        f"{left.get((code, side), 0)} left to reverse", field="postings")
        accounts = load_accounts(session, {e.account for e in chosen}, sql=sql)
        _check_accounts(chosen, accounts, allow_frozen=False)
        return _new_plan(chosen, accounts, status="posted", kind=kind,
                         reference=reference or original.reference, metadata=metadata,
                         now=now, reverses_id=original.id)

    return _execute(session, "reverse", request, idempotency, now, make_plan)


def expire_due(session: Session, *, now: datetime | None = None, limit: int = 1000,
               on_expired: Callable[[TransactionRecord], None] | None = None) -> int:
    """Void, as ``expiry``, pending transactions whose ``expires_at`` has passed.

    Candidates are claimed with SKIP LOCKED on PostgreSQL, so several workers can run
    this at once without voiding anything twice (``resolves_id`` is unique besides).
    ``on_expired`` is called with each void, in the same session, so that a caller can
    record what the expiry means to it in the same transaction. Returns how many it
    expired.
    """
    now = now or utcnow()
    resolution = _TXN.alias("resolution")
    unresolved = ~select(resolution.c.id).where(resolution.c.resolves_id == _TXN.c.id).exists()
    due = session.scalars(
        select(_TXN.c.id)
        .where(_TXN.c.status == "pending", _TXN.c.expires_at <= now, unresolved)
        .order_by(_TXN.c.expires_at, _TXN.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if due:
        # Each void locks its own guarded rows; voiding many holds in one transaction
        # would take those locks out of account order and could deadlock with ordinary
        # bookings. So lock every guarded row the batch will touch first, in order.
        guarded = session.scalars(
            select(Account.id).distinct()
            .join(_POSTING, _POSTING.c.account_id == Account.id)
            .where(_POSTING.c.transaction_id.in_(due), Account.no_overdraft)
        ).all()
        if guarded:
            Sql(session).lock_balances(sorted(guarded))
    count = 0
    for pending_id in due:
        try:
            txn = void(session, pending_id, kind="expiry", now=now)
        except NotPending:
            continue
        count += 1
        if on_expired is not None:
            on_expired(txn)
    return count


# --- reading ---------------------------------------------------------------------------------

def get_transaction(session: Session, transaction_id: uuid.UUID) -> TransactionRecord:
    row = session.execute(select(_TXN).where(_TXN.c.id == transaction_id)).first()
    if row is None:
        raise TransactionNotFound(f"no transaction {transaction_id}", field="transaction_id")
    lines = session.execute(
        select(Account.code, _POSTING.c.side, _POSTING.c.amount, _POSTING.c.unit)
        .join(Account, Account.id == _POSTING.c.account_id)
        .where(_POSTING.c.transaction_id == transaction_id)
        .order_by(_POSTING.c.line)
    ).all()
    return TransactionRecord(
        id=row.id, kind=row.kind, status=row.status, reference=row.reference,
        metadata=row.meta, created_at=row.created_at, expires_at=row.expires_at,
        resolves_id=row.resolves_id, reverses_id=row.reverses_id,
        postings=tuple(PostingRecord(*line) for line in lines),
    )


def resolution_of(session: Session, pending_id: uuid.UUID) -> TransactionRecord | None:
    """The transaction that posted or voided ``pending_id``, or None while it is pending."""
    found = session.scalar(select(_TXN.c.id).where(_TXN.c.resolves_id == pending_id))
    return get_transaction(session, found) if found is not None else None


# --- helpers -----------------------------------------------------------------------------------

def _check_kind(kind) -> None:
    if not isinstance(kind, str) or not 1 <= len(kind) <= 40:
        raise InvalidPosting("kind must be 1-40 characters", field="kind")


def _check_reference(reference) -> None:
    if reference is not None and (not isinstance(reference, str) or not 1 <= len(reference) <= 200):
        raise InvalidPosting("reference must be 1-200 characters", field="reference")


MAX_METADATA_BYTES = 4096


def _check_metadata(metadata) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise InvalidMetadata("metadata must be a JSON object", field="metadata")
    try:
        size = len(json.dumps(metadata, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidMetadata(f"metadata must be plain JSON: {exc}", field="metadata") from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(f"metadata is {size} bytes, at most {MAX_METADATA_BYTES}",
                              field="metadata")


def _check_time(value, field: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidPosting(f"{field} must be a timezone-aware datetime", field=field)
    return value


def _as_id(value, field: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise InvalidPosting(f"{field} is not a transaction id", field=field) from exc


def _lock_transaction(session: Session, transaction_id):
    row = session.execute(
        select(_TXN).where(_TXN.c.id == transaction_id).with_for_update()
    ).first()
    if row is None:
        raise TransactionNotFound(f"no transaction {transaction_id}", field="transaction_id")
    return row


@dataclass(frozen=True, slots=True)
class _Line:
    account_id: int
    account: str
    side: str
    amount: int


def _lock_pending(session: Session, pending_id, now, *, capturing: bool):
    """Lock a pending transaction's row and return it with its lines, or refuse."""
    pending = _lock_transaction(session, pending_id)
    if pending.status != "pending":
        raise NotPending(f"transaction {pending_id} is {pending.status}, not pending",
                         field="pending_id")
    resolution = session.execute(
        select(_TXN.c.id, _TXN.c.status).where(_TXN.c.resolves_id == pending_id)
    ).first()
    if resolution is not None:
        raise NotPending(f"transaction {pending_id} was already {resolution.status}",
                         field="pending_id", resolved_by=str(resolution.id))
    if capturing and pending.expires_at is not None and pending.expires_at <= now:
        raise PendingExpired(f"transaction {pending_id} expired at {pending.expires_at}",
                             field="pending_id")
    lines = [
        _Line(*row) for row in session.execute(
            select(_POSTING.c.account_id, Account.code, _POSTING.c.side, _POSTING.c.amount)
            .join(Account, Account.id == _POSTING.c.account_id)
            .where(_POSTING.c.transaction_id == pending_id)
            .order_by(_POSTING.c.line)
        )
    ]
    return pending, lines


def _by_account_side(entries) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for e in entries:
        out[(e.account, e.side)] += e.amount
    return dict(out)


def _left_to_reverse(session: Session, original_id) -> dict[tuple[str, str], int]:
    """Per (account, reversing side): what the original moved minus what was reversed."""
    flip = {"D": "C", "C": "D"}
    left: dict[tuple[str, str], int] = defaultdict(int)
    rows = session.execute(
        select(Account.code, _POSTING.c.side, _POSTING.c.amount, _POSTING.c.transaction_id)
        .join(Account, Account.id == _POSTING.c.account_id)
        .join(_TXN, _TXN.c.id == _POSTING.c.transaction_id)
        .where((_TXN.c.id == original_id) | (_TXN.c.reverses_id == original_id))
    ).all()
    for code, side, amount, txn_id in rows:
        if txn_id == original_id:
            left[(code, flip[side])] += amount
        else:
            left[(code, side)] -= amount
    return dict(left)
