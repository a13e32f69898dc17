"""Bulk import: every line or none, every bad line named, real earn dates, replays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.clearing import imports, lots, members, operations, redemptions
from app.clearing.errors import (
    ImportRejected,
    InsufficientPoints,
    InvalidOperation,
    NotPermitted,
)
from app.clearing.models import Lot, LotMove, Operation
from ledger import balance, get_transaction
from ledger.errors import IdempotencyConflict
from ledger.models import Transaction

from .conftest import T0

NOW = T0 + timedelta(days=30)
YEAR_AGO = NOW - timedelta(days=365)


@pytest.fixture
def m2(session, world):
    """A second BankA member, c-2; returns (c-1's member id, c-2's)."""
    return world.member_id, members.enrol(session, "banka", "c-2", now=T0).member_id


def line(ref, points, earned_at, **extra):
    return {"customer_ref": ref, "points": points, "earned_at": earned_at, **extra}


def counts(session):
    return [session.scalar(select(func.count()).select_from(table))
            for table in (Operation, Lot, Transaction)]


def test_an_import_books_one_operation_and_one_lot_per_line_with_its_earn_date(session, m2):
    c1, c2 = m2
    earned = [YEAR_AGO, NOW - timedelta(days=1), NOW]
    ops = imports.import_points(session, "banka", "BANKA", [
        line("c-1", 1_000, earned[0], reference="r-0"), line("c-2", 250, earned[1]),
        line("c-1", 5, earned[2])], now=NOW)
    assert [(o.kind, o.member_id, o.points, o.reference, o.created_at) for o in ops] == [
        ("import", c1, 1_000, "r-0", NOW), ("import", c2, 250, None, NOW),
        ("import", c1, 5, None, NOW)]
    for op, at in zip(ops, earned):
        lot = session.scalar(select(Lot).where(Lot.transaction_id == op.id))
        assert (lot.earned_at, lot.expires_at) == (at, at.replace(year=at.year + 2))
        txn = get_transaction(session, op.id)
        assert (txn.kind, txn.status) == ("import", "posted")
        assert sorted((p.account, p.side, p.amount) for p in txn.postings) == [
            (f"member:{op.member_id}:BANKA", "C", op.points),
            ("program:BANKA:issued", "D", op.points)]
    assert balance(session, f"member:{c1}:BANKA").posted == 1_005
    assert lots.check_agrees(session, c1, "BANKA", 1_005)


def test_one_bad_line_rejects_the_file_and_every_bad_line_is_reported(session, m2):
    members.freeze(session, m2[1])
    before = counts(session)
    with pytest.raises(ImportRejected) as err:
        imports.import_points(session, "banka", "BANKA", [
            line("c-1", 100, YEAR_AGO),                               # good
            line("c-1", 0, YEAR_AGO),                                 # 1
            line("c-404", 100, YEAR_AGO),                             # 2
            line("c-1", 100, NOW + timedelta(seconds=1)),             # 3
            line("c-1", 100, NOW - timedelta(days=800)),              # 4 expired already
            line("c-1", 100, NOW.replace(tzinfo=None)),               # 5
            "c-1,100",                                                # 6
            line("c-2", 100, YEAR_AGO),                               # 7 frozen
            line("c-1", "100", YEAR_AGO),                             # 8
            line("c-1", 100, YEAR_AGO, reference=""),                 # 9
            line("c-1", 100, YEAR_AGO),                               # good
        ], now=NOW)
    assert err.value.field == "lines"
    assert [(e["line"], e["code"], e["field"]) for e in err.value.details["errors"]] == [
        (1, "invalid_amount", "points"), (2, "member_not_found", "customer_ref"),
        (3, "invalid_operation", "earned_at"), (4, "invalid_operation", "earned_at"),
        (5, "invalid_operation", "earned_at"), (6, "invalid_operation", "lines"),
        (7, "member_frozen", "member"), (8, "invalid_amount", "points"),
        (9, "invalid_operation", "reference")]
    assert all(e["detail"] for e in err.value.details["errors"])
    assert counts(session) == before


@pytest.mark.parametrize("ref", [None, 42, ["c-1"], {"id": "c-1"}])
def test_a_customer_ref_that_is_not_a_string_is_a_bad_line_not_a_crash(session, m2, ref):
    with pytest.raises(ImportRejected) as err:
        imports.import_points(session, "banka", "BANKA", [line(ref, 1, YEAR_AGO)], now=NOW)
    assert [(e["line"], e["field"]) for e in err.value.details["errors"]] == [
        (0, "customer_ref")]


def test_points_expire_on_the_exact_instant_their_earn_date_gives(session, m2):
    c1, _ = m2
    just_expired = NOW.replace(year=NOW.year - 2)
    with pytest.raises(ImportRejected) as err:
        imports.import_points(session, "banka", "BANKA", [line("c-1", 1, just_expired)],
                              now=NOW)
    assert err.value.details["errors"][0]["field"] == "earned_at"
    (op,) = imports.import_points(session, "banka", "BANKA", [
        line("c-1", 300, just_expired + timedelta(microseconds=1))], now=NOW)
    lot = session.scalar(select(Lot).where(Lot.transaction_id == op.id))
    assert lot.expires_at == NOW + timedelta(microseconds=1)
    with pytest.raises(InsufficientPoints) as err:
        redemptions.redeem(session, "banka", "c-1", "BANKA", 1, now=lot.expires_at)
    assert err.value.details["available"] == 0
    assert redemptions.redeem(session, "banka", "c-1", "BANKA", 300, now=NOW).points == 300
    assert lots.check_agrees(session, c1, "BANKA", 0)


def test_imported_points_are_spent_before_younger_points_issued_earlier(session, m2):
    issued = operations.issue(session, "banka", "c-1", "BANKA", 100, now=NOW - timedelta(days=2))
    (imported,) = imports.import_points(session, "banka", "BANKA", [
        line("c-1", 100, YEAR_AGO)], now=NOW)
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 150, now=NOW)
    taken = dict(session.execute(select(Lot.transaction_id, LotMove.points)
                                 .join(LotMove, LotMove.lot_id == Lot.id)
                                 .where(LotMove.transaction_id == spent.id)).all())
    assert taken == {imported.id: -100, issued.id: -50}


def test_a_replay_returns_the_same_operations_and_a_different_file_conflicts(session, m2):
    file = [line("c-1", 100, YEAR_AGO), line("c-2", 200, YEAR_AGO)]
    first = imports.import_points(session, "banka", "BANKA", file, idempotency_key="f-1", now=NOW)
    before = counts(session)
    # The member has since spent the points: the replay still returns what was booked.
    redemptions.redeem(session, "banka", "c-1", "BANKA", 100, now=NOW)
    again = imports.import_points(session, "banka", "BANKA", file, idempotency_key="f-1",
                                  now=NOW + timedelta(hours=1))
    assert [o.id for o in again] == [o.id for o in first]
    assert counts(session)[1:] == [before[1], before[2] + 1]  # only the redemption
    for other in (file + [line("c-1", 1, YEAR_AGO)], file[:1],
                  [file[0], line("c-2", 201, YEAR_AGO)]):
        with pytest.raises(IdempotencyConflict) as err:
            imports.import_points(session, "banka", "BANKA", other, idempotency_key="f-1",
                                  now=NOW)
        assert err.value.field == "idempotency_key"


def test_coalition_imports_are_funded_and_only_issuers_import(session, m2):
    ops = imports.import_points(session, "skyair", "COALITION", [
        line("sa-1", 1_500, NOW - timedelta(days=10))], now=NOW)
    assert (ops[0].gross, ops[0].currency) == (1_500, "CNY")
    assert ("partner:skyair:position:CNY", "D", 1_500) in {
        (p.account, p.side, p.amount) for p in get_transaction(session, ops[0].id).postings}
    for partner, program in (("megamart", "COALITION"), ("skyair", "BANKA")):
        with pytest.raises(NotPermitted):
            imports.import_points(session, partner, program, [line("x", 1, NOW)], now=NOW)


@pytest.mark.parametrize("lines", [[], "c-1,100", None,
                                   [line("c-1", 1, YEAR_AGO)] * (imports.MAX_LINES + 1)])
def test_an_import_has_one_to_max_lines(session, m2, lines):
    with pytest.raises(InvalidOperation) as err:
        imports.import_points(session, "banka", "BANKA", lines, now=NOW)
    assert err.value.field == "lines"
