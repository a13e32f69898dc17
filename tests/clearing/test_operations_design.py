"""DESIGN.md's worked example, operation by operation, postings and all."""

from __future__ import annotations

from datetime import timedelta

from app.clearing import conversions, lots, operations, redemptions
from ledger import balance, get_transaction
from ledger.verify import verify

from .conftest import T0


def postings(session, operation):
    txn = get_transaction(session, operation.id)
    return sorted((p.account, p.side, p.amount) for p in txn.postings)


def posted(session, code):
    return balance(session, code).posted


PLATFORM = ("platform:fees:CNY", "platform:spread:CNY")  # shared with other tests' data


def test_the_worked_example(session, world):
    m = world.member_id
    platform_before = [posted(session, c) for c in PLATFORM]
    issued = operations.issue(session, "banka", "c-1", "BANKA", 5_000, now=T0)
    assert postings(session, issued) == [(f"member:{m}:BANKA", "C", 5_000),
                                         ("program:BANKA:issued", "D", 5_000)]

    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 2_000,
                               now=T0 + timedelta(hours=1))
    assert postings(session, spent) == sorted([
        (f"member:{m}:BANKA", "D", 2_000), ("program:BANKA:redeemed", "C", 2_000),
        ("partner:banka:position:CNY", "D", 2_000),
        ("partner:megamart:position:CNY", "C", 1_960), ("platform:fees:CNY", "C", 40)])
    assert (spent.gross, spent.fee, spent.counterparty_id) == (2_000, 40, "banka")
    assert spent.agreement_id == world.redemption_id and spent.terms_id is not None

    refunded = redemptions.refund(session, "megamart", spent.id, now=T0 + timedelta(hours=2))
    assert postings(session, refunded) == sorted(
        (a, "C" if s == "D" else "D", n) for a, s, n in postings(session, spent))
    assert get_transaction(session, refunded.id).reverses_id == spent.id

    converted = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES", 1_000,
                                    now=T0 + timedelta(hours=3))
    assert postings(session, converted) == sorted([
        (f"member:{m}:BANKA", "D", 1_000), ("program:BANKA:converted", "C", 1_000),
        ("program:SKYMILES:issued", "D", 400), (f"member:{m}:SKYMILES", "C", 400),
        ("partner:banka:position:CNY", "D", 1_000),
        ("partner:skyair:position:CNY", "C", 800), ("platform:spread:CNY", "C", 200)])
    assert (converted.target_points, converted.gross, converted.fee) == (400, 1_000, 200)

    assert posted(session, f"member:{m}:BANKA") == 4_000
    assert posted(session, f"member:{m}:SKYMILES") == 400
    positions = [posted(session, c) for c in (
        "partner:banka:position:CNY", "partner:megamart:position:CNY",
        "partner:skyair:position:CNY")]
    positions += [posted(session, c) - b for c, b in zip(PLATFORM, platform_before)]
    assert positions == [-1_000, 0, 800, 0, 200] and sum(positions) == 0
    assert lots.check_agrees(session, m, "BANKA", 4_000)
    assert lots.check_agrees(session, m, "SKYMILES", 400)
    assert verify(session).ok
