"""Points expiry: lots past their date expire as breakage, exactly once, oldest first."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from app.clearing import breakage, lots, operations, redemptions
from app.clearing.models import Operation
from app.clearing.webhook_models import WebhookEvent
from ledger import balance
from ledger.unit_of_work import run

from .conftest import T0, build_world

LATER = T0 + timedelta(days=800)  # BANKA points expire 24 months after they are earned


def test_expired_lots_are_breakage_and_unexpired_ones_stay(session, world):
    banka, BANKA, m = world.id("banka"), world.id("BANKA"), world.member_id
    operations.issue(session, banka, "c-1", BANKA, 700, now=T0)
    operations.issue(session, banka, "c-1", BANKA, 500, now=T0 + timedelta(days=400))
    redemptions.redeem(session, world.id("megamart"), "mm-1", BANKA, 200,
                       now=T0 + timedelta(days=10))  # from the oldest lot
    assert breakage.members_due(session, BANKA, LATER) == [m]
    expired = breakage.expire_member(session, m, session.get(
        breakage.Program, BANKA), LATER)
    assert (expired.kind, expired.points, expired.related_id, expired.partner_id,
            expired.counterparty_id) == ("expiry", 500, None, None, banka)
    assert balance(session, f"member:{m}:BANKA").posted == 500
    assert balance(session, "program:BANKA:expired").posted == 500
    assert lots.check_agrees(session, m, BANKA, 500)
    assert breakage.members_due(session, BANKA, LATER) == []
    assert breakage.expire_member(session, m, session.get(breakage.Program, BANKA),
                                  LATER) is None  # nothing twice


def test_points_an_authorisation_reserved_are_not_expired(session, world):
    banka, BANKA, m = world.id("banka"), world.id("BANKA"), world.member_id
    operations.issue(session, banka, "c-1", BANKA, 300, now=T0)
    auth = redemptions.authorise(session, world.id("megamart"), "mm-1", BANKA, 100,
                                 expires_in=timedelta(days=30), now=T0 + timedelta(days=720))
    after_lot_expiry = T0 + timedelta(days=735)  # the lot expired at ~730, the hold at 750
    expired = breakage.expire_member(session, m, session.get(breakage.Program, BANKA),
                                     after_lot_expiry)
    assert expired.points == 200
    assert lots.check_agrees(session, m, BANKA, balance(session, f"member:{m}:BANKA").available)
    captured = redemptions.capture(session, world.id("megamart"), auth.id,
                                   now=after_lot_expiry + timedelta(days=1))
    assert captured.points == 100 and balance(session, f"member:{m}:BANKA").posted == 0


def test_the_owner_is_told(session, world):
    operations.issue(session, world.id("banka"), "c-1", world.id("BANKA"), 50, now=T0)
    op = breakage.expire_member(session, world.member_id,
                                session.get(breakage.Program, world.id("BANKA")), LATER)
    [event] = session.scalars(select(WebhookEvent).where(WebhookEvent.operation_id == op.id))
    assert (event.type, event.partner_id) == ("transaction.expired", world.id("banka"))


@pytest.mark.postgres
def test_workers_running_at_once_expire_each_member_once(engine, unique):
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions() as session:
        world = build_world(session, T0, unique[:6])
        for i in range(12):
            operations.issue(session, world.id("banka"), "c-1", world.id("BANKA"), 10 + i,
                             now=T0)
        session.commit()
    barrier, results = threading.Barrier(4), []

    def worker():
        barrier.wait()
        results.append(breakage.expire_program(sessions, world.id("BANKA"), LATER, batch=1))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(points for _, points in results) == sum(10 + i for i in range(12))
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Operation).where(
            Operation.kind == "expiry", Operation.member_id == world.member_id)) == 1
        assert run(sessions, lambda s: breakage.members_due(s, world.id("BANKA"), LATER)) == []
