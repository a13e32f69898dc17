"""The webhook endpoints: subscribe, list, disable, the delivery log, replay, and the
platform's public keys -- signed, idempotent, and each partner seeing only its own."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import sessionmaker

from app.signing import create_private_key, load_private_key
from app.webhooks.deliver import deliver_due

from .conftest import key_id_of, verify_webhook


def post(client, path, body=None, key=None):
    return client.post(path, json=body if body is not None else {},
                       headers={"Idempotency-Key": key or uuid.uuid4().hex})


def subscribe(client, url, events=("*",), key=None):
    return post(client, "/v1/webhooks/subscriptions", {"url": url, "events": list(events)}, key)


@pytest.fixture
def platform(api):
    create_private_key(api.config["SIGNING_KEY"])
    return load_private_key(api.config["SIGNING_KEY"])


@pytest.fixture
def worker(cast, engine, platform):
    """Run one round of the worker for this test's partners."""
    partners = [cast.id(p) for p in ("banka", "skyair", "megamart", "telco")]
    return lambda: deliver_due(sessionmaker(bind=engine, expire_on_commit=False), platform,
                               partners=partners, concurrency=1, timeout=5,
                               dev_targets=True)


def test_subscribe_list_and_disable(cast):
    client = cast["megamart"]
    r = subscribe(client, "https://hooks.megamart.example/pointclear?x=1",
                  ["transaction.voided", "transaction.posted", "transaction.posted"])
    assert r.status_code == 201, r.json
    sub = r.json
    assert sub["id"].startswith("whs_") and len(sub["id"]) == 28
    assert (sub["url"], sub["events"], sub["status"], sub["disabled_at"]) == (
        "https://hooks.megamart.example/pointclear?x=1",
        ["transaction.posted", "transaction.voided"], "active", None)
    assert client.get("/v1/webhooks/subscriptions").json == {"items": [sub],
                                                             "next_cursor": None}
    r = post(client, f"/v1/webhooks/subscriptions/{sub['id']}/disable")
    assert r.status_code == 200 and r.json["status"] == "disabled" and r.json["disabled_at"]
    again = post(client, f"/v1/webhooks/subscriptions/{sub['id']}/disable")
    assert (again.status_code, again.json) == (200, r.json)
    assert client.get("/v1/webhooks/subscriptions").json["items"] == [r.json]


def test_a_subscription_post_is_idempotent(cast):
    first = subscribe(cast["banka"], "https://bank.example/h", key="sub-1")
    again = subscribe(cast["banka"], "https://bank.example/h", key="sub-1")
    assert (again.status_code, again.json["id"]) == (201, first.json["id"])
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(cast["banka"].get("/v1/webhooks/subscriptions").json["items"]) == 1
    other = subscribe(cast["banka"], "https://bank.example/other", key="sub-1")
    assert (other.status_code, other.json["code"]) == (422, "idempotency_key_reused")


@pytest.mark.parametrize("url", [
    "ftp://hooks.example/x", "hooks.example/x", "http:///no-host", "https://user:pw@h.example/",
    "https://token@h.example/", "https://h.example/x#frag", "https://h.example/a b",
    "https://h.example:99999/", "https://hé.example/", "javascript:alert(1)",
    "https://h.example/" + "x" * 2000])
def test_only_plain_http_urls_are_accepted(cast, url):
    r = subscribe(cast["banka"], url)
    assert r.status_code == 422 and r.json["field"] == "url", r.json
    assert r.json["code"] in ("invalid_subscription", "validation_failed")


@pytest.mark.parametrize("events, field", [
    ([], "events"), (["transaction.exploded"], "events.0"), ("transaction.posted", "events"),
    (None, "events")])
def test_event_types_are_known_ones(cast, events, field):
    r = post(cast["banka"], "/v1/webhooks/subscriptions",
             {"url": "https://bank.example/h", "events": events})
    assert (r.status_code, r.json["field"]) == (422, field), r.json


def test_a_partner_has_at_most_ten_active_subscriptions(cast):
    ids = [subscribe(cast["telco"], f"https://t.example/{i}").json["id"] for i in range(10)]
    r = subscribe(cast["telco"], "https://t.example/11")
    assert (r.status_code, r.json["code"]) == (422, "subscription_limit")
    post(cast["telco"], f"/v1/webhooks/subscriptions/{ids[0]}/disable")
    assert subscribe(cast["telco"], "https://t.example/11").status_code == 201


def test_a_partner_sees_and_touches_only_its_own(cast, receiver, worker):
    sub = subscribe(cast["megamart"], f"{receiver.url}/mm").json
    post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                      "points": 100})
    post(cast["megamart"], "/v1/redemptions", {"customer_ref": "mm-1",
                                               "program": cast.id("BANKA"), "points": 10})
    worker()
    (delivery,) = cast["megamart"].get("/v1/webhooks/deliveries").json["items"]
    for other in ("banka", "skyair"):
        client = cast[other]
        assert client.get("/v1/webhooks/subscriptions").json["items"] == []
        assert client.get("/v1/webhooks/deliveries").json["items"] == []
        r = post(client, f"/v1/webhooks/subscriptions/{sub['id']}/disable")
        assert (r.status_code, r.json["code"]) == (404, "subscription_not_found")
        r = post(client, f"/v1/webhooks/deliveries/{delivery['id']}/replay")
        assert (r.status_code, r.json["code"]) == (404, "delivery_not_found")
    r = post(cast["megamart"], "/v1/webhooks/deliveries/not-a-uuid/replay")
    assert (r.status_code, r.json["code"]) == (404, "delivery_not_found")


def test_the_delivery_log_and_a_replay(cast, receiver, worker, platform):
    client = cast["megamart"]
    receiver.fail_first["/mm"] = 1
    sub = subscribe(client, f"{receiver.url}/mm").json
    spent = post(client, "/v1/redemptions", {"customer_ref": "mm-1",
                                             "program": cast.id("BANKA"), "points": 0})
    assert spent.status_code == 422  # refused: no event, no delivery
    post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                       "points": 100})
    spent = post(client, "/v1/redemptions", {"customer_ref": "mm-1",
                                             "program": cast.id("BANKA"), "points": 10}).json
    assert client.get("/v1/webhooks/deliveries").json["items"][0]["state"] == "pending"
    worker()  # the receiver fails this first attempt
    (item,) = client.get("/v1/webhooks/deliveries").json["items"]
    assert (item["state"], item["attempts"], item["last_status"], item["subscription_id"],
            item["event_type"]) == ("pending", 1, 500, sub["id"], "transaction.posted")
    assert item["next_attempt_at"] and item["delivered_at"] is None
    (attempt,) = item["attempt_log"]
    assert (attempt["status"], attempt["error"]) == (500, "http_500")
    r = post(client, f"/v1/webhooks/deliveries/{item['id']}/replay")
    assert (r.status_code, r.json["state"], r.json["attempts"]) == (202, "pending", 0)
    worker()
    (item,) = client.get("/v1/webhooks/deliveries", {"event_id": item["event_id"]}).json["items"]
    assert (item["state"], item["last_status"], [a["status"] for a in item["attempt_log"]]) \
        == ("delivered", 204, [500, 204])
    assert item["next_attempt_at"] is None and item["delivered_at"]
    got = receiver.requests[-1]
    assert got.event["data"]["id"] == spent["id"] and got.event["id"] == item["event_id"]
    # The key the API publishes verifies what the worker signed.
    (key,) = client.get("/v1/platform/keys").json["items"]
    assert key == {"key_id": key_id_of(platform.public_key()), "algorithm": "ed25519",
                   "public_key": platform.public_key().public_bytes_raw().hex()}
    assert got.headers["Pointclear-Webhook-Key-Id"] == key["key_id"]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key["public_key"]))
    assert verify_webhook(public, got.headers, got.body)


def test_the_delivery_log_filters_and_pages(cast, receiver, worker):
    client = cast["megamart"]
    subscribe(client, f"{receiver.url}/mm")
    post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                       "points": 100})
    for _ in range(3):
        post(client, "/v1/redemptions", {"customer_ref": "mm-1", "program": cast.id("BANKA"),
                                         "points": 1})
    receiver.fail_first["/mm"] = 1
    worker()
    everything = client.get("/v1/webhooks/deliveries").json["items"]
    assert len(everything) == 3 and [d["id"] for d in everything] == sorted(
        (d["id"] for d in everything), reverse=True)
    states = {state: [d["id"] for d in client.get("/v1/webhooks/deliveries",
                                                  {"state": state}).json["items"]]
              for state in ("pending", "delivered", "failed")}
    assert (len(states["pending"]), len(states["delivered"]), states["failed"]) == (1, 2, [])
    first = client.get("/v1/webhooks/deliveries", {"limit": 2}).json
    rest = client.get("/v1/webhooks/deliveries", {"limit": 2,
                                                   "cursor": first["next_cursor"]}).json
    assert [d["id"] for d in first["items"] + rest["items"]] == [d["id"] for d in everything]
    assert rest["next_cursor"] is None
    for query, field in (({"state": "lost"}, "state"), ({"event_id": "x"}, "event_id"),
                         ({"cursor": "!!"}, "cursor"), ({"limit": 201}, "limit")):
        r = client.get("/v1/webhooks/deliveries", query)
        assert (r.status_code, r.json["field"]) == (422, field)


def test_platform_keys_need_a_signature_and_a_key(api, cast):
    assert api.test_client().get("/v1/platform/keys").status_code == 401
    r = cast["banka"].get("/v1/platform/keys")
    assert (r.status_code, r.json["code"]) == (503, "signing_key_missing")
    assert r.mimetype == "application/problem+json"


def test_a_malformed_key_file_is_a_503_not_a_500(api, cast):
    with open(api.config["SIGNING_KEY"], "wb") as out:
        out.write(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    r = cast["banka"].get("/v1/platform/keys")
    assert (r.status_code, r.mimetype, r.json["code"]) == (
        503, "application/problem+json", "signing_key_invalid")


def test_the_platform_key_is_read_once_per_process(api, cast, platform):
    first = cast["banka"].get("/v1/platform/keys")
    assert first.status_code == 200
    with open(api.config["SIGNING_KEY"], "wb") as out:  # nobody reads it again
        out.write(b"garbage")
    again = cast["megamart"].get("/v1/platform/keys")
    assert (again.status_code, again.json) == (200, first.json)


def test_moving_a_subscription_keeps_its_pending_deliveries(cast, receiver, worker):
    client = cast["megamart"]
    receiver.fail_first["/old"] = 1
    sub = subscribe(client, f"{receiver.url}/old").json
    post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                       "points": 100})
    post(client, "/v1/redemptions", {"customer_ref": "mm-1", "program": cast.id("BANKA"),
                                     "points": 10})
    worker()  # the old endpoint fails
    (item,) = client.get("/v1/webhooks/deliveries").json["items"]
    assert (item["state"], item["last_error"]) == ("pending", "http_500")
    path = f"/v1/webhooks/subscriptions/{sub['id']}/url"
    r = post(client, path, {"url": f"{receiver.url}/new"}, key="move-1")
    assert (r.status_code, r.json["id"], r.json["url"], r.json["status"]) == (
        200, sub["id"], f"{receiver.url}/new", "active")
    again = post(client, path, {"url": f"{receiver.url}/new"}, key="move-1")
    assert (again.status_code, again.json) == (200, r.json)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.get("/v1/webhooks/subscriptions").json["items"] == [r.json]
    worker()
    (item,) = client.get("/v1/webhooks/deliveries").json["items"]
    assert (item["state"], [a["status"] for a in item["attempt_log"]]) == (
        "delivered", [500, 204])
    assert [got.path for got in receiver.requests] == ["/old", "/new"]
    other = post(cast["banka"], path, {"url": "https://bank.example/x"})
    assert (other.status_code, other.json["code"]) == (404, "subscription_not_found")
    for body, field in (({"url": "ftp://x.example/"}, "url"), ({}, "url"),
                        ({"url": "https://x.example/", "events": []}, "events")):
        r = post(client, path, body)
        assert (r.status_code, r.json["field"]) == (422, field), body
    post(client, f"/v1/webhooks/subscriptions/{sub['id']}/disable")
    r = post(client, path, {"url": "https://x.example/"})
    assert (r.status_code, r.json["code"]) == (422, "subscription_disabled")


def test_no_replay_while_an_attempt_is_in_flight(cast, engine):
    from datetime import timedelta

    from app.clearing import webhook_queue
    from ledger.types import utcnow
    from ledger.unit_of_work import run

    client = cast["megamart"]
    subscribe(client, "https://hooks.megamart.example/in")
    post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                       "points": 100})
    post(client, "/v1/redemptions", {"customer_ref": "mm-1", "program": cast.id("BANKA"),
                                     "points": 10})
    (claim,) = run(sessionmaker(bind=engine), lambda s: webhook_queue.claim_due(
        s, now=utcnow(), limit=5, lease=timedelta(minutes=5), partners=[cast.id("megamart")]))
    path = f"/v1/webhooks/deliveries/{claim.delivery_id}/replay"
    r = post(client, path, key="replay-1")
    assert (r.status_code, r.json["code"], r.json["field"]) == (
        409, "delivery_in_progress", "delivery_id")
    assert r.mimetype == "application/problem+json"
    run(sessionmaker(bind=engine), lambda s: webhook_queue.record_attempt(
        s, claim, status=503, error="http_503", duration_ms=10, now=utcnow()))
    r = post(client, path, key="replay-1")  # a conflict of the moment is not kept
    assert (r.status_code, r.json["state"], r.json["attempts"]) == (202, "pending", 0)


def test_the_openapi_document_describes_the_webhooks(api):
    from app.clearing.events import EVENT_TYPES

    spec = api.test_client().get("/v1/openapi.json").json
    assert set(spec["webhooks"]) == set(EVENT_TYPES)
    hook = spec["webhooks"]["transaction.posted"]["post"]
    assert {p["name"] for p in hook["parameters"]} == {
        "Pointclear-Webhook-Id", "Pointclear-Webhook-Timestamp", "Pointclear-Webhook-Key-Id",
        "Pointclear-Webhook-Signature"}
    event = spec["components"]["schemas"]["WebhookEvent"]
    assert set(event["properties"]) == {"id", "type", "created_at", "partner", "data"}
