"""Booking many posted transactions in one database transaction, set-wise.

For imports and batch jobs (a partner moving its members' balances onto the platform,
a nightly accrual): the same rules as :func:`ledger.post`, checked for every booking,
but each table is read and written once for the whole batch instead of once per
booking, and the running totals of each account shard are updated once with the sum of
the batch's amounts.

All or nothing: if any booking is refused, the error names it (``field`` starts with
``bookings[i]``) and nothing of the batch is written. A booking whose idempotency key
was already used is not booked again: its stored transaction is returned in its place
(``replayed``), or its stored refusal refuses the batch.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from . import idempotency as idem
from .accounts import load_accounts
from .booking import (
    TransactionRecord,
    _check_accounts,
    _check_kind,
    _check_metadata,
    _check_reference,
    _check_time,
    _new_plan,
    _normalise,
    _record_from_plan,
    _replay,
    _request,
)
from .errors import ConcurrentChange, InsufficientFunds, InvalidPosting, LedgerError
from .idempotency import IdempotencyKey
from .sql import Sql
from .types import utcnow


@dataclass(frozen=True, slots=True)
class Booking:
    """One posted transaction of a batch: the arguments of :func:`ledger.post`."""

    entries: tuple
    kind: str
    idempotency: IdempotencyKey | None = None
    reference: str | None = None
    metadata: dict | None = None


def _prefixed(err: LedgerError, i: int) -> LedgerError:
    err.field = f"bookings[{i}]" + (f".{err.field}" if err.field else "")
    err.message = f"booking {i}: {err.message}"
    err.args = (err.message,)
    return err


def post_many(session: Session, bookings: list[Booking], *,
              now: datetime | None = None) -> list[TransactionRecord]:
    """Book every booking as a posted transaction, or none; see the module docstring."""
    now = _check_time(now or utcnow(), "now")
    items = []
    for i, b in enumerate(bookings):
        try:
            entries = _normalise(b.entries)
            _check_kind(b.kind)
            _check_reference(b.reference)
            _check_metadata(b.metadata)
        except LedgerError as err:
            raise _prefixed(err, i) from None
        fp = None
        if b.idempotency is not None:
            fp = idem.fingerprint("posted", _request(
                entries, kind=b.kind, status="posted", reference=b.reference,
                metadata=b.metadata, expires_at=None))
        items.append((i, b, entries, fp))
    keys = [(b.idempotency.scope, b.idempotency.key) for _, b, _, _ in items if b.idempotency]
    if len(set(keys)) != len(keys):
        raise InvalidPosting("an idempotency key appears twice in one batch", field="bookings")

    sql = Sql(session)
    results: dict[int, TransactionRecord] = {}
    by_scope: dict[str, list[str]] = defaultdict(list)
    for scope, key in keys:
        by_scope[scope].append(key)
    used = [(scope, key) for scope, ks in by_scope.items() for key in sql.used_keys(scope, ks)]
    earlier = {(r.scope, r.key): r for r in idem.lookup_many(session, used)} if used else {}
    todo = []
    for i, b, entries, fp in items:
        record = earlier.get((b.idempotency.scope, b.idempotency.key)) if b.idempotency else None
        if record is None:
            todo.append((i, b, entries, fp))
            continue
        try:
            results[i] = _replay(session, record, fp, b.idempotency)
        except LedgerError as err:
            raise _prefixed(err, i) from None

    accounts = load_accounts(session, {e.account for _, _, es, _ in todo for e in es}, sql=sql)
    plans = []
    for i, b, entries, fp in todo:
        try:
            _check_accounts(entries, accounts)
        except LedgerError as err:
            raise _prefixed(err, i) from None
        plans.append((i, b, fp, _new_plan(entries, accounts, status="posted", kind=b.kind,
                                          reference=b.reference, metadata=b.metadata, now=now)))
    by_id = {a.id: a for a in accounts.values()}
    _lock_and_check_in_order(sql, plans, by_id)

    claims = [dict(scope=b.idempotency.scope, key=b.idempotency.key, fingerprint=fp,
                   transaction_id=p.txn["id"], created_at=now)
              for _, b, fp, p in plans if b.idempotency is not None]
    if claims and sql.insert_idempotency_many(claims) != len(claims):
        # A concurrent request took one of these keys after we looked: run the batch
        # again, and it will replay that booking.
        raise ConcurrentChange("an idempotency key of the batch was used concurrently")
    if plans:
        _write_many(sql, [p for _, _, _, p in plans], by_id)
    for i, _, _, p in plans:
        results[i] = _record_from_plan(p)
    return [results[i] for i in range(len(bookings))]


def _lock_and_check_in_order(sql: Sql, plans, accounts_by_id) -> None:
    """Lock every guarded row of the batch at once, then apply bookings one by one."""
    guarded = sorted({a for _, _, _, p in plans for a in p.deltas if accounts_by_id[a].no_overdraft})
    if not guarded:
        return
    available, flags = {}, {}
    for account_id, dp, cp, dpend, frozen, closed in sql.lock_balances(guarded):
        available[account_id] = cp - dp - dpend
        flags[account_id] = frozen or closed
    for i, _, _, plan in plans:
        for account_id, d in plan.deltas.items():
            if account_id not in available:
                continue
            code = accounts_by_id[account_id].code
            if flags[account_id]:
                raise ConcurrentChange(f"account {code!r} was frozen or closed meanwhile")
            after = available[account_id] + d[1] - d[0] - d[2]
            if after < 0 and d[0] + d[2] > d[1]:
                raise _prefixed(InsufficientFunds(
                    f"account {code!r} has {available[account_id]} available, the booking "
                    f"needs {available[account_id] - after}", field="postings", account=code,
                    available=available[account_id], required=available[account_id] - after), i)
            available[account_id] = after


def _write_many(sql: Sql, plans, accounts_by_id) -> None:
    sql.insert_transactions([p.txn for p in plans])
    sql.insert_postings_many([row for p in plans for row in p.postings])
    # The batch's amounts summed per account; a sharded account takes its sum on one
    # random shard, so 1,000 redemptions update one row of the redemption account.
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for p in plans:
        for account_id, d in p.deltas.items():
            totals[account_id][0] += d[0]
            totals[account_id][1] += d[1]
    rows = []
    for account_id in sorted(totals):
        shards = accounts_by_id[account_id].shards
        shard = random.randrange(shards) if shards > 1 else 0
        rows.append((account_id, shard, *totals[account_id], 0, 0))
    if sql.add_to_totals(rows) != len(rows):
        raise ConcurrentChange("an account of the batch was frozen or closed meanwhile")
