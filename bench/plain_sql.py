"""The baseline of bench/ledger_post.py: a redemption booked in plain SQL with psycopg.

No SQLAlchemy and no ledger code. The same statements as ``ledger.post`` against the same
tables, so the same rows, row locks, CHECK constraints, foreign keys and deferred
triggers: select the accounts by code; lock the guarded balance rows FOR UPDATE in
account-id order and check the guard; insert the idempotency record ON CONFLICT DO
NOTHING RETURNING (with a SHA-256 fingerprint of the request); insert the transaction;
insert its postings in one multi-row INSERT; add to the running totals with executemany,
one row per account in account-id order, a random shard for a sharded account; commit.
Deadlocks and serialisation failures are retried, as ``ledger.unit_of_work.run`` does.

``plain_batch`` books the same rows for many redemptions in one transaction, set-wise,
with the statements ``ledger.post_many`` uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg

SCOPE = "bench"
SELECT_ACCOUNTS = ("SELECT id, code, unit, no_overdraft, frozen, closed, shards "
                   "FROM ledger_accounts WHERE code IN (%s::VARCHAR, %s::VARCHAR)")
SELECT_ACCOUNTS_ANY = ("SELECT id, code, unit, no_overdraft, frozen, closed, shards "
                       "FROM ledger_accounts WHERE code = ANY(%s::VARCHAR[])")
LOCK_GUARDED = ("SELECT account_id, debits_posted, credits_posted, debits_pending "
                "FROM ledger_balances WHERE account_id IN (%s::BIGINT) "
                "ORDER BY account_id FOR UPDATE")
LOCK_GUARDED_ANY = ("SELECT account_id, debits_posted, credits_posted, debits_pending "
                    "FROM ledger_balances WHERE account_id = ANY(%s::BIGINT[]) "
                    "ORDER BY account_id FOR UPDATE")
INSERT_IDEMPOTENCY = (
    "INSERT INTO ledger_idempotency (scope, key, fingerprint, transaction_id, created_at) "
    "VALUES (%s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::UUID, %s::TIMESTAMPTZ) "
    "ON CONFLICT (scope, key) DO NOTHING RETURNING scope")
INSERT_TRANSACTION = (
    "INSERT INTO ledger_transactions (id, kind, status, reference, meta, created_at, "
    "expires_at, resolves_id, reverses_id) VALUES (%s::UUID, %s::VARCHAR, %s::VARCHAR, "
    "%s::VARCHAR, %s::JSON, %s::TIMESTAMPTZ, %s::TIMESTAMPTZ, %s::UUID, %s::UUID)")
_POSTING_VALUES = "(%s::UUID, %s::SMALLINT, %s::BIGINT, %s::VARCHAR, %s::BIGINT, %s::VARCHAR)"
INSERT_POSTING = ("INSERT INTO ledger_postings (transaction_id, line, account_id, side, "
                  "amount, unit) VALUES " + _POSTING_VALUES)
INSERT_TWO_POSTINGS = INSERT_POSTING + ", " + _POSTING_VALUES
ADD_TO_TOTALS = (
    "UPDATE ledger_balances SET debits_posted = debits_posted + %s::BIGINT, "
    "credits_posted = credits_posted + %s::BIGINT, debits_pending = debits_pending + %s::BIGINT, "
    "credits_pending = credits_pending + %s::BIGINT "
    "WHERE account_id = %s::BIGINT AND shard = %s::SMALLINT")


@dataclass(frozen=True, slots=True)
class Acc:
    id: int
    code: str
    unit: str
    no_overdraft: bool
    frozen: bool
    closed: bool
    shards: int


def uuid7() -> uuid.UUID:
    """Time-ordered ids like the ledger's, so both sides grow the same B-trees alike."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64
    return uuid.UUID(int=value | 0b10 << 62 | rand & ((1 << 62) - 1))


def fingerprint(member: str, system: str, amount: int) -> str:
    body = json.dumps({"operation": "posted", "postings": [[member, "D", amount],
                       [system, "C", amount]], "kind": "redemption", "status": "posted",
                       "reference": None, "metadata": None, "expires_at": None},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _accounts(rows) -> dict[str, Acc]:
    accounts = {row[1]: Acc(*row) for row in rows}
    for a in accounts.values():
        if a.closed or a.frozen:
            raise RuntimeError(f"account {a.code} is closed or frozen")
    return accounts


def _check_guards(rows, deltas) -> None:
    for account_id, dp, cp, dpend in rows:
        d = deltas[account_id]
        if (cp + d[1]) - (dp + d[0]) - (dpend + d[2]) < 0:
            raise RuntimeError(f"account {account_id} would be overdrawn")


def _rows(m: Acc, r: Acc, amount: int, key: str):
    """The rows of one redemption: idempotency record, transaction, postings, totals."""
    txn_id, now = uuid7(), datetime.now(timezone.utc)
    idem = (SCOPE, key, fingerprint(m.code, r.code, amount), txn_id, now)
    txn = (txn_id, "redemption", "posted", None, None, now, None, None, None)
    postings = [(txn_id, 0, m.id, "D", amount, m.unit), (txn_id, 1, r.id, "C", amount, r.unit)]
    totals = []
    for acc, (dp, cp) in sorted([(m, (amount, 0)), (r, (0, amount))], key=lambda x: x[0].id):
        shard = random.randrange(acc.shards) if acc.shards > 1 else 0
        totals.append((dp, cp, 0, 0, acc.id, shard))
    return idem, txn, postings, totals


def _post(cur, member: str, system: str, amount: int, key: str) -> None:
    cur.execute(SELECT_ACCOUNTS, (member, system))
    accounts = _accounts(cur.fetchall())
    m, r = accounts[member], accounts[system]
    if m.unit != r.unit:
        raise RuntimeError("units differ")
    guarded = sorted(a.id for a in (m, r) if a.no_overdraft)
    cur.execute(LOCK_GUARDED, guarded)
    _check_guards(cur.fetchall(), {m.id: (amount, 0, 0), r.id: (0, amount, 0)})
    idem, txn, postings, totals = _rows(m, r, amount, key)
    cur.execute(INSERT_IDEMPOTENCY, idem)
    if cur.fetchone() is None:
        raise RuntimeError(f"idempotency key {key} already used")
    cur.execute(INSERT_TRANSACTION, txn)
    cur.execute(INSERT_TWO_POSTINGS, postings[0] + postings[1])
    cur.executemany(ADD_TO_TOTALS, totals)


def _in_transaction(conn, body) -> None:
    """Run body(cursor) and commit, retrying deadlocks and serialisation failures."""
    for attempt in range(10):
        try:
            with conn.cursor() as cur:
                body(cur)
            conn.commit()
            return
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            conn.rollback()
            time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))
    raise RuntimeError("gave up after 10 attempts")


def plain_single(conn, member: str, system: str, amount: int, key: str) -> int:
    """One redemption in its own transaction; returns 1 (postings booked)."""
    _in_transaction(conn, lambda cur: _post(cur, member, system, amount, key))
    return 1


def plain_batch_statements(conn, members, system, amounts, keys) -> int:
    """Reference: the per-redemption statements, once per member, in one transaction."""
    def body(cur):
        for member, amount, key in zip(members, amounts, keys):
            _post(cur, member, system, amount, key)

    _in_transaction(conn, body)
    return len(members)


# Set-wise inserts, as ledger.sql does on PostgreSQL: one array per column.
INSERT_IDEMPOTENCY_UNNEST = (
    "INSERT INTO ledger_idempotency (scope, key, fingerprint, transaction_id, created_at) "
    "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::uuid[], "
    "%s::timestamptz[]) ON CONFLICT (scope, key) DO NOTHING RETURNING scope")
INSERT_TRANSACTIONS_UNNEST = (
    "INSERT INTO ledger_transactions (id, kind, status, reference, meta, created_at, "
    "expires_at, resolves_id, reverses_id) SELECT * FROM unnest(%s::uuid[], %s::varchar[], "
    "%s::varchar[], %s::varchar[], %s::json[], %s::timestamptz[], %s::timestamptz[], "
    "%s::uuid[], %s::uuid[])")
INSERT_POSTINGS_UNNEST = (
    "INSERT INTO ledger_postings (transaction_id, line, account_id, side, amount, unit) "
    "SELECT * FROM unnest(%s::uuid[], %s::smallint[], %s::bigint[], %s::varchar[], "
    "%s::bigint[], %s::varchar[])")


def plain_batch(conn, members, system, amounts, keys) -> int:
    """The same rows as many redemptions, set-wise, with the statements post_many uses:
    look up the keys, one SELECT of the accounts, one ordered lock of the guarded rows,
    one INSERT ... SELECT FROM unnest(arrays) per table, and the totals summed per account
    shard."""
    def body(cur):
        cur.execute("SELECT scope, key FROM ledger_idempotency WHERE scope = %s "
                    "AND key = ANY(%s::VARCHAR[])", (SCOPE, list(keys)))
        if cur.fetchall():
            raise RuntimeError("an idempotency key was already used")
        cur.execute(SELECT_ACCOUNTS_ANY, ([*members, system],))
        accounts = _accounts(cur.fetchall())
        r = accounts[system]
        deltas: dict[int, list[int]] = {}
        for member, amount in zip(members, amounts):
            deltas.setdefault(accounts[member].id, [0, 0, 0])[0] += amount
        guarded = sorted(accounts[m].id for m in set(members) if accounts[m].no_overdraft)
        cur.execute(LOCK_GUARDED_ANY, (guarded,))
        _check_guards(cur.fetchall(), deltas)
        idem, txns, postings = [], [], []
        totals: dict[tuple[int, int], list[int]] = {}
        shard_of = {}
        for member, amount, key in zip(members, amounts, keys):
            rows = _rows(accounts[member], r, amount, key)
            idem.append(rows[0])
            txns.append(rows[1])
            postings += rows[2]
            for dp, cp, _, _, account_id, shard in rows[3]:
                shard = shard_of.setdefault(account_id, shard)
                t = totals.setdefault((account_id, shard), [0, 0])
                t[0] += dp
                t[1] += cp
        cur.execute(INSERT_IDEMPOTENCY_UNNEST, [list(c) for c in zip(*idem)])
        if len(cur.fetchall()) != len(idem):
            raise RuntimeError("an idempotency key was already used")
        cur.execute(INSERT_TRANSACTIONS_UNNEST, [list(c) for c in zip(*txns)])
        cur.execute(INSERT_POSTINGS_UNNEST, [list(c) for c in zip(*postings)])
        cur.executemany(ADD_TO_TOTALS, [(dp, cp, 0, 0, a, s)
                                        for (a, s), (dp, cp) in sorted(totals.items())])

    _in_transaction(conn, body)
    return len(members)
