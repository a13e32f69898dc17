"""post_many: the rules of post, for many bookings at once, all or nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from ledger import Booking, IdempotencyKey, balance, credit, debit, open_account, post, post_many
from ledger.errors import AccountFrozen, IdempotencyConflict, InsufficientFunds, Unbalanced
from ledger.models import Transaction
from ledger.verify import verify
from tests.factories import code, funded_member


def _count(session):
    return session.scalar(select(func.count()).select_from(Transaction))


@pytest.fixture
def shop(session):
    c = code("program:BANKA:redeemed")
    open_account(session, c, "BANKA", shards=8)
    return c


def test_books_every_booking_and_keeps_the_books_whole(session, shop):
    members = [funded_member(session, 100)[0] for _ in range(5)]
    bookings = [Booking([debit(m, 10 + i), credit(shop, 10 + i)], "redemption",
                        IdempotencyKey("batch", f"k{i}"), reference=f"r{i}",
                        metadata={"i": i}) for i, m in enumerate(members)]
    records = post_many(session, bookings)
    assert [r.reference for r in records] == [f"r{i}" for i in range(5)]
    assert balance(session, shop).posted == sum(10 + i for i in range(5))
    assert [balance(session, m).posted for m in members] == [100 - 10 - i for i in range(5)]
    assert verify(session, check_signatures=False).ok


def test_all_or_nothing_with_the_refused_booking_named(session, shop):
    member, _ = funded_member(session, 100)
    before = _count(session)
    with pytest.raises(InsufficientFunds) as err:
        post_many(session, [Booking([debit(member, 60), credit(shop, 60)], "redemption"),
                            Booking([debit(member, 50), credit(shop, 50)], "redemption")])
    assert err.value.field == "bookings[1].postings"
    assert _count(session) == before and balance(session, member).posted == 100
    with pytest.raises(Unbalanced) as err:
        post_many(session, [Booking([debit(member, 1), credit(shop, 2)], "redemption")])
    assert err.value.field == "bookings[0].postings"


def test_credits_earlier_in_the_batch_count_for_later_debits(session, shop):
    member, issuer = funded_member(session, 0)
    post_many(session, [Booking([debit(issuer, 30), credit(member, 30)], "issue"),
                        Booking([debit(member, 30), credit(shop, 30)], "redemption")])
    assert balance(session, member).posted == 0


def test_used_keys_are_replayed_not_booked_again(session, shop):
    member, _ = funded_member(session, 100)
    first = post(session, [debit(member, 5), credit(shop, 5)], kind="redemption",
                 idempotency=IdempotencyKey("batch", "again"))
    records = post_many(session, [
        Booking([debit(member, 5), credit(shop, 5)], "redemption", IdempotencyKey("batch", "again")),
        Booking([debit(member, 7), credit(shop, 7)], "redemption", IdempotencyKey("batch", "new")),
    ])
    assert records[0].id == first.id and records[0].replayed and not records[1].replayed
    assert balance(session, member).posted == 88
    with pytest.raises(IdempotencyConflict) as err:
        post_many(session, [Booking([debit(member, 6), credit(shop, 6)], "redemption",
                                    IdempotencyKey("batch", "again"))])
    assert err.value.field.startswith("bookings[0]")


def test_frozen_account_refuses_the_batch(session, shop):
    from ledger import freeze_account

    member, _ = funded_member(session, 100)
    freeze_account(session, shop)
    with pytest.raises(AccountFrozen):
        post_many(session, [Booking([debit(member, 1), credit(shop, 1)], "redemption")])


def test_large_batches_are_chunked(session, shop):
    member, _ = funded_member(session, 10_000)
    records = post_many(session, [Booking([debit(member, 1), credit(shop, 1)], "redemption",
                                          IdempotencyKey("big", str(i))) for i in range(1_200)])
    assert len({r.id for r in records}) == 1_200
    assert balance(session, member).posted == 8_800
    assert verify(session, check_signatures=False).ok


def test_a_batch_of_nothing_but_replays_books_nothing(session, shop):
    member, _ = funded_member(session, 100)
    bookings = [Booking([debit(member, 5), credit(shop, 5)], "redemption",
                        IdempotencyKey("batch", "only"))]
    first = post_many(session, bookings)
    assert post_many(session, bookings)[0].id == first[0].id
    assert post_many(session, []) == []
    assert balance(session, member).posted == 95
