"""What the review and the first-user trial found: personal data at rest and between
partners, what a member sees, authorisations that expired but were never swept, and
refusals that name the request's own fields."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from app.api.models import RequestRecord
from app.clearing import redemptions
from ledger.types import utcnow


def post(client, path, json=None, key=None):
    return client.post(path, json=json if json is not None else {},
                       headers={"Idempotency-Key": key or uuid.uuid4().hex})


def stored_responses(engine, partner_id):
    with sessionmaker(bind=engine)() as session:
        return session.scalars(select(RequestRecord.response).where(
            RequestRecord.partner_id == partner_id)).all()


def test_contact_data_is_never_kept_in_clear_and_stays_with_its_partner(cast, engine):
    banka, megamart = cast["banka"], cast["megamart"]
    contact = {"name": "Li Wei", "email": "li.wei@example.com"}
    r = post(banka, "/v1/members", {"customer_ref": "c-77", "contact": contact}, key="e-1")
    assert r.status_code == 201 and r.json["contact"] == contact
    again = post(banka, "/v1/members", {"customer_ref": "c-77", "contact": contact}, key="e-1")
    assert again.json == r.json and again.headers["Idempotent-Replayed"] == "true"
    token = post(banka, "/v1/members/c-77/tokens").json["token"]
    assert not any("li.wei" in text or token in text
                   for text in stored_responses(engine, cast.id("banka")))
    # MegaMart links the member with the token: it does not get BankA's contact data,
    # cannot overwrite it, and cannot reuse the token for a second link.
    linked = post(megamart, "/v1/members", {"customer_ref": "mm-77", "member_token": token})
    assert linked.status_code == 201 and linked.json["contact"] is None
    assert megamart.get("/v1/members/mm-77").json["contact"] is None
    assert banka.get("/v1/members/c-77").json["contact"] == contact
    r = post(cast["skyair"], "/v1/members", {"customer_ref": "sa-77", "member_token": token})
    assert (r.status_code, r.json["code"]) == (422, "invalid_member_token")


def test_a_member_sees_their_points_not_the_partners_terms(cast):
    post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                       "points": 1000})
    post(cast["megamart"], "/v1/redemptions", {"customer_ref": "mm-1",
                                               "program": cast.id("BANKA"), "points": 300,
                                               "reference": "till-3"})
    token = post(cast["telco"], "/v1/members/t-1/tokens").json["token"]
    mine = cast["telco"].client.get("/v1/me/transactions",
                                    headers={"Authorization": f"Bearer {token}"}).json
    redemption = next(op for op in mine["items"] if op["kind"] == "redemption")
    assert redemption["points"] == 300 and redemption["partner"] == cast.id("megamart")
    for hidden in ("money", "agreement_id", "terms_version", "reference", "counterparty"):
        assert hidden not in redemption


def test_an_expired_authorisation_holds_nothing_even_before_the_sweep(cast, engine):
    banka, megamart, BANKA = cast["banka"], cast["megamart"], cast.id("BANKA")
    post(banka, "/v1/issues", {"customer_ref": "c-1", "program": BANKA, "points": 500})
    with sessionmaker(bind=engine)() as session:  # authorised two hours ago, for one hour
        redemptions.authorise(session, cast.id("megamart"), "mm-1", BANKA, 400,
                              expires_in=timedelta(hours=1),
                              now=utcnow() - timedelta(hours=2))
        session.commit()
    [balance] = [b for b in banka.get("/v1/members/c-1/balances").json["balances"]
                 if b["program"] == BANKA]
    assert (balance["available"], balance["pending"]) == (500, 0)
    # The next spend voids the expired authorisation itself and may use its points.
    r = post(megamart, "/v1/redemptions", {"customer_ref": "mm-1", "program": BANKA,
                                           "points": 450})
    assert r.status_code == 201, r.json
    auths = megamart.get("/v1/transactions", query={"kind": "authorisation"}).json["items"]
    assert [a["status"] for a in auths] == ["expired"]


def test_capture_and_void_refusals_name_the_request_fields(cast):
    megamart, BANKA = cast["megamart"], cast.id("BANKA")
    post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": BANKA, "points": 500})
    auth = post(megamart, "/v1/authorisations", {"customer_ref": "mm-1", "program": BANKA,
                                                 "points": 300}).json
    r = post(megamart, f"/v1/authorisations/{auth['id']}/capture", {"points": 301})
    assert (r.status_code, r.json["code"], r.json["field"]) == (
        422, "capture_exceeds_pending", "points")
    assert "member:" not in r.json["detail"]
    assert post(megamart, f"/v1/authorisations/{auth['id']}/capture", {"points": 200}
                ).status_code == 201
    r = post(megamart, f"/v1/authorisations/{auth['id']}/void")
    assert (r.status_code, r.json["code"], r.json["field"]) == (422, "not_pending",
                                                                "operation_id")


def test_a_customer_ref_must_be_usable_in_a_path(cast):
    for ref in ("a/b", " c-9", "c-9 "):
        r = post(cast["banka"], "/v1/members", {"customer_ref": ref})
        assert (r.status_code, r.json["code"], r.json["field"]) == (
            422, "invalid_member", "customer_ref")
