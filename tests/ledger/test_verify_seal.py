"""verify proves the books whole; seals make any later edit of a booked row visible."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text, update

from ledger import capture, credit, debit, hold, open_account, post, reverse, void
from ledger.accounts import get_account
from ledger.models import AccountBalance
from ledger.seal import seal, verify_chain
from ledger.verify import verify
from tests.factories import code, funded_member

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def books(session):
    """A little of everything: issue, spend, hold+capture, hold+void, refund."""
    member, issuer = funded_member(session, 1_000)
    shop = code("shop")
    open_account(session, shop, "BANKA", shards=4)
    spend = post(session, [debit(member, 100), credit(shop, 100)], kind="redemption")
    h = hold(session, [debit(member, 50), credit(shop, 50)], kind="redemption")
    capture(session, h.id, [debit(member, 30), credit(shop, 30)])
    void(session, hold(session, [debit(member, 5), credit(shop, 5)], kind="redemption").id)
    reverse(session, spend.id, [credit(member, 40), debit(shop, 40)])
    return dict(member=member, issuer=issuer, shop=shop, spend=spend)


def _disable_append_only(session):
    """Step around the append-only triggers, as someone with raw database access could."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        session.execute(text("DROP TRIGGER ledger_postings_no_update"))


def _rules(report):
    return {p.rule for p in report.problems}


def test_untouched_books_verify(session, books):
    seal(session, KEY)
    report = verify(session, public_keys=[KEY.public_key()])
    assert report.ok, report.problems
    assert report.counts["unsealed"] == 0 and report.counts["transactions"] >= 6


def test_a_changed_posting_breaks_balance_and_totals(session, books):
    nested = session.begin_nested()
    _disable_append_only(session)
    session.execute(text(
        "UPDATE ledger_postings SET amount = amount + 1 WHERE transaction_id = :t AND line = 0"
    ), {"t": _db_id(session, books["spend"].id)})
    report = verify(session, check_signatures=False)
    assert {"balanced", "totals"} <= _rules(report)
    assert any(books["member"] in p.detail for p in report.problems if p.rule == "totals")
    nested.rollback()


def test_a_sealed_posting_changed_with_totals_fixed_up_is_still_caught(session, books):
    seal(session, KEY)
    nested = session.begin_nested()
    _disable_append_only(session)
    spend = _db_id(session, books["spend"].id)
    # Move 10 points of the spend from the shop to the member's benefit, on both legs,
    # and fix the running totals to match: only the seal can tell.
    session.execute(text("UPDATE ledger_postings SET amount = amount - 10 "
                         "WHERE transaction_id = :t"), {"t": spend})
    for name, column in (("member", "debits_posted"), ("shop", "credits_posted")):
        account_id = get_account(session, books[name]).id
        session.execute(text(
            f"UPDATE ledger_balances SET {column} = {column} - 10 "
            "WHERE account_id = :a AND shard = (SELECT min(shard) FROM ledger_balances b "
            f"WHERE b.account_id = :a AND b.{column} >= 10)"), {"a": account_id})
    report = verify(session, public_keys=[KEY.public_key()])
    assert _rules(report) == {"seal"}, report.problems
    assert "changed after sealing" in report.problems[0].detail
    nested.rollback()


def test_changed_running_totals_are_caught(session, books):
    account_id = get_account(session, books["member"]).id
    nested = session.begin_nested()
    session.execute(update(AccountBalance).where(AccountBalance.account_id == account_id)
                    .values(credits_posted=AccountBalance.credits_posted + 7))
    report = verify(session, check_signatures=False)
    assert _rules(report) == {"totals"}
    assert "credits posted" in report.problems[0].detail
    nested.rollback()


def test_signatures_are_checked_against_the_configured_key(session, books):
    seal(session, KEY)
    other = Ed25519PrivateKey.generate()
    problems = verify_chain(session, [other.public_key()])
    assert problems and all("unknown key" in p for p in problems)
    assert verify_chain(session, [KEY.public_key()]) == []


def test_sealing_is_incremental_and_chained(session, books):
    first = seal(session, KEY, block_size=3)
    assert len(first) >= 2 and all(b.tx_count <= 3 for b in first)
    assert seal(session, KEY) == []
    post(session, [debit(books["issuer"], 1), credit(books["member"], 1)], kind="issue")
    second = seal(session, KEY)
    assert [b.height for b in second] == [first[-1].height + 1]
    assert second[0].tx_count == 1
    assert verify_chain(session, [KEY.public_key()]) == []


def _db_id(session, txn_id):
    # SQLAlchemy's Uuid type stores 32 hex digits on SQLite; native uuid on PostgreSQL.
    return txn_id if session.get_bind().dialect.name == "postgresql" else txn_id.hex


def _book_raw(session, status, postings, **links):
    """Write a transaction past the ledger's code, as a buggy or hostile writer could."""
    from ledger.models import Posting, Transaction
    from ledger.types import new_id, utcnow

    txn_id = new_id()
    session.execute(Transaction.__table__.insert().values(
        id=txn_id, kind="raw", status=status, created_at=utcnow(), **links))
    session.execute(Posting.__table__.insert(), [
        dict(transaction_id=txn_id, line=i, account_id=get_account(session, code).id,
             side=side, amount=amount, unit="BANKA")
        for i, (code, side, amount) in enumerate(postings)])
    return txn_id


def test_a_capture_larger_than_its_hold_is_caught(session, books):
    h = hold(session, [debit(books["member"], 10), credit(books["shop"], 10)], kind="redemption")
    nested = session.begin_nested()
    _book_raw(session, "posted", [(books["member"], "D", 11), (books["shop"], "C", 11)],
              resolves_id=h.id)
    assert "capture" in _rules(verify(session, check_signatures=False))
    nested.rollback()


def test_reversals_beyond_the_original_are_caught(session, books):
    nested = session.begin_nested()
    _book_raw(session, "posted", [(books["member"], "C", 101), (books["shop"], "D", 101)],
              reverses_id=books["spend"].id)
    report = verify(session, check_signatures=False)
    assert "reversal" in _rules(report)
    assert any("the original moved 100" in p.detail for p in report.problems)
    nested.rollback()


def test_swapping_account_codes_after_sealing_is_caught(session, books):
    seal(session, KEY)
    nested = session.begin_nested()
    _disable_append_only(session)
    session.execute(text("UPDATE ledger_accounts SET code = 'tmp' WHERE code = :a"),
                    {"a": books["member"]})
    session.execute(text("UPDATE ledger_accounts SET code = :a WHERE code = :b"),
                    {"a": books["member"], "b": books["shop"]})
    session.execute(text("UPDATE ledger_accounts SET code = :b WHERE code = 'tmp'"),
                    {"b": books["shop"]})
    assert "seal" in _rules(verify(session, check_signatures=False))
    nested.rollback()


def test_a_missing_balance_row_is_caught(session, books):
    account_id = get_account(session, books["member"]).id
    nested = session.begin_nested()
    session.execute(text("DELETE FROM ledger_balances WHERE account_id = :a"), {"a": account_id})
    report = verify(session, check_signatures=False)
    assert {"totals", "shards"} <= _rules(report)
    nested.rollback()


def test_a_recorded_tip_catches_deleted_blocks(session, books):
    blocks = seal(session, KEY, block_size=2)
    tip = (blocks[-1].height, blocks[-1].hash)
    assert verify_chain(session, [KEY.public_key()], tip) == []
    nested = session.begin_nested()
    _disable_append_only(session)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("DROP TRIGGER ledger_block_entries_no_delete"))
        session.execute(text("DROP TRIGGER ledger_blocks_no_delete"))
    session.execute(text("DELETE FROM ledger_block_entries WHERE height = :h"), {"h": tip[0]})
    session.execute(text("DELETE FROM ledger_blocks WHERE height = :h"), {"h": tip[0]})
    assert verify_chain(session, [KEY.public_key()]) == []  # looks merely unsealed...
    assert "missing" in verify_chain(session, [KEY.public_key()], tip)[0]  # ...but not to this
    nested.rollback()
