"""Issue and clawback, the coalition's money legs, who may do what, and refusals that
leave nothing behind."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.clearing import (
    conversions,
    members,
    operations,
    partners,
    programs,
    redemptions,
)
from app.clearing.errors import (
    InsufficientPoints,
    InvalidOperation,
    MemberFrozen,
    MemberNotFound,
    NoAgreement,
    NotPermitted,
    OperationNotFound,
    PartnerSuspended,
    ProgramNotFound,
)
from app.clearing.models import Lot, LotMove, Operation
from ledger import balance, get_transaction
from ledger.errors import IdempotencyConflict, InvalidAmount, ReversalExceedsOriginal
from ledger.models import Account, Posting, Transaction
from ledger.unit_of_work import run

from .conftest import T0

T1 = T0 + timedelta(hours=1)
MONEY = ("partner:banka:position:CNY", "partner:megamart:position:CNY",
         "partner:skyair:position:CNY", "platform:fees:CNY", "platform:coalition:CNY")


def postings(session, operation):
    txn = get_transaction(session, operation.id)
    return sorted((p.account, p.side, p.amount) for p in txn.postings)


def mirrored(lines):
    return sorted((a, "C" if s == "D" else "D", n) for a, s, n in lines)


def money(session):
    """The CNY accounts' posted balances (other tests may share the platform's)."""
    return {code: balance(session, code).posted for code in MONEY}


def moved(before, after):
    return {code: after[code] - before[code] for code in MONEY if after[code] != before[code]}


# --- issue --------------------------------------------------------------------------------

def test_issue_books_points_only_and_opens_a_lot_expiring_with_the_program(session, world):
    m, before = world.member_id, money(session)
    op = operations.issue(session, "banka", "c-1", "BANKA", 5_000, reference="earn-1", now=T1)
    assert postings(session, op) == [(f"member:{m}:BANKA", "C", 5_000),
                                     ("program:BANKA:issued", "D", 5_000)]
    assert (op.kind, op.partner_id, op.member_id, op.program_code, op.points, op.reference,
            op.counterparty_id, op.currency, op.gross, op.created_at) == (
        "issue", "banka", m, "BANKA", 5_000, "earn-1", None, None, None, T1)
    lot = session.scalar(select(Lot).where(Lot.transaction_id == op.id))
    assert (lot.points, lot.earned_at, lot.expires_at) == (5_000, T1, T1.replace(year=2028))
    assert moved(before, money(session)) == {}


def test_coalition_points_are_bought_by_the_issuer_at_the_programs_value(session, world):
    m, before = world.member_id, money(session)
    op = operations.issue(session, "skyair", "sa-1", "COALITION", 1_234, now=T1)
    assert postings(session, op) == sorted([
        (f"member:{m}:COALITION", "C", 1_234), ("program:COALITION:issued", "D", 1_234),
        ("partner:skyair:position:CNY", "D", 1_234), ("platform:coalition:CNY", "C", 1_234)])
    assert (op.currency, op.gross) == ("CNY", 1_234)
    assert op.value_id == programs.value_at(session, "COALITION", T1).id
    assert session.scalar(select(Lot.expires_at).where(Lot.transaction_id == op.id)) == \
        T1.replace(year=2027)
    assert moved(before, money(session)) == {"partner:skyair:position:CNY": -1_234,
                                             "platform:coalition:CNY": 1_234}


def test_a_coalition_redemption_is_paid_by_the_platform_not_the_issuer(session, world):
    m = world.member_id
    operations.issue(session, "banka", "c-1", "COALITION", 1_000, now=T1)
    before = money(session)
    spent = redemptions.redeem(session, "megamart", "mm-1", "COALITION", 500, now=T1)
    assert postings(session, spent) == sorted([
        (f"member:{m}:COALITION", "D", 500), ("program:COALITION:redeemed", "C", 500),
        ("platform:coalition:CNY", "D", 500), ("partner:megamart:position:CNY", "C", 490),
        ("platform:fees:CNY", "C", 10)])
    assert (spent.counterparty_id, spent.gross, spent.fee) == (None, 500, 10)
    assert moved(before, money(session)) == {"platform:coalition:CNY": -500,
                                             "partner:megamart:position:CNY": 490,
                                             "platform:fees:CNY": 10}


@pytest.mark.parametrize("partner, ref, program", [
    ("skyair", "sa-1", "BANKA"),        # another issuer's program
    ("telco", "t-1", "SKYMILES"),
    ("megamart", "mm-1", "COALITION"),  # coalition points need the issuer role
])
def test_a_partner_issues_only_its_own_or_as_an_issuer_coalition_points(
        session, world, partner, ref, program):
    with pytest.raises(NotPermitted) as err:
        operations.issue(session, partner, ref, program, 100, now=T1)
    assert err.value.field == "program"
    assert session.scalar(select(func.count()).select_from(Operation)
                          .where(Operation.member_id == world.member_id)) == 0


def test_issue_with_a_key_books_once_and_a_different_request_under_it_conflicts(session, world):
    first = operations.issue(session, "banka", "c-1", "BANKA", 700, idempotency_key="k", now=T1)
    again = operations.issue(session, "banka", "c-1", "BANKA", 700, idempotency_key="k", now=T1)
    assert again.id == first.id
    assert balance(session, f"member:{world.member_id}:BANKA").posted == 700
    assert session.scalar(select(func.count()).select_from(Lot)
                          .where(Lot.member_id == world.member_id)) == 1
    # Keys are the partner's own: SkyAir's "k" is another request.
    other = operations.issue(session, "skyair", "sa-1", "SKYMILES", 5, idempotency_key="k",
                             now=T1)
    assert other.id != first.id
    with pytest.raises(IdempotencyConflict) as err:
        operations.issue(session, "banka", "c-1", "BANKA", 701, idempotency_key="k", now=T1)
    assert err.value.field == "idempotency_key"
    with pytest.raises(IdempotencyConflict):  # the key of an issue does not redeem
        redemptions.redeem(session, "banka", "c-1", "BANKA", 700, idempotency_key="k", now=T1)


# --- clawback -----------------------------------------------------------------------------

def test_clawback_mirrors_the_issue_in_parts_and_never_beyond_it(session, world):
    m = world.member_id
    issued = operations.issue(session, "banka", "c-1", "BANKA", 5_000, now=T1)
    part = operations.clawback(session, "banka", issued.id, 2_000, now=T1)
    assert postings(session, part) == [(f"member:{m}:BANKA", "D", 2_000),
                                       ("program:BANKA:issued", "C", 2_000)]
    assert get_transaction(session, part.id).reverses_id == issued.id
    assert (part.kind, part.related_id, part.points, part.member_id) == (
        "clawback", issued.id, 2_000, m)
    with pytest.raises(ReversalExceedsOriginal) as err:
        operations.clawback(session, "banka", issued.id, 3_001, now=T1)
    assert err.value.field == "points"
    rest = operations.clawback(session, "banka", issued.id, now=T1)
    assert rest.points == 3_000
    with pytest.raises(ReversalExceedsOriginal) as err:
        operations.clawback(session, "banka", issued.id, now=T1)
    assert err.value.field == "operation_id"
    assert balance(session, f"member:{m}:BANKA").posted == 0


def test_coalition_clawback_refunds_the_issuer_at_the_issues_value_cumulatively(session, world):
    programs.set_value(session, "COALITION", Decimal("0.015"), currency="CNY", effective_from=T0)
    issued = operations.issue(session, "banka", "c-1", "COALITION", 3, now=T1)
    assert issued.gross == 5                                       # 4.5 fen, half up
    programs.set_value(session, "COALITION", Decimal("0.02"), currency="CNY",
                       effective_from=T1 + timedelta(minutes=1))
    parts = [operations.clawback(session, "banka", issued.id, 1, now=T1 + timedelta(hours=h))
             for h in (1, 2, 3)]
    # 1.5 -> 2, 3.0 -> 3, 4.5 -> 5: parts 2 + 1 + 2 = the 5 paid, at the old 0.015.
    assert [p.gross for p in parts] == [2, 1, 2]
    assert [p.value_id for p in parts] == [issued.value_id] * 3
    assert ("partner:banka:position:CNY", "C", 1) in postings(session, parts[1])


def test_clawback_cannot_take_points_the_member_already_spent(session, world):
    issued = operations.issue(session, "banka", "c-1", "BANKA", 1_000, now=T1)
    redemptions.redeem(session, "megamart", "mm-1", "BANKA", 800, now=T1)
    with pytest.raises(InsufficientPoints) as err:
        operations.clawback(session, "banka", issued.id, now=T1)
    assert (err.value.field, err.value.details["available"]) == ("points", 200)
    assert operations.clawback(session, "banka", issued.id, 200, now=T1).points == 200


def test_only_the_issuing_partner_claws_back_an_issue(session, world):
    issued = operations.issue(session, "banka", "c-1", "BANKA", 1_000, now=T1)
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 100, now=T1)
    cases = [("skyair", issued.id, OperationNotFound),  # not its operation at all
             ("banka", "not-an-id", OperationNotFound),
             ("banka", spent.id, NotPermitted),         # banka is only its counterparty
             ("megamart", spent.id, InvalidOperation)]  # a redemption is refunded instead
    for partner, operation_id, error in cases:
        with pytest.raises(error) as err:
            operations.clawback(session, partner, operation_id, now=T1)
        assert err.value.field == "operation_id"
    partners.set_status(session, "banka", "suspended")
    with pytest.raises(PartnerSuspended):
        operations.clawback(session, "banka", issued.id, now=T1)


# --- refusals write nothing -----------------------------------------------------------------

def _counts(session):
    return [session.scalar(select(func.count()).select_from(t))
            for t in (Operation, LotMove, Lot, Transaction, Posting, Account)]


def _issue(points, partner="banka", ref="c-1", program="BANKA"):
    return lambda s: operations.issue(s, partner, ref, program, points, now=T1)


def _redeem(points, partner="megamart", ref="mm-1", program="BANKA"):
    return lambda s: redemptions.redeem(s, partner, ref, program, points, now=T1)


def _authorise(points):
    return lambda s: redemptions.authorise(s, "megamart", "mm-1", "BANKA", points, now=T1)


def _convert(points, partner="skyair", ref="sa-1", source="BANKA", target="SKYMILES"):
    return lambda s: conversions.convert(s, partner, ref, source, target, points, now=T1)


def _freeze(s, w):
    members.freeze(s, w.member_id)


def _suspend(partner):
    return lambda s, w: partners.set_status(s, partner, "suspended")


BAD_POINTS = [0, -5, 10**13, 1.5, "10", True]
REFUSALS = [
    *[(f"{make.__name__}-{p!r}", None, make(p), InvalidAmount, "points")
      for make in (_issue, _redeem, _authorise, _convert) for p in BAD_POINTS],
    ("insufficient", None, _redeem(5_001), InsufficientPoints, "points"),
    ("insufficient-convert-opening-target", None, _convert(5_001), InsufficientPoints, "points"),
    ("frozen-issue", _freeze, _issue(10), MemberFrozen, "member"),
    ("frozen-redeem", _freeze, _redeem(10), MemberFrozen, "member"),
    ("frozen-convert", _freeze, _convert(100), MemberFrozen, "member"),
    ("suspended-redeemer", _suspend("megamart"), _redeem(10), PartnerSuspended, "partner_id"),
    ("suspended-issuer", _suspend("banka"), _issue(10), PartnerSuspended, "partner_id"),
    ("unknown-program", None, _issue(10, program="NOPE"), ProgramNotFound, "program"),
    ("no-redemption-agreement", None, _redeem(10, "skyair", "sa-1"), NoAgreement, "program"),
    ("no-conversion-agreement", None, _convert(100, source="SKYMILES", target="BANKA"),
     NoAgreement, "target"),
    ("unlinked-customer", None, _issue(10, ref="c-404"), MemberNotFound, "customer_ref"),
    ("another-partners-program", None, _issue(10, "skyair", "sa-1"), NotPermitted, "program"),
    ("not-a-redeemer", None, _redeem(10, "banka", "c-1", "SKYMILES"), NotPermitted, "program"),
]


@pytest.mark.parametrize("setup, work, error, field", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_a_refused_operation_leaves_nothing_written(session, world, setup, work, error, field):
    operations.issue(session, "banka", "c-1", "BANKA", 5_000, now=T0)
    if setup:
        setup(session, world)
    session.commit()  # end the fixture's savepoint: run() rolls back only its own work
    before = _counts(session)
    with pytest.raises(error) as err:
        run(lambda: session, work)
    assert type(err.value) is error and err.value.field == field, err.value.message
    assert _counts(session) == before
    assert balance(session, f"member:{world.member_id}:BANKA").posted == 5_000
