"""Balances now and as of a past instant."""

from __future__ import annotations

from datetime import timedelta

from ledger import balance, capture, credit, debit, hold, open_account, post, void
from ledger.types import utcnow
from tests.factories import code


def test_balance_as_of_replays_history(session):
    member, issuer = code("member"), code("issuer")
    open_account(session, member, "BANKA", no_overdraft=True)
    open_account(session, issuer, "BANKA")
    t0 = utcnow() - timedelta(days=10)
    at = [t0 + timedelta(days=i) for i in range(8)]

    post(session, [debit(issuer, 1_000), credit(member, 1_000)], kind="issue", now=at[1])
    h = hold(session, [debit(member, 300), credit(issuer, 300)], kind="redemption", now=at[2])
    capture(session, h.id, [debit(member, 200), credit(issuer, 200)], now=at[3])
    h2 = hold(session, [debit(member, 50), credit(issuer, 50)], kind="redemption", now=at[4])
    void(session, h2.id, now=at[5])

    def seen(i):
        b = balance(session, member, as_of=at[i])
        return b.posted, b.debits_pending, b.available

    assert seen(0) == (0, 0, 0)
    assert seen(1) == (1_000, 0, 1_000)
    assert seen(2) == (1_000, 300, 700)
    assert seen(3) == (800, 0, 800)
    assert seen(4) == (800, 50, 750)
    assert seen(5) == (800, 0, 800)
    now = balance(session, member)
    assert (now.posted, now.debits_pending, now.available) == seen(7)
    assert balance(session, issuer, as_of=at[3]).posted == -800


def test_pending_credit_is_not_available(session):
    member, issuer = code("member"), code("issuer")
    open_account(session, member, "BANKA", no_overdraft=True)
    open_account(session, issuer, "BANKA")
    hold(session, [debit(issuer, 70), credit(member, 70)], kind="issue")
    b = balance(session, member)
    assert (b.posted, b.pending, b.available) == (0, 70, 0)
