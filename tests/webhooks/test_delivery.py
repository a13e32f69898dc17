"""The worker against a real HTTP receiver on 127.0.0.1: every event arrives once per
subscription (retried through failures with backoff, the same id and body each time),
signed in the documented format; replays; disabled subscriptions get nothing."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.clearing import redemptions, webhook_queue, webhooks
from app.clearing.webhook_models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from app.webhooks.deliver import deliver_due
from ledger.types import utcnow

from .conftest import key_id_of, verify_webhook


def deliver(committed, platform_key, now=None, **options):
    options.setdefault("concurrency", 1)
    options.setdefault("timeout", 5)
    return deliver_due(committed.sessions, platform_key, now=now or utcnow(),
                       partners=committed.partners, dev_targets=True, **options)


def spend(committed, points=10, **options):
    return committed.run(lambda s: redemptions.redeem(
        s, committed.id("megamart"), "mm-1", committed.id("BANKA"), points, **options))


def issue(committed, points=100):
    from app.clearing import operations

    return committed.run(lambda s: operations.issue(s, committed.id("banka"), "c-1",
                                                    committed.id("BANKA"), points))


def test_every_event_reaches_every_subscription_once(committed, receiver, platform_key):
    committed.subscribe("megamart", f"{receiver.url}/posted", ["transaction.posted"])
    committed.subscribe("megamart", f"{receiver.url}/all")
    committed.subscribe("banka", f"{receiver.url}/bank", ["transaction.posted"])
    issue(committed, 1_000)
    spent = spend(committed)
    held = committed.run(lambda s: redemptions.authorise(
        s, committed.id("megamart"), "mm-1", committed.id("BANKA"), 20))
    results = deliver(committed, platform_key)
    assert {r.outcome.state for r in results} == {"delivered"}
    assert deliver(committed, platform_key) == []  # nothing is sent twice

    def ids(path):
        return sorted(r.event["data"]["id"] for r in receiver.ok(path))
    assert ids("/posted") == [str(spent.id)]
    assert ids("/all") == sorted([str(spent.id), str(held.id)])
    assert len(ids("/bank")) == 2  # banka's issue, and the redemption of its points
    assert all(r.event["partner"] == committed.id("banka") for r in receiver.ok("/bank"))
    assert len(receiver.requests) == 5
    assert {d.state for d in committed.deliveries()} == {"delivered"}


def test_the_signature_verifies_in_the_documented_format(committed, receiver, platform_key):
    committed.subscribe("megamart", f"{receiver.url}/hook")
    spent = spend(committed)
    before = int(utcnow().timestamp())
    deliver(committed, platform_key)
    (got,) = receiver.requests
    event = got.event
    assert (event["type"], event["partner"], event["data"]["id"]) == (
        "transaction.posted", committed.id("megamart"), str(spent.id))
    assert got.headers["Pointclear-Webhook-Id"] == event["id"]
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Pointclear-Webhook-Key-Id"] == key_id_of(platform_key.public_key())
    assert abs(int(got.headers["Pointclear-Webhook-Timestamp"]) - before) <= 5
    assert verify_webhook(platform_key.public_key(), got.headers, got.body)
    (stored,) = [e for e in committed.events() if str(e.id) == event["id"]]
    assert got.body == stored.payload.encode("utf-8")
    tampered = got.body.replace(b'"points":10', b'"points":99')
    assert tampered != got.body and not verify_webhook(platform_key.public_key(), got.headers,
                                                       tampered)
    restamped = {**got.headers, "Pointclear-Webhook-Timestamp": str(before + 3600)}
    assert not verify_webhook(platform_key.public_key(), restamped, got.body)


def test_a_failing_receiver_gets_the_event_once_it_recovers(committed, receiver,
                                                            platform_key):
    committed.subscribe("megamart", f"{receiver.url}/flaky")
    receiver.fail_first["/flaky"] = 3
    spend(committed)
    now = utcnow()
    outcomes = []
    for hop in range(4):
        # Each failure is retried later, never sooner: at `now` itself nothing is due.
        results = deliver(committed, platform_key, now=now)
        outcomes += [(r.status, r.outcome.state) for r in results]
        assert deliver(committed, platform_key, now=now) == []
        (delivery,) = committed.deliveries()
        if delivery.state == "pending":
            wait = delivery.next_attempt_at - now
            assert timedelta(seconds=7.5) * 2 ** hop <= wait <= timedelta(seconds=10) * 2 ** hop
            now = delivery.next_attempt_at
    assert outcomes == [(500, "pending")] * 3 + [(204, "delivered")]
    assert [r.status for r in receiver.requests] == [500, 500, 500, 204]
    assert len({r.headers["Pointclear-Webhook-Id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    (delivery,) = committed.deliveries()
    assert (delivery.state, delivery.attempts, delivery.last_status, delivery.last_error) == (
        "delivered", 4, 204, None)
    with committed.sessions() as s:
        log = list(s.scalars(select(WebhookAttempt).where(
            WebhookAttempt.delivery_id == delivery.id).order_by(WebhookAttempt.id)))
    assert [a.status for a in log] == [500, 500, 500, 204]
    assert log[0].error == "http_500"


def test_after_the_last_attempt_the_delivery_fails_and_a_replay_sends_it_again(
        committed, receiver, platform_key, monkeypatch):
    monkeypatch.setattr(webhook_queue, "MAX_ATTEMPTS", 3)
    committed.subscribe("megamart", f"{receiver.url}/down")
    receiver.fail_first["/down"] = 3
    spend(committed)
    now = utcnow()
    for _ in range(3):
        deliver(committed, platform_key, now=now)
        now += timedelta(hours=2)
    (delivery,) = committed.deliveries()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert deliver(committed, platform_key, now=now + timedelta(days=1)) == []
    committed.run(lambda s: webhooks.replay(s, committed.id("megamart"), delivery.id, now=now))
    (results,) = [deliver(committed, platform_key, now=now)]
    assert [(r.status, r.outcome.state, r.claim.attempt) for r in results] == [
        (204, "delivered", 1)]
    assert len({r.headers["Pointclear-Webhook-Id"] for r in receiver.requests}) == 1
    # A delivered event can be replayed too: the receiver dedupes on the event id.
    committed.run(lambda s: webhooks.replay(s, committed.id("megamart"), delivery.id, now=now))
    deliver(committed, platform_key, now=now)
    assert [r.status for r in receiver.requests] == [500, 500, 500, 204, 204]


def test_a_disabled_subscription_gets_nothing(committed, receiver, platform_key):
    off = committed.subscribe("megamart", f"{receiver.url}/off")
    on = committed.subscribe("megamart", f"{receiver.url}/on")
    spend(committed)
    committed.run(lambda s: webhooks.disable_subscription(s, committed.id("megamart"), off.id))
    spend(committed)
    deliver(committed, platform_key)
    assert [r.path for r in receiver.requests] == ["/on", "/on"]
    (failed,) = committed.deliveries(subscription_id=off.id)
    assert (failed.state, failed.last_error, failed.attempts) == (
        "failed", "subscription disabled", 0)
    with pytest.raises(webhooks.SubscriptionDisabled):
        committed.run(lambda s: webhooks.replay(s, committed.id("megamart"), failed.id))
    assert [d.state for d in committed.deliveries(subscription_id=on.id)] == ["delivered"] * 2


def test_a_subscription_disabled_after_its_delivery_was_queued_is_not_posted(
        committed, receiver, platform_key):
    sub = committed.subscribe("megamart", f"{receiver.url}/late")
    spend(committed)

    def disable_without_touching_deliveries(s):  # as a concurrent disable could race
        s.get(WebhookSubscription, sub.id).status = "disabled"
    committed.run(disable_without_touching_deliveries)
    assert deliver(committed, platform_key) == []
    assert receiver.requests == []
    assert [d.state for d in committed.deliveries()] == ["failed"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoints_and_redirects_are_logged_and_retried(committed, receiver,
                                                                     platform_key):
    committed.subscribe("megamart", f"http://127.0.0.1:{_closed_port()}/gone")
    committed.subscribe("megamart", f"{receiver.url}/moved")
    receiver.fail_first["/moved"], receiver.fail_status = 1, 302
    spend(committed)
    results = {r.claim.url.rsplit("/", 1)[1]: r for r in deliver(committed, platform_key)}
    assert (results["gone"].status, results["gone"].outcome.state) == (None, "pending")
    assert results["gone"].error == "connection_failed"
    assert "refused" in results["gone"].detail.lower()  # the details: the worker's only
    assert (results["moved"].status, results["moved"].error, results["moved"].outcome.state) \
        == (302, "http_302", "pending")
    assert [r.path for r in receiver.requests] == ["/moved"]  # the redirect is not followed


def test_posts_run_concurrently_and_each_is_recorded(committed, receiver, platform_key):
    for name in ("a", "b", "c"):
        committed.subscribe("megamart", f"{receiver.url}/{name}")
    for _ in range(3):
        spend(committed)
    results = deliver(committed, platform_key, concurrency=4, batch=4)
    assert len(results) == 4 and {r.outcome.state for r in results} == {"delivered"}
    results += deliver(committed, platform_key, concurrency=4, batch=50)
    assert len(results) == 9 and len(receiver.ok()) == 9
    assert {d.state for d in committed.deliveries()} == {"delivered"}


def test_a_late_result_does_not_undo_a_replay(committed, receiver, platform_key):
    committed.subscribe("megamart", f"{receiver.url}/x")
    spend(committed)
    now = utcnow()
    (claim,) = committed.run(lambda s: webhook_queue.claim_due(
        s, now=now, limit=5, lease=timedelta(minutes=5), partners=committed.partners))
    later = now + timedelta(minutes=6)  # the claim's lease has run out
    committed.run(lambda s: webhooks.replay(s, committed.id("megamart"), claim.delivery_id,
                                            now=later))
    outcome = committed.run(lambda s: webhook_queue.record_attempt(
        s, claim, status=None, error="timeout", duration_ms=5000, now=later))
    assert outcome.state == "superseded"
    (delivery,) = committed.deliveries()
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at) == (
        "pending", 0, later)


@pytest.mark.parametrize("attempts, low, high", [
    (1, 7.5, 10), (2, 15, 20), (5, 120, 160), (9, 1920, 2560), (10, 3840, 5120),
    (12, 15360, 20480), (13, 16200, 21600), (24, 16200, 21600), (400, 16200, 21600)])
def test_backoff_doubles_from_ten_seconds_to_six_hours_with_jitter(attempts, low, high):
    assert webhook_queue.retry_delay(attempts, rand=lambda: 0.0).total_seconds() == high
    assert webhook_queue.retry_delay(attempts, rand=lambda: 1.0).total_seconds() == low


def test_the_worker_command_delivers_over_real_http(app, receiver, tmp_path):
    from app import db
    from app.clearing import operations
    from app.signing import create_private_key, load_private_key
    from ledger.unit_of_work import run
    from tests.clearing.conftest import build_world

    create_private_key(app.config["SIGNING_KEY"])
    with app.app_context():
        sessions = db.session_factory()
        run(sessions, lambda s: build_world(s, utcnow()))
        run(sessions, lambda s: webhooks.create_subscription(
            s, "banka", f"{receiver.url}/b", ["transaction.posted"], dev_targets=True))
        for points in (10, 20):
            run(sessions, lambda s, n=points: operations.issue(s, "banka", "c-1", "BANKA", n))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["webhooks", "deliver", "--once", "--timeout", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.count("delivered transaction.posted") == 2
    assert result.output.strip().endswith("delivered 2, to retry 0, failed 0")
    assert sorted(r.event["data"]["points"] for r in receiver.ok("/b")) == [10, 20]
    public = load_private_key(app.config["SIGNING_KEY"]).public_key()
    assert all(verify_webhook(public, r.headers, r.body) for r in receiver.requests)
    again = runner.invoke(args=["webhooks", "deliver", "--once", "--quiet"])
    assert again.output.strip() == "delivered 0, to retry 0, failed 0"
    assert len(receiver.requests) == 2
    assert json.loads(receiver.requests[0].body)["partner"] == "banka"


def _worker_cast(app, receiver, work):
    from app import db
    from app.signing import create_private_key
    from ledger.unit_of_work import run
    from tests.clearing.conftest import build_world

    create_private_key(app.config["SIGNING_KEY"])
    with app.app_context():
        sessions = db.session_factory()
        run(sessions, lambda s: build_world(s, utcnow()))
        return work(sessions)


def test_the_worker_command_drains_past_deliveries_of_disabled_subscriptions(app, receiver):
    from app.clearing import operations
    from ledger.unit_of_work import run

    def cast(sessions):
        def subscribe(path):
            return run(sessions, lambda s: webhooks.create_subscription(
                s, "banka", f"{receiver.url}{path}", ["*"], dev_targets=True))

        def issue(n):
            for _ in range(n):
                run(sessions, lambda s: operations.issue(s, "banka", "c-1", "BANKA", 10))
        off = subscribe("/off")
        issue(2)  # due first, to a subscription about to be disabled
        subscribe("/on")
        issue(3)
        run(sessions, lambda s: setattr(s.get(WebhookSubscription, off.id), "status",
                                        "disabled"))  # as a concurrent disable could race
    _worker_cast(app, receiver, cast)
    result = app.test_cli_runner().invoke(args=["webhooks", "deliver", "--once", "--batch",
                                                "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "delivered 3, to retry 0, failed 0"
    assert [r.path for r in receiver.requests] == ["/on"] * 3


def test_the_worker_output_leaves_out_query_strings(app, receiver):
    from app.clearing import operations
    from ledger.unit_of_work import run

    def cast(sessions):
        run(sessions, lambda s: webhooks.create_subscription(
            s, "banka", f"{receiver.url}/in?token=s3cret", ["*"], dev_targets=True))
        run(sessions, lambda s: operations.issue(s, "banka", "c-1", "BANKA", 10))
    receiver.fail_first["/in?token=s3cret"] = 1
    _worker_cast(app, receiver, cast)
    runner = app.test_cli_runner()
    for _ in range(2):  # a failure, then (replayed at once) a delivery
        result = runner.invoke(args=["webhooks", "deliver", "--once"])
        assert result.exit_code == 0 and f"-> {receiver.url}/in" in result.output, \
            result.output
        assert "s3cret" not in result.output and "token" not in result.output
        with app.app_context():
            from app import db

            run(db.session_factory(), lambda s: s.execute(
                update(WebhookDelivery).values(next_attempt_at=utcnow())))
    assert [r.path for r in receiver.requests] == ["/in?token=s3cret"] * 2


def test_the_worker_command_needs_the_signing_key(app):
    result = app.test_cli_runner().invoke(args=["webhooks", "deliver", "--once"])
    assert result.exit_code == 1 and "pointclear keys init" in result.output
