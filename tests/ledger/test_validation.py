"""Bad input to the ledger is a LedgerError naming the field, never a database error."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from ledger import IdempotencyKey, capture, credit, debit, hold, post, reverse, void
from ledger.errors import InvalidMetadata, InvalidPosting, TransactionNotFound
from ledger.types import new_id, utcnow
from tests.factories import funded_member


@pytest.fixture
def accts(session):
    return funded_member(session, 100)


@pytest.mark.parametrize("metadata", [Decimal("1.5"), {"when": datetime.now()}, {"x": float("nan")},
                                      ["not", "an", "object"], {"big": "x" * 5000}])
def test_metadata_must_be_a_small_json_object(session, accts, metadata):
    member, issuer = accts
    with pytest.raises(InvalidMetadata) as err:
        post(session, [debit(issuer, 1), credit(member, 1)], kind="issue", metadata=metadata)
    assert err.value.field == "metadata"


def test_reference_and_kind_lengths(session, accts):
    member, issuer = accts
    with pytest.raises(InvalidPosting) as err:
        post(session, [debit(issuer, 1), credit(member, 1)], kind="issue", reference="r" * 201)
    assert err.value.field == "reference"
    h = hold(session, [debit(member, 1), credit(issuer, 1)], kind="redemption")
    with pytest.raises(InvalidPosting) as err:
        void(session, h.id, kind="k" * 41)
    assert err.value.field == "kind"


def test_naive_times_are_refused(session, accts):
    member, issuer = accts
    with pytest.raises(InvalidPosting) as err:
        post(session, [debit(issuer, 1), credit(member, 1)], kind="issue", now=datetime.now())
    assert err.value.field == "now"
    with pytest.raises(InvalidPosting) as err:
        hold(session, [debit(member, 1), credit(issuer, 1)], kind="redemption",
             expires_at=datetime.now() + timedelta(hours=1))
    assert err.value.field == "expires_at"


def test_transaction_ids_may_be_text_but_must_be_ids(session, accts):
    member, issuer = accts
    h = hold(session, [debit(member, 1), credit(issuer, 1)], kind="redemption")
    assert capture(session, str(h.id)).resolves_id == h.id
    with pytest.raises(InvalidPosting) as err:
        reverse(session, "not-an-id")
    assert err.value.field == "original_id"
    with pytest.raises(TransactionNotFound):
        void(session, new_id())


def test_retry_of_a_hold_after_its_expiry_returns_the_hold(session, accts):
    member, issuer = accts
    now = utcnow()
    request = dict(kind="redemption", expires_at=now + timedelta(minutes=5),
                   idempotency=IdempotencyKey("pos", "auth-exp"))
    first = hold(session, [debit(member, 1), credit(issuer, 1)], now=now, **request)
    again = hold(session, [debit(member, 1), credit(issuer, 1)],
                 now=now + timedelta(minutes=10), **request)
    assert again.id == first.id and again.replayed


def test_the_same_instant_in_another_timezone_is_the_same_request(session, accts):
    member, issuer = accts
    at = utcnow() + timedelta(minutes=5)
    key = IdempotencyKey("pos", "auth-tz")
    first = hold(session, [debit(member, 1), credit(issuer, 1)], kind="redemption",
                 expires_at=at, idempotency=key)
    again = hold(session, [debit(member, 1), credit(issuer, 1)], kind="redemption",
                 expires_at=at.astimezone(timezone(timedelta(hours=8))), idempotency=key)
    assert again.id == first.id
