"""Idempotency: a retry returns the stored outcome, refusals included."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ledger import IdempotencyKey, balance, capture, credit, debit, hold, post, reverse, void
from ledger.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InvalidIdempotencyKey,
    NotPending,
)
from ledger.models import IdempotencyRecord, Transaction
from tests.factories import funded_member


def _txn_count(session):
    return session.scalar(select(func.count()).select_from(Transaction))


def test_retry_returns_the_same_transaction_and_books_nothing(session):
    member, issuer = funded_member(session, 0)
    key = IdempotencyKey("bank-a", "issue-1")
    first = post(session, [debit(issuer, 50), credit(member, 50)], kind="issue", idempotency=key)
    count = _txn_count(session)
    again = post(session, [debit(issuer, 50), credit(member, 50)], kind="issue", idempotency=key)
    assert again.id == first.id and again.replayed and not first.replayed
    assert again.postings == first.postings
    assert _txn_count(session) == count
    assert balance(session, member).posted == 50


def test_same_key_different_request_is_a_conflict(session):
    member, issuer = funded_member(session, 0)
    key = IdempotencyKey("bank-a", "issue-2")
    post(session, [debit(issuer, 50), credit(member, 50)], kind="issue", idempotency=key)
    with pytest.raises(IdempotencyConflict):
        post(session, [debit(issuer, 51), credit(member, 51)], kind="issue", idempotency=key)
    with pytest.raises(IdempotencyConflict):
        post(session, [debit(issuer, 50), credit(member, 50)], kind="bonus", idempotency=key)


def test_keys_are_scoped_per_caller(session):
    member, issuer = funded_member(session, 0)
    a = post(session, [debit(issuer, 5), credit(member, 5)], kind="issue",
             idempotency=IdempotencyKey("bank-a", "k"))
    b = post(session, [debit(issuer, 5), credit(member, 5)], kind="issue",
             idempotency=IdempotencyKey("airline-b", "k"))
    assert a.id != b.id
    assert balance(session, member).posted == 10


def test_a_refusal_is_replayed_even_when_it_would_now_succeed(session):
    member, issuer = funded_member(session, 10)
    key = IdempotencyKey("shop", "spend-1")
    spend = [debit(member, 30), credit(issuer, 30)]
    with pytest.raises(InsufficientFunds):
        post(session, spend, kind="redemption", idempotency=key)
    post(session, [debit(issuer, 100), credit(member, 100)], kind="issue")
    count = _txn_count(session)
    with pytest.raises(InsufficientFunds) as err:
        post(session, spend, kind="redemption", idempotency=key)
    assert getattr(err.value, "replayed", False)
    assert err.value.details["available"] == 10
    assert _txn_count(session) == count
    assert balance(session, member).posted == 110
    stored = session.get(IdempotencyRecord, ("shop", "spend-1"))
    assert stored.error_code == "insufficient_funds" and stored.transaction_id is None


def test_a_success_is_replayed_even_when_it_would_now_be_refused(session):
    member, issuer = funded_member(session, 30)
    key = IdempotencyKey("shop", "spend-2")
    spend = [debit(member, 30), credit(issuer, 30)]
    first = post(session, spend, kind="redemption", idempotency=key)
    assert post(session, spend, kind="redemption", idempotency=key).id == first.id


def test_two_phase_and_reversal_operations_are_idempotent(session):
    member, issuer = funded_member(session, 100)
    h = hold(session, [debit(member, 40), credit(issuer, 40)], kind="redemption",
             idempotency=IdempotencyKey("pos", "auth-1"))
    assert hold(session, [debit(member, 40), credit(issuer, 40)], kind="redemption",
                idempotency=IdempotencyKey("pos", "auth-1")).id == h.id
    c = capture(session, h.id, idempotency=IdempotencyKey("pos", "cap-1"))
    assert capture(session, h.id, idempotency=IdempotencyKey("pos", "cap-1")).id == c.id
    with pytest.raises(NotPending):  # a new key is a new request
        void(session, h.id, idempotency=IdempotencyKey("pos", "void-1"))
    with pytest.raises(NotPending):  # and its refusal is replayed
        void(session, h.id, idempotency=IdempotencyKey("pos", "void-1"))
    r = reverse(session, c.id, idempotency=IdempotencyKey("pos", "refund-1"))
    assert reverse(session, c.id, idempotency=IdempotencyKey("pos", "refund-1")).id == r.id
    assert balance(session, member).posted == 100


def test_malformed_key_is_refused():
    with pytest.raises(InvalidIdempotencyKey):
        IdempotencyKey("bank-a", "")
    with pytest.raises(InvalidIdempotencyKey):
        IdempotencyKey("bank-a", "x" * 201)
