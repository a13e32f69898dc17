"""Each resource method calls its endpoint with its body and reads the answer into the
SDK's dataclasses."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from partner_sdk import Balances, Link, MemberClient, MemberToken, Operation, public_key_hex

from .conftest import BASE_URL, ok

T = "2026-01-15T09:30:00+00:00"
OP = {"id": "0190a-op", "kind": "redemption", "status": "posted", "partner": "megamart",
      "counterparty": "banka", "member_id": "m-1", "customer_ref": "mm-1", "program": "BANKA",
      "points": 2000, "target_program": None, "target_points": None,
      "money": {"currency": "CNY", "gross": 2000, "fee": 40, "net": 1960},
      "agreement_id": "agr-1", "terms_version": 1, "related_id": None, "reference": "till 4",
      "expires_at": None, "created_at": T}
LINK = {"customer_ref": "c-1", "member_id": "m-1", "status": "active",
        "contact": {"name": "Li"}, "linked_at": T}

POSTS = [
    (lambda c: c.points.issue("c-1", "BANKA", 5000), "/v1/issues",
     {"customer_ref": "c-1", "program": "BANKA", "points": 5000}),
    (lambda c: c.points.clawback("op-1"), "/v1/issues/op-1/clawbacks", {}),
    (lambda c: c.points.clawback("op-1", 10), "/v1/issues/op-1/clawbacks", {"points": 10}),
    (lambda c: c.redemptions.redeem("mm-1", "BANKA", 20, reference="r"), "/v1/redemptions",
     {"customer_ref": "mm-1", "program": "BANKA", "points": 20, "reference": "r"}),
    (lambda c: c.redemptions.refund("op-1", 5), "/v1/redemptions/op-1/refunds", {"points": 5}),
    (lambda c: c.redemptions.authorise("mm-1", "BANKA", 20, expires_in_seconds=600),
     "/v1/authorisations",
     {"customer_ref": "mm-1", "program": "BANKA", "points": 20, "expires_in_seconds": 600}),
    (lambda c: c.redemptions.capture("op-1"), "/v1/authorisations/op-1/capture", {}),
    (lambda c: c.redemptions.void("op-1"), "/v1/authorisations/op-1/void", {}),
    (lambda c: c.conversions.convert("sa-1", "BANKA", "SKYMILES", 1000), "/v1/conversions",
     {"customer_ref": "sa-1", "source": "BANKA", "target": "SKYMILES", "points": 1000}),
]


@pytest.mark.parametrize("call, path, body", POSTS)
def test_operations_post_their_body_and_read_the_operation(client, scripted, call, path, body):
    scripted.then(ok(OP, 201))
    op = call(client)
    sent = scripted.requests[0]
    assert (sent.method, sent.url.raw_path.decode()) == ("POST", path)
    assert json.loads(sent.content) == body
    assert isinstance(op, Operation) and op.raw == OP
    assert op.money is not None and (op.money.gross, op.money.fee, op.money.net) == (2000, 40, 1960)
    assert op.created_at == datetime(2026, 1, 15, 9, 30, tzinfo=timezone.utc)


KEYED = [lambda c, k: c.points.issue("c", "P", 1, idempotency_key=k),
         lambda c, k: c.points.clawback("o", idempotency_key=k),
         lambda c, k: c.points.import_points("P", [], idempotency_key=k),
         lambda c, k: c.redemptions.redeem("c", "P", 1, idempotency_key=k),
         lambda c, k: c.redemptions.refund("o", idempotency_key=k),
         lambda c, k: c.redemptions.authorise("c", "P", 1, idempotency_key=k),
         lambda c, k: c.redemptions.capture("o", idempotency_key=k),
         lambda c, k: c.redemptions.void("o", idempotency_key=k),
         lambda c, k: c.conversions.convert("c", "P", "Q", 1, idempotency_key=k),
         lambda c, k: c.members.link("c", idempotency_key=k),
         lambda c, k: c.members.create_token("c", idempotency_key=k),
         lambda c, k: c.webhooks.subscribe("https://x.test/h", ["*"], idempotency_key=k),
         lambda c, k: c.webhooks.disable("whs_1", idempotency_key=k),
         lambda c, k: c.webhooks.replay("d-1", idempotency_key=k)]


def test_every_post_takes_an_idempotency_key(client, scripted):
    scripted.then(*[ok({**OP, **LINK, "items": [], "token": "mt_x"}, 201)] * len(KEYED))
    for n, call in enumerate(KEYED):
        call(client, f"key-{n}")
    assert [r.headers["Idempotency-Key"] for r in scripted.requests] == [
        f"key-{n}" for n in range(len(KEYED))]


def test_import_sends_lines_with_instants_and_returns_operations(client, scripted):
    scripted.then(ok({"items": [OP, {**OP, "id": "op-2"}]}, 201))
    earned = datetime(2025, 6, 1, tzinfo=timezone.utc)
    ops = client.points.import_points("BANKA", [
        {"customer_ref": "c-1", "points": 100, "earned_at": earned},
        {"customer_ref": "c-2", "points": 50, "earned_at": "2025-07-01T00:00:00Z",
         "reference": "legacy-9"}], idempotency_key="import-2025-06")
    assert [o.id for o in ops] == ["0190a-op", "op-2"]
    assert scripted.json_of(0) == {"program": "BANKA", "lines": [
        {"customer_ref": "c-1", "points": 100, "earned_at": "2025-06-01T00:00:00+00:00"},
        {"customer_ref": "c-2", "points": 50, "earned_at": "2025-07-01T00:00:00Z",
         "reference": "legacy-9"}]}


def test_members(client, scripted):
    scripted.then(ok(LINK, 201), ok(LINK, 201), ok(LINK),
                  ok({"token": "mt_secret", "expires_at": T, "token_type": "Bearer"}, 201),
                  ok({"customer_ref": "c-1", "balances": [
                      {"program": "BANKA", "program_name": "Bank A Points", "available": 4000,
                       "pending": 20, "expired_unbooked": 0, "value": 4000, "currency": "CNY",
                       "next_expiries": [{"expires_at": T, "points": 4000}]}]}))
    link = client.members.link("c-1", contact={"name": "Li"})
    assert isinstance(link, Link) and link.contact == {"name": "Li"}
    assert scripted.json_of(0) == {"customer_ref": "c-1", "contact": {"name": "Li"}}
    client.members.link("mm-9", member_token=MemberToken("mt_other", None))
    assert scripted.json_of(1) == {"customer_ref": "mm-9", "member_token": "mt_other"}
    assert client.members.get("c-1").member_id == "m-1"
    token = client.members.create_token("c-1", ttl_seconds=300)
    assert token.token == "mt_secret" and "mt_secret" not in repr(token)
    assert scripted.json_of(3) == {"ttl_seconds": 300}
    balances = client.members.balances("c-1")
    assert isinstance(balances, Balances) and balances.customer_ref == "c-1"
    assert balances["BANKA"].available == 4000 and balances["BANKA"].next_expiries[0].points == 4000
    assert [r.url.raw_path for r in scripted.requests] == [
        b"/v1/members", b"/v1/members", b"/v1/members/c-1", b"/v1/members/c-1/tokens",
        b"/v1/members/c-1/balances"]


def test_transaction_get_reads_postings(client, scripted):
    postings = [{"account": "member:m-1:BANKA", "side": "debit", "amount": 20, "unit": "BANKA"}]
    scripted.then(ok({**OP, "postings": postings}))
    op = client.transactions.get("0190a-op")
    assert scripted.requests[0].url.raw_path == b"/v1/transactions/0190a-op"
    assert op.postings[0].account == "member:m-1:BANKA" and op.postings[0].amount == 20


def test_catalog_reads(client, scripted):
    scripted.then(ok({"items": [{"code": "BANKA"}], "next_cursor": None}),
                  ok({"items": [{"id": "agr-1"}], "next_cursor": None}))
    assert [p["code"] for p in client.programs.list()] == ["BANKA"]
    assert [a["id"] for a in client.agreements.list()] == ["agr-1"]


def test_platform_keys_are_public_keys_by_id(client, scripted, private_key):
    hex_key = public_key_hex(private_key)
    scripted.then(ok({"items": [{"key_id": "pk_1", "public_key": hex_key,
                                 "algorithm": "ed25519"}]}))
    keys = client.platform_keys()
    assert list(keys) == ["pk_1"] and public_key_hex(keys["pk_1"]) == hex_key
    assert scripted.requests[0].url.raw_path == b"/v1/platform/keys"


def test_member_client_uses_a_bearer_token_and_no_signature(scripted):
    scripted.then(ok({"member_id": "m-1", "balances": []}),
                  ok({"items": [{**OP, "money": None}], "next_cursor": "n"}),
                  ok({"items": [], "next_cursor": None}))
    token = MemberToken("mt_abc", None)
    with MemberClient(token, base_url=BASE_URL, transport=scripted.transport) as member:
        assert member.balances().member_id == "m-1"
        assert [t.money for t in member.transactions(kind="redemption")] == [None]
    for sent in scripted.requests:
        assert sent.headers["Authorization"] == "Bearer mt_abc"
        assert "Pointclear-Signature" not in sent.headers
    assert scripted.requests[1].url.raw_path == b"/v1/me/transactions?kind=redemption"


def test_path_parameters_cannot_escape_their_segment(client, scripted):
    scripted.then(ok(OP, 201))
    client.redemptions.refund("../issues/x")
    assert scripted.requests[0].url.raw_path == b"/v1/redemptions/..%2Fissues%2Fx/refunds"
    with pytest.raises(ValueError):
        client.members.get("")


def test_webhook_subscriptions_and_the_delivery_log(client, scripted):
    sub = {"id": "whs_1", "url": "https://partner.test/hooks", "events": ["transaction.posted"],
           "status": "active", "created_at": T, "disabled_at": None}
    delivery = {"id": "d-1", "event_id": "e-1", "state": "failed", "attempt_log": []}
    scripted.then(ok(sub, 201), ok({"items": [sub], "next_cursor": None}),
                  ok({**sub, "status": "disabled"}),
                  ok({"items": [delivery], "next_cursor": None}), ok(delivery, 202))
    assert client.webhooks.subscribe(sub["url"], ["transaction.posted"]) == sub
    assert scripted.json_of(0) == {"url": sub["url"], "events": ["transaction.posted"]}
    assert [s["id"] for s in client.webhooks.subscriptions()] == ["whs_1"]
    assert client.webhooks.disable("whs_1")["status"] == "disabled"
    assert [d["id"] for d in client.webhooks.deliveries(state="failed", limit=10)] == ["d-1"]
    assert client.webhooks.replay("d-1")["id"] == "d-1"
    assert [(r.method, r.url.raw_path) for r in scripted.requests] == [
        ("POST", b"/v1/webhooks/subscriptions"), ("GET", b"/v1/webhooks/subscriptions"),
        ("POST", b"/v1/webhooks/subscriptions/whs_1/disable"),
        ("GET", b"/v1/webhooks/deliveries?state=failed&limit=10"),
        ("POST", b"/v1/webhooks/deliveries/d-1/replay")]
