"""The database enforces the rules a second time, whoever writes to it.

Each test writes rows directly, past the ledger's code, and expects the database to
refuse: named CHECK constraints on both databases, append-only triggers on both, and on
PostgreSQL the deferred trigger that a transaction balances per unit.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.exc import DatabaseError, IntegrityError

from ledger import credit, debit, post
from ledger.accounts import get_account
from ledger.models import AccountBalance, Posting, Transaction
from ledger.types import new_id, utcnow
from tests.factories import funded_member


def _refused(session, statement, constraint: str):
    nested = session.begin_nested()
    with pytest.raises(DatabaseError) as err:
        session.execute(statement)
        session.flush()
    nested.rollback()
    assert constraint in str(err.value)


def _txn(**values):
    row = dict(id=new_id(), kind="test", status="posted", created_at=utcnow())
    row.update(values)
    return insert(Transaction.__table__).values(**row)


@pytest.mark.parametrize("values, name", [
    (dict(status="done"), "ck_ledger_transactions_status_known"),
    (dict(status="voided"), "ck_ledger_transactions_voided_resolves_pending"),
    (dict(expires_at=utcnow()), "ck_ledger_transactions_expiry_only_pending"),
    (dict(kind=""), "ck_ledger_transactions_kind_length"),
])
def test_transaction_checks(session, values, name):
    _refused(session, _txn(**values), name)


def test_posting_checks(session):
    member, issuer = funded_member(session, 10)
    txn = post(session, [debit(issuer, 1), credit(member, 1)], kind="issue")
    account_id = get_account(session, member).id
    base = dict(transaction_id=txn.id, account_id=account_id, unit="BANKA")
    _refused(session, insert(Posting.__table__).values(line=7, side="D", amount=0, **base),
             "ck_ledger_postings_amount_positive")
    _refused(session, insert(Posting.__table__).values(line=8, side="X", amount=1, **base),
             "ck_ledger_postings_side_known")


def test_guard_check_in_the_database(session):
    member, _ = funded_member(session, 10)
    row = update(AccountBalance).where(
        AccountBalance.account_id == get_account(session, member).id
    ).values(debits_posted=AccountBalance.credits_posted + 1)
    _refused(session, row, "ck_ledger_balances_no_overdraft")


@pytest.mark.parametrize("table", [Transaction.__table__, Posting.__table__])
def test_booked_rows_cannot_be_updated_or_deleted(session, table):
    member, issuer = funded_member(session, 10)
    post(session, [debit(issuer, 1), credit(member, 1)], kind="issue")
    _refused(session, update(table).values(**(
        {"kind": "edited"} if table is Transaction.__table__ else {"amount": 99})),
        "append-only")
    _refused(session, delete(table), "append-only")


@pytest.mark.postgres
def test_postgres_refuses_an_unbalanced_transaction_at_commit(session):
    member, issuer = funded_member(session, 10)
    rows = [get_account(session, issuer).id, get_account(session, member).id]
    txn_id = new_id()
    nested = session.begin_nested()
    session.execute(_txn(id=txn_id))
    session.execute(insert(Posting.__table__), [
        dict(transaction_id=txn_id, line=0, account_id=rows[0], side="D", amount=5, unit="BANKA"),
        dict(transaction_id=txn_id, line=1, account_id=rows[1], side="C", amount=4, unit="BANKA"),
    ])
    with pytest.raises(IntegrityError, match="does not balance in BANKA"):
        # The trigger is deferred to COMMIT; this makes it fire now, inside the test's
        # rolled-back transaction.
        session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    nested.rollback()


@pytest.mark.postgres
def test_postgres_refuses_a_transaction_with_one_posting(session):
    member, _ = funded_member(session, 10)
    account_id = get_account(session, member).id
    txn_id = new_id()
    nested = session.begin_nested()
    session.execute(_txn(id=txn_id))
    session.execute(insert(Posting.__table__).values(
        transaction_id=txn_id, line=0, account_id=account_id, side="C", amount=5, unit="BANKA"))
    with pytest.raises(IntegrityError, match="needs at least 2"):
        session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    nested.rollback()
