"""DESIGN.md's worked example through the HTTP API, as partners would drive it."""

from __future__ import annotations

import uuid


def post(client, path, json=None, key=None):
    return client.post(path, json=json if json is not None else {},
                       headers={"Idempotency-Key": key or uuid.uuid4().hex})


def test_the_worked_example_over_http(cast):
    banka, megamart, skyair = cast["banka"], cast["megamart"], cast["skyair"]
    BANKA, SKYMILES = cast.id("BANKA"), cast.id("SKYMILES")

    r = post(banka, "/v1/issues", {"customer_ref": "c-1", "program": BANKA, "points": 5000})
    assert r.status_code == 201, r.json
    assert (r.json["kind"], r.json["points"], r.json["customer_ref"]) == ("issue", 5000, "c-1")

    r = post(megamart, "/v1/redemptions", {"customer_ref": "mm-1", "program": BANKA,
                                           "points": 2000})
    assert r.status_code == 201, r.json
    spent = r.json
    assert spent["money"] == {"currency": "CNY", "gross": 2000, "fee": 40, "net": 1960}
    assert spent["counterparty"] == cast.id("banka") and spent["terms_version"] == 1

    r = post(megamart, f"/v1/redemptions/{spent['id']}/refunds")
    assert r.status_code == 201, r.json
    assert (r.json["kind"], r.json["points"], r.json["related_id"]) == (
        "refund", 2000, spent["id"])

    r = post(skyair, "/v1/conversions", {"customer_ref": "sa-1", "source": BANKA,
                                         "target": SKYMILES, "points": 1000})
    assert r.status_code == 201, r.json
    assert r.json["target_points"] == 400
    assert r.json["money"] == {"currency": "CNY", "gross": 1000, "fee": 200, "net": 800}

    r = banka.get("/v1/members/c-1/balances")
    assert r.status_code == 200, r.json
    # BankA sees its own program and those it has an agreement on (SKYMILES).
    by_program = {b["program"]: b for b in r.json["balances"]}
    assert set(by_program) == {BANKA, SKYMILES}
    bank_balance = by_program[BANKA]
    assert (bank_balance["program"], bank_balance["available"], bank_balance["value"]) == (
        BANKA, 4000, 4000)
    assert bank_balance["next_expiries"][0]["points"] == 4000

    r = post(banka, "/v1/members/c-1/tokens", {"ttl_seconds": 300})
    assert r.status_code == 201, r.json
    token = r.json["token"]
    me = banka.client.get("/v1/me/balances", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.json
    assert {(b["program"], b["available"]) for b in me.json["balances"]} == {
        (BANKA, 4000), (SKYMILES, 400)}
    mine = banka.client.get("/v1/me/transactions", headers={"Authorization": f"Bearer {token}"})
    assert [t["kind"] for t in mine.json["items"]] == [
        "conversion", "refund", "redemption", "issue"]

    r = megamart.get("/v1/transactions", query={"customer_ref": "mm-1"})
    assert r.status_code == 200, r.json
    assert [t["kind"] for t in r.json["items"]] == ["refund", "redemption"]
