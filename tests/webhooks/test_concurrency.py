"""Concurrency and atomicity: the outbox commits or rolls back with its booking; on
PostgreSQL several workers share the queue and deliver each delivery once, a partner's
replays never make two of them POST one delivery at once, and parallel expiry sweeps
book each expiry (and its events) once."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.clearing import redemptions, webhooks
from app.clearing.errors import DeliveryInProgress
from app.clearing.models import Operation
from app.clearing.webhook_models import WebhookAttempt, WebhookEvent
from app.webhooks.deliver import deliver_due
from ledger.types import utcnow


def _redeem(committed, points=1):
    return lambda s: redemptions.redeem(s, committed.id("megamart"), "mm-1",
                                        committed.id("BANKA"), points)


def test_a_booking_that_rolls_back_leaves_no_event(committed):
    committed.subscribe("megamart", "https://mm.example/hooks")
    booked = []

    def work_then_fail(s):
        booked.append(_redeem(committed)(s))
        raise RuntimeError("the caller fails after booking, before the commit")
    with pytest.raises(RuntimeError):
        committed.run(work_then_fail)
    with committed.sessions() as s:
        assert s.get(Operation, booked[0].id) is None
        assert s.scalar(select(func.count()).select_from(WebhookEvent).where(
            WebhookEvent.operation_id == booked[0].id)) == 0
    assert committed.deliveries() == []
    kept = committed.run(_redeem(committed))
    assert [e.operation_id for e in committed.events()].count(kept.id) == 2
    assert len(committed.deliveries()) == 1


@pytest.mark.postgres
def test_two_workers_deliver_each_delivery_once(committed, receiver, platform_key):
    for path in ("/a", "/b"):
        committed.subscribe("megamart", f"{receiver.url}{path}")
    for _ in range(20):
        committed.run(_redeem(committed))
    receiver.delay = 0.01
    start, sent = threading.Barrier(2), Counter()

    def worker(name):
        start.wait()
        while results := deliver_due(committed.sessions, platform_key, batch=5,
                                     concurrency=2, timeout=5, partners=committed.partners,
                                     dev_targets=True):
            sent[name] += len(results)
    threads = [threading.Thread(target=worker, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(sent.values()) == 40 and min(sent.values()) > 0, sent
    received = Counter((r.path, r.headers["Pointclear-Webhook-Id"]) for r in receiver.requests)
    assert len(received) == 40 and set(received.values()) == {1}
    deliveries = committed.deliveries()
    assert {(d.state, d.attempts) for d in deliveries} == {("delivered", 1)}
    with committed.sessions() as s:
        assert s.scalar(select(func.count()).select_from(WebhookAttempt).where(
            WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))) == 40


@pytest.mark.postgres
def test_replays_never_make_two_workers_post_one_delivery_at_once(committed, receiver,
                                                                  platform_key):
    committed.subscribe("megamart", f"{receiver.url}/r")
    for _ in range(2):
        committed.run(_redeem(committed))
    ids = [d.id for d in committed.deliveries()]
    receiver.delay = 0.05
    start, replaying, refused = threading.Barrier(4), threading.Event(), Counter()

    def worker():
        start.wait()
        while deliver_due(committed.sessions, platform_key, batch=1, timeout=5,
                          partners=committed.partners, dev_targets=True) \
                or replaying.is_set():
            pass

    def partner():
        start.wait()
        for i in range(60):  # replays land while attempts are in flight, and between
            wanted = ids[i % len(ids)]
            try:
                committed.run(lambda s, wanted=wanted: webhooks.replay(
                    s, committed.id("megamart"), wanted))
            except DeliveryInProgress:
                refused["in progress"] += 1
        replaying.clear()
    replaying.set()
    # Three workers for two deliveries: one is always free to claim a replayed one.
    threads = [threading.Thread(target=worker) for _ in range(3)]
    threads.append(threading.Thread(target=partner))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert receiver.overlaps == []
    assert refused["in progress"] > 0  # the race was run, not avoided
    assert {d.state for d in committed.deliveries()} == {"delivered"}


@pytest.mark.postgres
def test_parallel_sweeps_book_each_expiry_once(committed):
    past = utcnow() - timedelta(minutes=5)
    auths = [committed.run(lambda s: redemptions.authorise(
        s, committed.id("megamart"), "mm-1", committed.id("BANKA"), 10,
        expires_in=timedelta(minutes=1), now=past)) for _ in range(12)]
    start, counts = threading.Barrier(3), []

    def sweep():
        start.wait()
        while n := committed.run(lambda s: redemptions.expire_authorisations(s, limit=2)):
            counts.append(n)
    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    with committed.sessions() as s:
        expiries = Counter(s.scalars(select(Operation.related_id).where(
            Operation.related_id.in_([a.id for a in auths]), Operation.kind == "expiry")))
        events = s.scalar(select(func.count()).select_from(WebhookEvent).join(
            Operation, Operation.id == WebhookEvent.operation_id).where(
            Operation.related_id.in_([a.id for a in auths]), Operation.kind == "expiry"))
    assert sum(counts) >= 12  # other tests' lapsed holds may be swept too
    assert set(expiries.values()) == {1} and len(expiries) == 12 and events == 24
