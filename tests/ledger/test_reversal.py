"""Reversals: a new transaction linked to the original, never more than is left."""

from __future__ import annotations

import pytest

from ledger import balance, capture, credit, debit, hold, reverse
from ledger.errors import NotReversible, ReversalExceedsOriginal, Unbalanced
from tests.factories import megamart_purchase


@pytest.fixture
def purchase(session):
    """DESIGN.md's "M spends 2,000 at MegaMart" with its money legs."""
    return megamart_purchase(session)


def test_full_reversal_restores_every_account(session, purchase):
    txn, acc = purchase
    r = reverse(session, txn.id, reference="refund-1")
    assert (r.reverses_id, r.kind, r.status) == (txn.id, "reversal", "posted")
    assert {(p.account, p.side, p.amount) for p in r.postings} == {
        (acc["member"], "C", 2_000), (acc["redeemed"], "D", 2_000),
        (acc["bank"], "C", 2_000), (acc["shop"], "D", 1_960), (acc["fees"], "D", 40)}
    assert balance(session, acc["member"]).posted == 5_000
    for name in ("redeemed", "bank", "shop", "fees"):
        assert balance(session, acc[name]).posted == 0


def test_partial_reversals_add_up_to_at_most_the_original(session, purchase):
    txn, acc = purchase
    half = [credit(acc["member"], 1_000), debit(acc["redeemed"], 1_000),
            credit(acc["bank"], 1_000), debit(acc["shop"], 980), debit(acc["fees"], 20)]
    reverse(session, txn.id, half)
    reverse(session, txn.id, half)
    with pytest.raises(ReversalExceedsOriginal):
        reverse(session, txn.id, [credit(acc["member"], 1), debit(acc["redeemed"], 1)])
    with pytest.raises(ReversalExceedsOriginal):
        reverse(session, txn.id)
    assert balance(session, acc["member"]).posted == 5_000


def test_full_reversal_after_a_partial_one_reverses_what_is_left(session, purchase):
    txn, acc = purchase
    reverse(session, txn.id, [credit(acc["member"], 500), debit(acc["redeemed"], 500)])
    rest = reverse(session, txn.id)
    amounts = {p.account: p.amount for p in rest.postings}
    assert amounts[acc["member"]] == 1_500 and amounts[acc["shop"]] == 1_960


def test_partial_reversal_must_mirror_the_original(session, purchase):
    txn, acc = purchase
    with pytest.raises(ReversalExceedsOriginal):  # same side as the original: not a reversal
        reverse(session, txn.id, [debit(acc["member"], 10), credit(acc["redeemed"], 10)])
    with pytest.raises(Unbalanced):
        reverse(session, txn.id, [credit(acc["member"], 10), debit(acc["redeemed"], 9)])


def test_reversals_and_pending_transactions_are_not_reversible(session, purchase):
    txn, acc = purchase
    r = reverse(session, txn.id, [credit(acc["member"], 10), debit(acc["redeemed"], 10)])
    with pytest.raises(NotReversible):
        reverse(session, r.id)
    h = hold(session, [debit(acc["member"], 5), credit(acc["redeemed"], 5)], kind="redemption")
    with pytest.raises(NotReversible):
        reverse(session, h.id)
    # The capture of a hold is a posted transaction and can be refunded.
    c = capture(session, h.id)
    reverse(session, c.id)
