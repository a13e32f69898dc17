"""Posting: the double-entry rules, checked before anything is written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ledger import balance, credit, debit, freeze_account, open_account, post, unfreeze_account
from ledger.accounts import close_account
from ledger.errors import (
    AccountClosed,
    AccountExists,
    AccountFrozen,
    AccountNotEmpty,
    AccountNotFound,
    InsufficientFunds,
    InvalidAccount,
    InvalidAmount,
    InvalidPosting,
    TooFewPostings,
    Unbalanced,
)
from ledger.models import Posting, Transaction
from ledger.units import MAX_AMOUNT
from tests.factories import code, funded_member, megamart_purchase


def _rows(session):
    return (session.scalar(select(func.count()).select_from(Transaction)),
            session.scalar(select(func.count()).select_from(Posting)))


def test_post_moves_points_and_keeps_totals(session):
    member, issuer = funded_member(session, 5_000)
    shop = code("program:BANKA:redeemed")
    open_account(session, shop, "BANKA")

    txn = post(session, [debit(member, 2_000), credit(shop, 2_000)], kind="redemption",
               reference="till-17", metadata={"store": "MegaMart"})

    assert txn.status == "posted" and txn.kind == "redemption"
    assert [(p.account, p.side, p.amount) for p in txn.postings] == [
        (member, "D", 2_000), (shop, "C", 2_000)]
    assert balance(session, member).available == 3_000
    assert balance(session, shop).posted == 2_000
    assert balance(session, issuer).posted == -5_000


def test_multi_unit_transaction_balances_per_unit(session):
    txn, accounts = megamart_purchase(session, balance=2_000)
    assert len(txn.postings) == 5
    assert balance(session, accounts["fees"]).posted == 40
    assert balance(session, accounts["member"]).posted == 0


@pytest.mark.parametrize("amount", [0, -1, 1.5, "10", True, None, MAX_AMOUNT + 1])
def test_amount_must_be_a_positive_integer(session, amount):
    member, issuer = funded_member(session, 100)
    before = _rows(session)
    with pytest.raises(InvalidAmount) as err:
        post(session, [debit(issuer, amount), credit(member, amount)], kind="issue")
    assert err.value.field == "postings[0].amount"
    assert _rows(session) == before


def test_unbalanced_is_refused_and_writes_nothing(session):
    member, issuer = funded_member(session, 100)
    before = _rows(session)
    with pytest.raises(Unbalanced):
        post(session, [debit(issuer, 10), credit(member, 9)], kind="issue")
    assert _rows(session) == before


def test_balance_is_per_unit_not_overall(session):
    a, b = code(), code()
    open_account(session, a, "BANKA")
    open_account(session, b, "CNY")
    with pytest.raises(Unbalanced):
        post(session, [debit(a, 10), credit(b, 10)], kind="x")


def test_one_posting_is_not_a_transaction(session):
    member, _ = funded_member(session, 0)
    with pytest.raises(TooFewPostings):
        post(session, [credit(member, 10)], kind="issue")


@pytest.mark.parametrize("entry", [("acct", "X", 1), ("", "D", 1), ("acct",)])
def test_malformed_posting(session, entry):
    with pytest.raises(InvalidPosting):
        post(session, [entry, ("other", "C", 1)], kind="x")


def test_unknown_account(session):
    member, _ = funded_member(session, 10)
    with pytest.raises(AccountNotFound) as err:
        post(session, [debit(member, 1), credit("nope:1", 1)], kind="x")
    assert err.value.details["missing"] == ["nope:1"]


def test_guarded_account_cannot_be_overdrawn(session):
    member, issuer = funded_member(session, 100)
    before = _rows(session)
    with pytest.raises(InsufficientFunds) as err:
        post(session, [debit(member, 101), credit(issuer, 101)], kind="clawback")
    assert err.value.details == {"account": member, "available": 100, "required": 101}
    assert _rows(session) == before
    assert balance(session, member).available == 100
    post(session, [debit(member, 100), credit(issuer, 100)], kind="clawback")
    assert balance(session, member).available == 0


def test_unguarded_account_may_go_negative(session):
    member, issuer = funded_member(session, 10)
    assert balance(session, issuer).posted == -10


def test_frozen_account_takes_no_postings_until_unfrozen(session):
    member, issuer = funded_member(session, 100)
    freeze_account(session, member)
    with pytest.raises(AccountFrozen):
        post(session, [debit(issuer, 1), credit(member, 1)], kind="issue")
    unfreeze_account(session, member)
    post(session, [debit(issuer, 1), credit(member, 1)], kind="issue")
    assert balance(session, member).posted == 101


def test_closed_account_only_when_empty_and_then_for_good(session):
    member, issuer = funded_member(session, 5)
    with pytest.raises(AccountNotEmpty):
        close_account(session, member)
    post(session, [debit(member, 5), credit(issuer, 5)], kind="clawback")
    close_account(session, member)
    with pytest.raises(AccountClosed):
        post(session, [debit(issuer, 1), credit(member, 1)], kind="issue")


def test_open_account_is_idempotent_but_refuses_a_different_spec(session):
    c = code()
    first = open_account(session, c, "BANKA", no_overdraft=True)
    assert open_account(session, c, "BANKA", no_overdraft=True) == first
    with pytest.raises(AccountExists):
        open_account(session, c, "CNY", no_overdraft=True)


def test_guarded_account_has_one_shard(session):
    with pytest.raises(InvalidAccount):
        open_account(session, code(), "BANKA", no_overdraft=True, shards=4)


def test_sharded_account_balance_is_the_sum_of_its_shards(session):
    member, _ = funded_member(session, 1_000)
    hot = code("program:BANKA:redeemed")
    open_account(session, hot, "BANKA", shards=8)
    for _ in range(40):
        post(session, [debit(member, 5), credit(hot, 5)], kind="redemption")
    assert balance(session, hot).posted == 200
    assert balance(session, member).available == 800
