"""Redemptions: direct, authorise/capture/void/expiry, and refunds in parts."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.clearing import agreements, lots, operations, redemptions
from app.clearing.errors import InvalidOperation, NotPermitted, OperationNotFound
from app.clearing.models import Lot, LotMove
from ledger import balance, expire_due, get_transaction, resolution_of
from ledger.errors import (
    CaptureExceedsPending,
    IdempotencyConflict,
    InvalidAmount,
    NotPending,
    PendingExpired,
    ReversalExceedsOriginal,
)

from .conftest import T0

T1 = T0 + timedelta(hours=1)


def postings(session, operation):
    txn = get_transaction(session, operation.id)
    return sorted((p.account, p.side, p.amount) for p in txn.postings)


def points_of(session, member):
    b = balance(session, f"member:{member}:BANKA")
    assert lots.check_agrees(session, member, "BANKA", b.available)
    return b.posted, b.available


@pytest.fixture
def m(session, world):
    """The member, holding 5,000 BANKA; MegaMart's terms from T0: 0.0075 CNY, 2.5 % fee."""
    agreements.set_terms(session, world.redemption_id, value_per_point=Decimal("0.0075"),
                         fee_rate=Decimal("0.025"), effective_from=T0)
    operations.issue(session, "banka", "c-1", "BANKA", 5_000, now=T0)
    return world.member_id


def money_lines(member_gross, net, fee):
    return [("partner:banka:position:CNY", "D", member_gross),
            ("partner:megamart:position:CNY", "C", net), ("platform:fees:CNY", "C", fee)]


def test_a_redemption_rounds_the_whole_line_half_up_and_the_fee_on_the_gross(session, m):
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 1_001, reference="till-9",
                               now=T1)
    # 1,001 x 0.0075 = 7.5075 CNY -> 751 fen; fee 751 x 2.5 % = 18.775 -> 19; net 732.
    assert postings(session, spent) == sorted([
        (f"member:{m}:BANKA", "D", 1_001), ("program:BANKA:redeemed", "C", 1_001),
        *money_lines(751, 732, 19)])
    assert (spent.kind, spent.gross, spent.fee, spent.counterparty_id, spent.reference) == (
        "redemption", 751, 19, "banka", "till-9")
    assert points_of(session, m) == (3_999, 3_999)


def test_the_programs_owner_redeems_its_own_points_without_money(session, m):
    spent = redemptions.redeem(session, "banka", "c-1", "BANKA", 500, now=T1)
    assert postings(session, spent) == [(f"member:{m}:BANKA", "D", 500),
                                        ("program:BANKA:redeemed", "C", 500)]
    assert (spent.agreement_id, spent.terms_id, spent.gross, spent.counterparty_id) == (
        None, None, None, None)


def test_authorise_reserves_and_a_partial_capture_posts_less_and_releases_the_rest(session, m):
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 1_001, now=T1)
    held = get_transaction(session, auth.id)
    assert (held.status, held.expires_at, auth.kind, auth.gross) == (
        "pending", T1 + timedelta(days=7), "authorisation", 751)
    assert points_of(session, m) == (5_000, 3_999)
    # Terms that change after the authorisation do not reprice its capture.
    agreements.set_terms(session, auth.agreement_id, value_per_point=Decimal("0.5"),
                         effective_from=T1 + timedelta(minutes=1))
    captured = redemptions.capture(session, "megamart", auth.id, 400, now=T1 + timedelta(hours=1))
    # 400 x 0.0075 = 3 CNY = 300 fen; fee 7.5 -> 8; net 292.
    assert postings(session, captured) == sorted([
        (f"member:{m}:BANKA", "D", 400), ("program:BANKA:redeemed", "C", 400),
        *money_lines(300, 292, 8)])
    assert (captured.kind, captured.related_id, captured.points, captured.gross, captured.fee,
            captured.terms_id) == ("capture", auth.id, 400, 300, 8, auth.terms_id)
    assert get_transaction(session, captured.id).resolves_id == auth.id
    assert points_of(session, m) == (4_600, 4_600)
    for again in (lambda: redemptions.capture(session, "megamart", auth.id, now=T1),
                  lambda: redemptions.void(session, "megamart", auth.id, now=T1)):
        with pytest.raises(NotPending):
            again()


def test_a_full_capture_posts_what_was_authorised(session, m):
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 2_000, now=T1)
    captured = redemptions.capture(session, "megamart", auth.id, now=T1)
    assert captured.points == 2_000
    assert postings(session, captured) == sorted([
        (f"member:{m}:BANKA", "D", 2_000), ("program:BANKA:redeemed", "C", 2_000),
        *money_lines(1_500, 1_462, 38)])
    with pytest.raises(CaptureExceedsPending):
        redemptions.capture(session, "megamart",
                            redemptions.authorise(session, "megamart", "mm-1", "BANKA", 10,
                                                  now=T1).id, 11, now=T1)


def test_void_releases_everything_and_a_void_authorisation_is_not_refundable(session, m):
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 4_000, now=T1)
    voided = redemptions.void(session, "megamart", auth.id, now=T1)
    assert (voided.kind, voided.related_id, voided.points) == ("void", auth.id, 4_000)
    assert get_transaction(session, voided.id).postings == ()
    assert points_of(session, m) == (5_000, 5_000)
    with pytest.raises(NotPending):
        redemptions.capture(session, "megamart", auth.id, now=T1)
    with pytest.raises(InvalidOperation) as err:
        redemptions.refund(session, "megamart", auth.id, now=T1)
    assert err.value.field == "operation_id"


def test_an_authorisation_expires_and_releases_its_points(session, m):
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 3_000,
                                 expires_in=timedelta(hours=1), now=T1)
    end = T1 + timedelta(hours=1)
    with pytest.raises(PendingExpired):
        redemptions.capture(session, "megamart", auth.id, now=end)
    expire_due(session, now=end - timedelta(microseconds=1))
    assert resolution_of(session, auth.id) is None
    assert expire_due(session, now=end) >= 1
    assert resolution_of(session, auth.id).kind == "expiry"
    assert points_of(session, m) == (5_000, 5_000)
    # The released points are spendable again, from the same lot.
    assert redemptions.redeem(session, "megamart", "mm-1", "BANKA", 5_000, now=end).points == 5_000


@pytest.mark.parametrize("expires_in", [timedelta(seconds=59), timedelta(days=30, seconds=1), 60])
def test_an_authorisation_lasts_one_minute_to_thirty_days(session, m, expires_in):
    with pytest.raises(InvalidOperation) as err:
        redemptions.authorise(session, "megamart", "mm-1", "BANKA", 10, expires_in=expires_in,
                              now=T1)
    assert err.value.field == "expires_in"


def test_only_the_redeemer_captures_voids_or_refunds(session, m):
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 100, now=T1)
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 100, now=T1)
    for call in (redemptions.capture, redemptions.void, redemptions.refund):
        with pytest.raises(NotPermitted):       # BankA is the counterparty, not the redeemer
            call(session, "banka", auth.id, now=T1)
        with pytest.raises(OperationNotFound):  # SkyAir is no party to it
            call(session, "skyair", auth.id, now=T1)
    with pytest.raises(InvalidOperation):
        redemptions.capture(session, "megamart", spent.id, now=T1)
    for bad in (0, -1, "5", 1.0):
        with pytest.raises(InvalidAmount):
            redemptions.capture(session, "megamart", auth.id, bad, now=T1)
        with pytest.raises(InvalidAmount):
            redemptions.refund(session, "megamart", spent.id, bad, now=T1)


def test_partial_refunds_add_up_to_exactly_the_redemption_and_never_beyond(session, m):
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 1_001, now=T1)
    parts = [redemptions.refund(session, "megamart", spent.id, n, now=T1 + timedelta(hours=i))
             for i, n in enumerate((1, 333, 333, None), start=1)]
    assert [p.points for p in parts] == [1, 333, 333, 334]
    assert [(p.gross, p.fee) for p in parts] == [(1, 0), (250, 6), (249, 7), (251, 6)]
    assert sum(p.gross for p in parts) == spent.gross and sum(p.fee for p in parts) == spent.fee
    total = Counter()
    for p in parts:
        assert get_transaction(session, p.id).reverses_id == spent.id
        assert p.related_id == spent.id and p.terms_id == spent.terms_id
        for account, side, amount in postings(session, p):
            total[(account, side)] += amount
    assert sorted((a, s, n) for (a, s), n in total.items()) == sorted(
        (a, "C" if s == "D" else "D", n) for a, s, n in postings(session, spent))
    assert points_of(session, m) == (5_000, 5_000)
    with pytest.raises(ReversalExceedsOriginal) as err:
        redemptions.refund(session, "megamart", spent.id, 1, now=T1)
    assert err.value.field == "points"
    with pytest.raises(ReversalExceedsOriginal) as err:
        redemptions.refund(session, "megamart", spent.id, now=T1)
    assert err.value.field == "operation_id"


def test_a_refund_of_a_capture_is_bounded_by_what_was_captured(session, m):
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 1_000, now=T1)
    captured = redemptions.capture(session, "megamart", auth.id, 600, now=T1)
    with pytest.raises(ReversalExceedsOriginal):
        redemptions.refund(session, "megamart", auth.id, 601, now=T1)
    via_auth = redemptions.refund(session, "megamart", auth.id, 200, now=T1)
    via_capture = redemptions.refund(session, "megamart", captured.id, now=T1)
    assert (via_auth.related_id, via_capture.related_id) == (captured.id, captured.id)
    assert (via_auth.points, via_capture.points) == (200, 400)
    assert via_auth.gross + via_capture.gross == captured.gross == 450
    assert points_of(session, m) == (5_000, 5_000)


def test_a_refund_gives_points_back_to_the_very_lots_they_came_from(session, world, m):
    # Lots: 5,000 at T0 (fixture), 100 at T0 + 1 day; spend 5,050 from both.
    operations.issue(session, "banka", "c-1", "BANKA", 100, now=T0 + timedelta(days=1))
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 5_050,
                               now=T0 + timedelta(days=2))
    operations.issue(session, "banka", "c-1", "BANKA", 70, now=T0 + timedelta(days=3))
    refunded = redemptions.refund(session, "megamart", spent.id, now=T0 + timedelta(days=4))
    earned = dict(session.execute(select(Lot.id, Lot.earned_at).where(Lot.member_id == m)).all())

    def moves(op):
        return sorted((earned[lot], kind, n) for lot, kind, n in session.execute(
            select(LotMove.lot_id, LotMove.kind, LotMove.points)
            .where(LotMove.transaction_id == op.id)))

    assert moves(spent) == [(T0, "spend", -5_000), (T0 + timedelta(days=1), "spend", -50)]
    assert moves(refunded) == [(T0, "restore", 5_000), (T0 + timedelta(days=1), "restore", 50)]
    assert [(lot.earned_at, lot.remaining) for lot in lots.lots(session, m, "BANKA")] == [
        (T0, 5_000), (T0 + timedelta(days=1), 100), (T0 + timedelta(days=3), 70)]


def test_retries_with_a_key_replay_and_another_request_under_it_conflicts(session, m):
    def redeem(points, key="r"):
        return redemptions.redeem(session, "megamart", "mm-1", "BANKA", points,
                                  idempotency_key=key, now=T1)

    spent = redeem(5_000)
    assert redeem(5_000).id == spent.id  # although the points are gone now
    auth_key = {"idempotency_key": "a", "now": T1}
    refund = redemptions.refund(session, "megamart", spent.id, 10, idempotency_key="f", now=T1)
    assert redemptions.refund(session, "megamart", spent.id, 10, idempotency_key="f",
                              now=T1).id == refund.id
    conflicts = [lambda: redeem(4_999),
                 lambda: redemptions.authorise(session, "megamart", "mm-1", "BANKA", 5_000,
                                               idempotency_key="r", now=T1),
                 lambda: redemptions.refund(session, "megamart", spent.id, 11,
                                            idempotency_key="f", now=T1)]
    for call in conflicts:
        with pytest.raises(IdempotencyConflict) as err:
            call()
        assert err.value.field == "idempotency_key"
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 10, **auth_key)
    captured = redemptions.capture(session, "megamart", auth.id, 5, idempotency_key="c", now=T1)
    assert redemptions.capture(session, "megamart", auth.id, 5, idempotency_key="c",
                               now=T1).id == captured.id
    with pytest.raises(IdempotencyConflict):
        redemptions.capture(session, "megamart", auth.id, idempotency_key="c", now=T1)
    assert points_of(session, m) == (5, 5)
