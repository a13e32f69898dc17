"""The queue's rules: only the current claim's result moves a delivery on (a replay or a
re-claim makes older results mere log lines); no replay while an attempt is in flight;
every partner gets its share of a batch; a moved subscription keeps its deliveries; the
retries cover about three days."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.clearing import operations, webhook_queue, webhooks
from app.clearing.errors import DeliveryInProgress
from app.clearing.webhook_models import WebhookSubscription
from ledger.types import utcnow

from .test_delivery import deliver, spend

LEASE = timedelta(minutes=1)


def claim(committed, now, limit=50):
    return committed.run(lambda s: webhook_queue.claim_due(
        s, now=now, limit=limit, lease=LEASE, partners=committed.partners))


def record(committed, claim_, now, status=None, error="timeout"):
    return committed.run(lambda s: webhook_queue.record_attempt(
        s, claim_, status=status, error=error, duration_ms=1000, now=now))


def replay(committed, delivery_id, now):
    return committed.run(lambda s: webhooks.replay(s, committed.id("megamart"), delivery_id,
                                                   now=now))


def test_a_replay_while_an_attempt_is_in_flight_is_refused(committed):
    committed.subscribe("megamart", "https://hooks.megamart.example/in")
    spend(committed)
    t0 = utcnow()
    (a,) = claim(committed, t0)
    with pytest.raises(DeliveryInProgress):
        replay(committed, a.delivery_id, t0 + timedelta(seconds=59))
    (delivery,) = committed.deliveries()
    assert (delivery.attempts, delivery.claim_token) == (1, a.token)
    assert record(committed, a, t0 + timedelta(seconds=5)).state == "pending"
    replay(committed, a.delivery_id, t0 + timedelta(seconds=6))  # over: replayed at once


def test_a_late_result_of_an_old_claim_does_not_touch_the_new_claim(committed):
    """The review's interleaving: worker A claims; its lease runs out; the partner
    replays; worker B claims; A's result arrives."""
    committed.subscribe("megamart", "https://hooks.megamart.example/in")
    spend(committed)
    t0 = utcnow()
    (a,) = claim(committed, t0)
    t1 = t0 + LEASE + timedelta(seconds=1)
    replay(committed, a.delivery_id, t1)
    (b,) = claim(committed, t1)
    assert (b.delivery_id, b.attempt) == (a.delivery_id, a.attempt) and b.token != a.token
    for status, error in ((None, "timeout"), (204, None)):
        assert record(committed, a, t1, status, error).state == "superseded"
    (delivery,) = committed.deliveries()
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at,
            delivery.claim_token) == ("pending", 1, t1 + LEASE, b.token)
    assert claim(committed, t1 + timedelta(seconds=30)) == []  # B's lease holds
    outcome = record(committed, b, t1 + timedelta(seconds=2))
    assert outcome.state == "pending" and outcome.next_attempt_at > t1
    (delivery,) = committed.deliveries()
    assert (delivery.claim_token, delivery.last_error) == (None, "timeout")


def test_one_partners_backlog_does_not_starve_another(committed):
    committed.subscribe("megamart", "https://hooks.megamart.example/in")
    for _ in range(8):  # megamart's backlog, due first
        spend(committed, 1)
    committed.subscribe("banka", "https://hooks.banka.example/in", ["transaction.posted"])
    for _ in range(2):
        committed.run(lambda s: operations.issue(s, committed.id("banka"), "c-1",
                                                 committed.id("BANKA"), 1))
    banka = {d.id for d in committed.deliveries(partner_id=committed.id("banka"))}
    assert len(banka) == 2
    claims = claim(committed, utcnow(), limit=4)
    assert len(claims) == 4 and banka <= {c.delivery_id for c in claims}
    more = claim(committed, utcnow(), limit=50)  # what banka leaves goes to megamart
    assert len(more) == 6 and not banka & {c.delivery_id for c in more}


def test_a_batch_fills_past_deliveries_of_disabled_subscriptions(committed):
    off = committed.subscribe("megamart", "https://hooks.megamart.example/off")
    for _ in range(3):
        spend(committed, 1)
    on = committed.subscribe("megamart", "https://hooks.megamart.example/on")
    for _ in range(2):
        spend(committed, 1)

    def disable_without_touching_deliveries(s):  # as a concurrent disable could race
        s.get(WebhookSubscription, off.id).status = "disabled"
    committed.run(disable_without_touching_deliveries)
    claims = claim(committed, utcnow(), limit=2)  # the first three due are off's
    assert {c.delivery_id for c in claims} == {
        d.id for d in committed.deliveries(subscription_id=on.id)}
    assert [d.state for d in committed.deliveries(subscription_id=off.id)][:3] == [
        "failed"] * 3


def test_a_moved_subscription_keeps_its_pending_deliveries(committed, receiver,
                                                           platform_key):
    sub = committed.subscribe("megamart", f"{receiver.url}/old")
    receiver.fail_first["/old"] = 1
    spend(committed)
    (failed,) = deliver(committed, platform_key)
    assert (failed.status, failed.outcome.state) == (500, "pending")
    now = utcnow()
    committed.run(lambda s: webhooks.change_url(s, committed.id("megamart"), sub.id,
                                                f"{receiver.url}/new", dev_targets=True,
                                                now=now))
    (delivery,) = committed.deliveries()
    assert delivery.next_attempt_at == now  # due at once at the new URL
    (moved,) = deliver(committed, platform_key, now=now)
    assert (moved.status, moved.outcome.state, moved.claim.attempt) == (204, "delivered", 2)
    assert [r.path for r in receiver.requests] == ["/old", "/new"]


def test_an_attempt_in_flight_keeps_its_lease_when_the_url_moves(committed):
    sub = committed.subscribe("megamart", "https://hooks.megamart.example/old")
    spend(committed)
    t0 = utcnow()
    (a,) = claim(committed, t0)
    committed.run(lambda s: webhooks.change_url(s, committed.id("megamart"), sub.id,
                                                "https://hooks.megamart.example/new", now=t0))
    (delivery,) = committed.deliveries()
    assert (delivery.next_attempt_at, delivery.claim_token) == (t0 + LEASE, a.token)
    assert a.url.endswith("/old")
    (b,) = claim(committed, t0 + LEASE + timedelta(seconds=1))
    assert b.url == "https://hooks.megamart.example/new"


def test_the_retries_cover_about_three_days():
    def span(rand):
        return sum((webhook_queue.retry_delay(n, rand=lambda: rand)
                    for n in range(1, webhook_queue.MAX_ATTEMPTS)), timedelta())
    assert timedelta(days=2.5) <= span(1.0) <= span(0.5) <= span(0.0) <= timedelta(days=3.6)
    assert abs(span(0.5) - timedelta(days=3)) < timedelta(hours=3)
    assert webhook_queue.retry_delay(30, rand=lambda: 0.0) == timedelta(hours=6)
