"""Two-phase: a hold reserves, then posts (in full or for less), voids or expires, once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger import (
    balance,
    capture,
    credit,
    debit,
    expire_due,
    freeze_account,
    hold,
    open_account,
    resolution_of,
    void,
)
from ledger.errors import (
    AccountFrozen,
    CaptureExceedsPending,
    HoldNotExpired,
    InsufficientFunds,
    NotPending,
    PendingExpired,
    TransactionNotFound,
    Unbalanced,
)
from ledger.types import new_id, utcnow
from tests.factories import code, funded_member


@pytest.fixture
def pos(session):
    """A member with 1,000 points and a merchant's redemption account."""
    member, issuer = funded_member(session, 1_000)
    till = code("program:BANKA:redeemed")
    open_account(session, till, "BANKA")
    return member, till


def test_hold_reserves_without_posting(session, pos):
    member, till = pos
    h = hold(session, [debit(member, 300), credit(till, 300)], kind="redemption")
    b = balance(session, member)
    assert h.status == "pending"
    assert (b.posted, b.debits_pending, b.available) == (1_000, 300, 700)
    assert balance(session, till).posted == 0
    assert balance(session, till).credits_pending == 300
    assert resolution_of(session, h.id) is None


def test_holds_count_against_the_guard(session, pos):
    member, till = pos
    hold(session, [debit(member, 800), credit(till, 800)], kind="redemption")
    with pytest.raises(InsufficientFunds):
        hold(session, [debit(member, 201), credit(till, 201)], kind="redemption")


def test_capture_in_full(session, pos):
    member, till = pos
    h = hold(session, [debit(member, 300), credit(till, 300)], kind="redemption")
    c = capture(session, h.id)
    assert (c.status, c.kind, c.resolves_id) == ("posted", "redemption", h.id)
    b = balance(session, member)
    assert (b.posted, b.debits_pending, b.available) == (700, 0, 700)
    assert balance(session, till).posted == 300
    assert balance(session, till).credits_pending == 0
    assert resolution_of(session, h.id).id == c.id


def test_capture_for_less_releases_the_rest(session, pos):
    member, till = pos
    h = hold(session, [debit(member, 300), credit(till, 300)], kind="redemption")
    capture(session, h.id, [debit(member, 120), credit(till, 120)])
    b = balance(session, member)
    assert (b.posted, b.debits_pending, b.available) == (880, 0, 880)


def test_capture_never_exceeds_the_hold(session, pos):
    member, till = pos
    h = hold(session, [debit(member, 300), credit(till, 300)], kind="redemption")
    with pytest.raises(CaptureExceedsPending):
        capture(session, h.id, [debit(member, 301), credit(till, 301)])
    with pytest.raises(Unbalanced):
        capture(session, h.id, [debit(member, 100), credit(till, 90)])
    # A side the hold did not reserve is "more than reserved" too.
    with pytest.raises(CaptureExceedsPending):
        capture(session, h.id, [credit(member, 10), debit(till, 10)])


def test_resolves_at_most_once(session, pos):
    member, till = pos
    h = hold(session, [debit(member, 300), credit(till, 300)], kind="redemption")
    capture(session, h.id)
    with pytest.raises(NotPending):
        capture(session, h.id)
    with pytest.raises(NotPending):
        void(session, h.id)
    assert balance(session, member).posted == 700


def test_void_releases_everything(session, pos):
    member, till = pos
    h = hold(session, [debit(member, 300), credit(till, 300)], kind="redemption")
    v = void(session, h.id)
    assert (v.status, v.postings, v.resolves_id) == ("voided", (), h.id)
    b = balance(session, member)
    assert (b.posted, b.debits_pending, b.available) == (1_000, 0, 1_000)
    with pytest.raises(NotPending):
        capture(session, h.id)


def test_only_pending_transactions_resolve(session, pos):
    member, till = pos
    h = hold(session, [debit(member, 1), credit(till, 1)], kind="redemption")
    c = capture(session, h.id)
    with pytest.raises(NotPending):
        void(session, c.id)
    with pytest.raises(TransactionNotFound):
        capture(session, new_id())


def test_expired_hold_cannot_be_captured_and_expires_by_job(session, pos):
    member, till = pos
    now = utcnow()
    h = hold(session, [debit(member, 300), credit(till, 300)], kind="redemption",
             expires_at=now + timedelta(minutes=15), now=now)
    later = now + timedelta(minutes=16)
    with pytest.raises(PendingExpired):
        capture(session, h.id, now=later)
    # Other tests' committed holds may be due as well: watch this one.
    expire_due(session, now=now)
    assert resolution_of(session, h.id) is None
    assert expire_due(session, now=later) >= 1
    r = resolution_of(session, h.id)
    assert (r.kind, r.status) == ("expiry", "voided")
    assert balance(session, member).available == 1_000
    expire_due(session, now=later)
    assert resolution_of(session, h.id).id == r.id


def test_void_by_expiry_kind_only_after_expiry(session, pos):
    member, till = pos
    now = utcnow()
    h = hold(session, [debit(member, 5), credit(till, 5)], kind="redemption",
             expires_at=now + timedelta(minutes=1), now=now)
    with pytest.raises(HoldNotExpired):
        void(session, h.id, kind="expiry", now=now)


def test_capture_onto_a_frozen_account_is_refused_but_void_is_not(session, pos):
    member, till = pos
    h = hold(session, [debit(member, 10), credit(till, 10)], kind="redemption")
    freeze_account(session, member)
    with pytest.raises(AccountFrozen):
        capture(session, h.id)
    void(session, h.id)
    assert balance(session, member).debits_pending == 0


def test_holds_on_a_sharded_account_release_the_shard_they_reserved(session):
    # Regression: a hold's release once went to another random shard than the hold,
    # driving that shard's pending total below zero.
    member, _ = funded_member(session, 10_000)
    hot = code("program:BANKA:redeemed")
    open_account(session, hot, "BANKA", shards=16)
    for i in range(30):
        h = hold(session, [debit(member, 10), credit(hot, 10)], kind="redemption")
        capture(session, h.id, [debit(member, 4), credit(hot, 4)]) if i % 2 else void(session, h.id)
    b = balance(session, hot)
    assert (b.posted, b.credits_pending) == (60, 0)
