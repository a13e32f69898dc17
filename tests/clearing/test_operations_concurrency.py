"""Clearing operations under real concurrency: PostgreSQL, real threads, each booking
committed through :func:`ledger.unit_of_work.run` as a web worker would.

Every test builds its own cast with ids made unique by the ``unique`` fixture and
settles in MOP, so the committed data shares no row with the savepoint-isolated tests
(which use CNY and the fixed DESIGN.md ids).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.clearing import (
    agreements,
    conversions,
    lots,
    members,
    operations,
    partners,
    programs,
    redemptions,
)
from app.clearing.errors import InsufficientPoints
from app.clearing.models import Lot, Operation
from ledger import balance, resolution_of
from ledger.errors import NotPending, ReversalExceedsOriginal
from ledger.unit_of_work import run
from ledger.verify import verify
from tests.concurrency import race

pytestmark = pytest.mark.postgres

CUR = "MOP"
T = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
LATER = T + timedelta(hours=1)


@dataclass
class Cast:
    bank: str
    air: str
    shop: str
    points: str
    miles: str
    member: str = ""


def _cast(sessions, u: str) -> Cast:
    """A bank with POINTS (24 months), an airline with MILES, a shop accepting POINTS at
    0.0075 with a 2.5 % fee; POINTS <-> MILES both ways; member "c" linked at all three."""
    c = Cast(f"bank-{u}", f"air-{u}", f"shop-{u}", f"P{u.upper()}", f"M{u.upper()}")
    before = T - timedelta(days=1)

    def work(s):
        for pid, roles in ((c.bank, {"issuer"}), (c.air, {"issuer", "redeemer"}),
                           (c.shop, {"redeemer"})):
            partners.onboard_partner(s, pid, name=pid, industry="other", roles=roles,
                                     settlement_currency=CUR)
        programs.create_program(s, c.points, name="Points", owner_id=c.bank, expiry_months=24)
        programs.create_program(s, c.miles, name="Miles", owner_id=c.air)
        agreements.create_redemption(s, c.points, c.shop, value_per_point=Decimal("0.0075"),
                                     fee_rate=Decimal("0.025"), effective_from=before)
        for source, target, ratio, value, target_value in (
                (c.points, c.miles, "0.4", "0.01", "0.02"),
                (c.miles, c.points, "2", "0.02", "0.01")):
            agreements.create_conversion(s, source, target, ratio=Decimal(ratio),
                                         value_per_point=Decimal(value),
                                         target_value_per_point=Decimal(target_value),
                                         effective_from=before)
        member_id = members.enrol(s, c.bank, "c", now=before).member_id
        for pid in (c.air, c.shop):
            token, _ = members.issue_token(s, c.bank, "c", now=before)
            members.enrol(s, pid, "c", member_token=token, now=before)
        return member_id

    c.member = run(sessions, work)
    return c


def _issue(sessions, c: Cast, points: int, *, days_ago: int = 1, miles=False):
    partner, program = (c.air, c.miles) if miles else (c.bank, c.points)
    return run(sessions, lambda s: operations.issue(s, partner, "c", program, points,
                                                    now=T - timedelta(days=days_ago)))



def _available(sessions, c: Cast, program: str) -> int:
    """The member's available points, once the lots are shown to hold exactly them."""
    with sessions() as s:
        available = balance(s, f"member:{c.member}:{program}").available
        assert lots.check_agrees(s, c.member, program, available)
        for lot in lots.lots(s, c.member, program):
            assert 0 < lot.remaining <= s.get(Lot, lot.id).points
        return available


def _posted(sessions, code: str) -> int:
    with sessions() as s:
        return balance(s, code).posted


def _books_whole(sessions):
    with sessions() as s:
        report = verify(s, check_signatures=False)
    assert report.ok, [f"{p.rule}: {p.detail}" for p in report.problems]


def test_concurrent_redemptions_never_overspend_one_members_points(sessions, unique):
    c = _cast(sessions, unique)
    for days_ago in (3, 2, 1):
        _issue(sessions, c, 1_000, days_ago=days_ago)
    threads, attempts, each = 16, 25, 10  # demand 4,000 of a 3,000 balance

    def spender(i, barrier):
        accepted, refused = [], []
        barrier.wait()
        for _ in range(attempts):
            try:
                accepted.append(run(sessions, lambda s: redemptions.redeem(
                    s, c.shop, "c", c.points, each, now=LATER)))
            except InsufficientPoints as err:
                refused.append(err.details["available"])
        return accepted, refused

    results = race(threads, spender)
    accepted = [op for ops, _ in results for op in ops]
    refused = [a for _, r in results for a in r]
    assert len(accepted) * each == min(threads * attempts * each, 3_000)
    assert set(refused) == {0} and len(refused) == threads * attempts - 300
    assert _available(sessions, c, c.points) == 0
    assert _posted(sessions, f"partner:{c.shop}:position:{CUR}") == sum(
        op.gross - op.fee for op in accepted)
    assert _posted(sessions, f"partner:{c.bank}:position:{CUR}") == -sum(
        op.gross for op in accepted)
    _books_whole(sessions)


SAME = {  # each request as (session, cast, ids of what it refers to) -> Operation
    "issue": lambda s, c, r: operations.issue(s, c.bank, "c", c.points, 500,
                                              idempotency_key="k", now=LATER),
    "redeem": lambda s, c, r: redemptions.redeem(s, c.shop, "c", c.points, 1_000,
                                                 idempotency_key="k", now=LATER),
    "convert": lambda s, c, r: conversions.convert(s, c.air, "c", c.points, c.miles, 1_000,
                                                   idempotency_key="k", now=LATER),
    "clawback": lambda s, c, r: operations.clawback(s, c.bank, r["issued"],
                                                    idempotency_key="k", now=LATER),
    "refund": lambda s, c, r: redemptions.refund(s, c.shop, r["spent"], idempotency_key="k",
                                                 now=LATER),
    "capture": lambda s, c, r: redemptions.capture(s, c.shop, r["auth"], idempotency_key="k",
                                                   now=LATER),
}
BOOKED = {"issue": ({"issue": 2}, 1_500), "redeem": ({"issue": 1, "redemption": 1}, 0),
          "convert": ({"issue": 1, "conversion": 1}, 0),
          "clawback": ({"issue": 1, "clawback": 1}, 0),
          "refund": ({"issue": 1, "redemption": 1, "authorisation": 1, "refund": 1}, 600),
          "capture": ({"issue": 1, "redemption": 1, "authorisation": 1, "capture": 1}, 0)}


@pytest.mark.parametrize("kind", list(SAME))
def test_the_same_request_sent_at_once_with_one_key_books_exactly_once(sessions, unique, kind):
    """Each request needs all the member's points, so a duplicate that did not see the
    first one's record would be refused instead of answered with its operation."""
    c = _cast(sessions, unique)
    refs = {"issued": _issue(sessions, c, 1_000).id}
    if kind in ("refund", "capture"):
        refs["spent"] = run(sessions, lambda s: redemptions.redeem(
            s, c.shop, "c", c.points, 600, now=T)).id
        refs["auth"] = run(sessions, lambda s: redemptions.authorise(
            s, c.shop, "c", c.points, 400, now=T)).id

    def sender(i, barrier):
        barrier.wait()
        return run(sessions, lambda s: SAME[kind](s, c, refs).id)

    ids = race(8, sender)
    assert len(set(ids)) == 1
    with sessions() as s:
        kinds = Counter(s.scalars(select(Operation.kind)
                                  .where(Operation.member_id == c.member)).all())
    assert kinds == Counter(BOOKED[kind][0])
    assert _available(sessions, c, c.points) == BOOKED[kind][1]
    _books_whole(sessions)


def test_a_capture_racing_a_void_of_one_authorisation_exactly_one_wins(sessions, unique):
    c = _cast(sessions, unique)
    _issue(sessions, c, 10_000)
    rounds = 12
    auths = [run(sessions, lambda s: redemptions.authorise(s, c.shop, "c", c.points, 500,
                                                           now=T)) for _ in range(rounds)]

    def racer(i, barrier):
        outcomes = []
        for auth in auths:
            barrier.wait()
            try:
                if i == 0:
                    run(sessions, lambda s, a=auth.id: redemptions.capture(s, c.shop, a, 300,
                                                                           now=LATER))
                else:
                    run(sessions, lambda s, a=auth.id: redemptions.void(s, c.shop, a, now=LATER))
                outcomes.append("won")
            except NotPending:
                outcomes.append("lost")
        return outcomes

    capture, void = race(2, racer)
    assert all(sorted(pair) == ["lost", "won"] for pair in zip(capture, void))
    captured = capture.count("won")
    with sessions() as s:
        assert [resolution_of(s, a.id).kind for a in auths] == [
            "authorisation" if won == "won" else "void" for won in capture]
    assert _available(sessions, c, c.points) == 10_000 - 300 * captured
    _books_whole(sessions)


def test_concurrent_partial_refunds_never_exceed_the_redemption_and_add_up(sessions, unique):
    c = _cast(sessions, unique)
    for days_ago in (4, 3, 2, 1):
        _issue(sessions, c, 300, days_ago=days_ago)
    spent = run(sessions, lambda s: redemptions.redeem(s, c.shop, "c", c.points, 1_001, now=T))

    def refunder(i, barrier):
        barrier.wait()
        try:
            return run(sessions, lambda s: redemptions.refund(s, c.shop, spent.id, 100, now=LATER))
        except ReversalExceedsOriginal as err:
            assert err.field == "points"
            return None

    refunds = [r for r in race(16, refunder) if r is not None]
    assert len(refunds) == 10
    assert _available(sessions, c, c.points) == 199 + 1_000
    last = run(sessions, lambda s: redemptions.refund(s, c.shop, spent.id, now=LATER))
    refunds.append(last)
    assert last.points == 1
    assert sum(r.gross for r in refunds) == spent.gross
    assert sum(r.fee for r in refunds) == spent.fee
    with sessions() as s:
        assert [lot.remaining for lot in lots.lots(s, c.member, c.points)] == [300] * 4
    assert _posted(sessions, f"partner:{c.shop}:position:{CUR}") == 0
    assert _posted(sessions, f"partner:{c.bank}:position:{CUR}") == 0
    _books_whole(sessions)


def test_conversions_both_ways_at_once_lose_no_update(sessions, unique):
    c = _cast(sessions, unique)
    _issue(sessions, c, 100_000)
    _issue(sessions, c, 50_000, miles=True)
    threads, rounds = 16, 10

    def converter(i, barrier):
        source, target, points = ((c.points, c.miles, 1_000) if i % 2
                                  else (c.miles, c.points, 500))
        barrier.wait()
        return [run(sessions, lambda s: conversions.convert(
            s, c.air, "c", source, target, points, now=LATER)) for _ in range(rounds)]

    ops = [op for ops in race(threads, converter) for op in ops]
    n = threads // 2 * rounds
    assert Counter(op.program_code for op in ops) == {c.points: n, c.miles: n}
    # 80 x (1,000 points -> 400 miles) and 80 x (500 miles -> 1,000 points).
    assert _available(sessions, c, c.points) == 100_000
    assert _available(sessions, c, c.miles) == 50_000 + n * 400 - n * 500
    assert _posted(sessions, f"partner:{c.bank}:position:{CUR}") == 0
    assert _posted(sessions, f"partner:{c.air}:position:{CUR}") == n * 800 - n * 1_000
    _books_whole(sessions)
