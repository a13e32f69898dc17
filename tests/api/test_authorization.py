"""Who may see and touch what, over HTTP (DESIGN.md "Security"): a partner sees only its own
operations, members' links and programs; redeeming another partner's points needs an
agreement; members read only themselves, with a live member token; suspended partners,
frozen members and revoked keys are refused."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import sessionmaker

from app.clearing import members, partners
from ledger.types import utcnow


def post(client, path, json=None, key=None):
    return client.post(path, json=json if json is not None else {},
                       headers={"Idempotency-Key": key or uuid.uuid4().hex})


def assert_problem(r, status, code, field=None):
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/problem+json"
    assert (r.json["status"], r.json["code"]) == (status, code), r.json
    if field is not None:
        assert r.json.get("field") == field, r.json
    return r.json


def ok(r, status=201) -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    return r.json


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def balances_of(client, ref) -> dict:
    r = ok(client.get(f"/v1/members/{ref}/balances"), 200)
    return {b["program"]: (b["available"], b["pending"]) for b in r["balances"]}


def ids_of(client, **query) -> list:
    return [op["id"] for op in ok(client.get("/v1/transactions", query=query or None),
                                  200)["items"]]


def in_committed_session(engine, work):
    with sessionmaker(bind=engine)() as session:
        result = work(session)
        session.commit()
        return result


@pytest.fixture
def booked(cast) -> dict:
    """BankA issues 5,000 to the member; MegaMart redeems 2,000 and authorises 500."""
    BANKA = cast.id("BANKA")
    issue = ok(post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": BANKA,
                                                  "points": 5000}))
    spent = ok(post(cast["megamart"], "/v1/redemptions", {"customer_ref": "mm-1",
                                                          "program": BANKA, "points": 2000}))
    held = ok(post(cast["megamart"], "/v1/authorisations", {"customer_ref": "mm-1",
                                                            "program": BANKA, "points": 500}))
    return {"issue": issue, "redemption": spent, "authorisation": held}


# --- reading operations ---------------------------------------------------------------------

def test_only_the_parties_read_an_operation(cast, booked):
    spent = booked["redemption"]["id"]
    for outsider in ("telco", "skyair"):
        assert_problem(cast[outsider].get(f"/v1/transactions/{spent}"), 404,
                       "operation_not_found", "operation_id")
    # The redeemer and the program's owner (the counterparty paying for it) both see it,
    # each with its own customer reference for the member.
    mine = ok(cast["megamart"].get(f"/v1/transactions/{spent}"), 200)
    theirs = ok(cast["banka"].get(f"/v1/transactions/{spent}"), 200)
    assert (mine["customer_ref"], theirs["customer_ref"]) == ("mm-1", "c-1")
    assert theirs["counterparty"] == cast.id("banka") and theirs["points"] == 2000
    assert theirs["money"] == {"currency": "CNY", "gross": 2000, "fee": 40, "net": 1960}
    # An issue has no counterparty: only its issuer reads it.
    issue = booked["issue"]["id"]
    assert_problem(cast["megamart"].get(f"/v1/transactions/{issue}"), 404,
                   "operation_not_found")


def test_a_partner_lists_only_operations_it_is_party_to(cast, booked):
    issue, spent, held = (booked[k]["id"] for k in ("issue", "redemption", "authorisation"))
    assert ids_of(cast["telco"]) == [] and ids_of(cast["skyair"]) == []
    assert ids_of(cast["megamart"]) == [held, spent]
    assert ids_of(cast["banka"]) == [held, spent, issue]


# --- changing other partners' operations -----------------------------------------------------

@pytest.mark.parametrize("actor, action, status, code", [
    ("banka", "refund", 403, "not_permitted"),
    ("telco", "refund", 404, "operation_not_found"),
    ("skyair", "refund", 404, "operation_not_found"),
    ("banka", "capture", 403, "not_permitted"),
    ("telco", "capture", 404, "operation_not_found"),
    ("banka", "void", 403, "not_permitted"),
    ("telco", "void", 404, "operation_not_found"),
    ("megamart", "clawback", 404, "operation_not_found"),
    ("telco", "clawback", 404, "operation_not_found"),
])
def test_a_partner_cannot_change_another_partners_operation(cast, booked, actor, action,
                                                            status, code):
    path = {"refund": f"/v1/redemptions/{booked['redemption']['id']}/refunds",
            "capture": f"/v1/authorisations/{booked['authorisation']['id']}/capture",
            "void": f"/v1/authorisations/{booked['authorisation']['id']}/void",
            "clawback": f"/v1/issues/{booked['issue']['id']}/clawbacks"}[action]
    assert_problem(post(cast[actor], path), status, code, "operation_id")
    # Nothing moved: 5,000 - 2,000 spent - 500 held, the hold still pending.
    assert balances_of(cast["banka"], "c-1") == {cast.id("BANKA"): (2500, 500)}
    held = ok(cast["megamart"].get(f"/v1/transactions/{booked['authorisation']['id']}"), 200)
    assert held["status"] == "pending"
    assert len(ids_of(cast["banka"])) == 3


def test_the_booking_partner_may_change_its_own_operation(cast, booked):
    """The positive control of the matrix above."""
    megamart = cast["megamart"]
    assert ok(post(megamart, f"/v1/redemptions/{booked['redemption']['id']}/refunds",
                   {"points": 100}))["points"] == 100
    assert ok(post(megamart, f"/v1/authorisations/{booked['authorisation']['id']}/void"))[
        "kind"] == "void"
    assert ok(post(cast["banka"], f"/v1/issues/{booked['issue']['id']}/clawbacks",
                   {"points": 100}))["points"] == 100
    assert balances_of(cast["banka"], "c-1") == {cast.id("BANKA"): (3000, 0)}


# --- issuing and redeeming other partners' programs --------------------------------------------

@pytest.mark.parametrize("issuer, ref, program", [
    ("megamart", "mm-1", "BANKA"),
    ("skyair", "sa-1", "BANKA"),
    ("banka", "c-1", "SKYMILES"),
    ("megamart", "mm-1", "COALITION"),  # only an issuer issues coalition points
])
def test_a_partner_issues_only_its_own_program(cast, issuer, ref, program):
    r = post(cast[issuer], "/v1/issues", {"customer_ref": ref, "program": cast.id(program),
                                          "points": 100})
    assert_problem(r, 403, "not_permitted", "program")
    assert ids_of(cast[issuer]) == []
    # The member holds nothing of it.
    assert balances_of(cast["banka"], "c-1") == {}


def test_an_issuer_issues_coalition_points(cast):
    r = ok(post(cast["skyair"], "/v1/issues", {"customer_ref": "sa-1",
                                               "program": cast.id("COALITION"),
                                               "points": 100}))
    assert (r["points"], r["money"]["gross"]) == (100, 100)


@pytest.mark.parametrize("redeemer, ref", [("telco", "t-1"), ("skyair", "sa-1")])
@pytest.mark.parametrize("path", ["/v1/redemptions", "/v1/authorisations"])
def test_redeeming_without_an_agreement_is_refused(cast, booked, redeemer, ref, path):
    r = post(cast[redeemer], path, {"customer_ref": ref, "program": cast.id("BANKA"),
                                    "points": 100})
    assert_problem(r, 422, "no_agreement", "program")
    assert ids_of(cast[redeemer]) == []
    assert balances_of(cast["banka"], "c-1") == {cast.id("BANKA"): (2500, 500)}


def test_a_program_owner_redeems_its_own_points_without_money(cast, booked):
    r = ok(post(cast["banka"], "/v1/redemptions", {"customer_ref": "c-1",
                                                   "program": cast.id("BANKA"),
                                                   "points": 100}))
    assert (r["points"], r["money"], r["counterparty"]) == (100, None, None)


def test_a_partner_converts_only_into_or_out_of_its_own_program(cast, booked):
    r = post(cast["telco"], "/v1/conversions", {"customer_ref": "t-1",
                                                "source": cast.id("BANKA"),
                                                "target": cast.id("SKYMILES"),
                                                "points": 1000})
    assert_problem(r, 403, "not_permitted", "source")
    assert balances_of(cast["banka"], "c-1") == {cast.id("BANKA"): (2500, 500)}


# --- customer references are the partner's own ----------------------------------------------

def test_a_partner_cannot_use_a_customer_ref_it_has_not_linked(cast, booked):
    megamart, BANKA = cast["megamart"], cast.id("BANKA")
    # "c-1" is BankA's reference for the member; MegaMart knows them as "mm-1".
    for path, body in (("/v1/redemptions", {"program": BANKA, "points": 1}),
                       ("/v1/authorisations", {"program": BANKA, "points": 1}),
                       ("/v1/issues", {"program": BANKA, "points": 1}),
                       ("/v1/members/c-1/tokens", None)):
        if body is not None:
            body["customer_ref"] = "c-1"
        assert_problem(post(megamart, path, body), 404, "member_not_found", "customer_ref")
    for path in ("/v1/members/c-1", "/v1/members/c-1/balances"):
        assert_problem(megamart.get(path), 404, "member_not_found", "customer_ref")
    assert_problem(megamart.get("/v1/transactions", query={"customer_ref": "c-1"}), 404,
                   "member_not_found", "customer_ref")
    assert balances_of(cast["banka"], "c-1") == {BANKA: (2500, 500)}


def test_members_lists_only_the_partners_own_links(cast):
    assert [m["customer_ref"] for m in ok(cast["megamart"].get("/v1/members"), 200)["items"]
            ] == ["mm-1"]
    link = ok(cast["megamart"].get("/v1/members/mm-1"), 200)
    assert (link["customer_ref"], link["member_id"]) == ("mm-1", cast.world.member_id)


def test_balances_show_only_programs_the_partner_is_party_to(cast, booked):
    # The member holds BANKA; Telco has no agreement on it, so it sees no balance.
    assert balances_of(cast["telco"], "t-1") == {}
    assert balances_of(cast["megamart"], "mm-1") == {cast.id("BANKA"): (2500, 500)}


# --- member tokens ------------------------------------------------------------------------

def _token(cast, ref="c-1") -> str:
    return ok(post(cast["banka"], f"/v1/members/{ref}/tokens", {"ttl_seconds": 300}))["token"]


@pytest.mark.parametrize("path", ["/v1/me/balances", "/v1/me/transactions"])
@pytest.mark.parametrize("authorization, code", [
    (None, "member_token_missing"),
    ("", "member_token_missing"),
    ("Bearer", "member_token_missing"),
    ("Bearer ", "member_token_missing"),
    ("Basic bXQ6eA==", "member_token_missing"),
    ("Bearer mt_not-a-token-we-issued", "invalid_member_token"),
    ("Bearer not-even-shaped-like-one", "invalid_member_token"),
    ("Bearer mt_" + "x" * 200, "invalid_member_token"),
])
def test_me_needs_a_member_token(cast, path, authorization, code):
    headers = {} if authorization is None else {"Authorization": authorization}
    r = cast["banka"].client.get(path, headers=headers)
    assert_problem(r, 401, code, "Authorization")


def test_me_challenges_with_the_bearer_scheme(cast):
    r = cast["banka"].client.get("/v1/me/balances")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_expired_member_token_is_refused(cast, engine):
    now = utcnow()

    def issue(session, issued_at):
        return members.issue_token(session, cast.id("banka"), "c-1",
                                   ttl=timedelta(minutes=1), now=issued_at)
    expired, _ = in_committed_session(engine, lambda s: issue(s, now - timedelta(hours=2)))
    live, _ = in_committed_session(engine, lambda s: issue(s, now))
    client = cast["banka"].client
    for path in ("/v1/me/balances", "/v1/me/transactions"):
        assert_problem(client.get(path, headers=bearer(expired)), 401,
                       "invalid_member_token", "Authorization")
        assert client.get(path, headers=bearer(live)).status_code == 200


def test_a_member_token_does_not_open_partner_endpoints(cast, booked):
    token = _token(cast)
    client = cast["banka"].client
    for path in ("/v1/transactions", "/v1/members", "/v1/members/c-1/balances",
                 f"/v1/transactions/{booked['issue']['id']}", "/v1/partner"):
        assert_problem(client.get(path, headers=bearer(token)), 401, "signature_missing")
    r = client.post("/v1/issues", json={"customer_ref": "c-1", "program": cast.id("BANKA"),
                                        "points": 1},
                    headers={**bearer(token), "Idempotency-Key": "k-1"})
    assert_problem(r, 401, "signature_missing")
    assert balances_of(cast["banka"], "c-1") == {cast.id("BANKA"): (2500, 500)}


def test_a_partner_signature_does_not_open_me(cast):
    for path in ("/v1/me/balances", "/v1/me/transactions"):
        assert_problem(cast["banka"].get(path), 401, "member_token_missing", "Authorization")


def test_a_member_reads_only_their_own_operations(cast, booked):
    banka, BANKA = cast["banka"], cast.id("BANKA")
    other = ok(post(banka, "/v1/members", {"customer_ref": "c-2"}))
    assert other["member_id"] != cast.world.member_id
    theirs = ok(post(banka, "/v1/issues", {"customer_ref": "c-2", "program": BANKA,
                                           "points": 700}))
    client = banka.client
    mine = ok(client.get("/v1/me/transactions", headers=bearer(_token(cast, "c-1"))), 200)
    assert [op["id"] for op in mine["items"]] == [
        booked[k]["id"] for k in ("authorisation", "redemption", "issue")]
    assert {op["member_id"] for op in mine["items"]} == {cast.world.member_id}
    # A member cannot even ask for another member's operations: no such filter here.
    r = client.get("/v1/me/transactions", query_string={"customer_ref": "c-2"},
                   headers=bearer(_token(cast, "c-1")))
    assert (r.status_code, r.json["code"], r.json["field"]) == (
        422, "validation_failed", "customer_ref")
    assert theirs["id"] not in [op["id"] for op in mine["items"]]
    other_token = _token(cast, "c-2")
    assert [op["id"] for op in ok(client.get("/v1/me/transactions",
                                             headers=bearer(other_token)), 200)["items"]] == [
        theirs["id"]]
    balances = ok(client.get("/v1/me/balances", headers=bearer(other_token)), 200)
    assert balances["member_id"] == other["member_id"]
    assert [(b["program"], b["available"]) for b in balances["balances"]] == [(BANKA, 700)]


# --- suspended partners, frozen members, revoked keys ----------------------------------------

def test_a_suspended_partner_books_nothing_but_still_reads(cast, booked, engine):
    megamart_id, BANKA = cast.id("megamart"), cast.id("BANKA")
    in_committed_session(engine, lambda s: partners.set_status(s, megamart_id, "suspended"))
    megamart = cast["megamart"]
    held = booked["authorisation"]["id"]
    for path, body in (
            ("/v1/redemptions", {"customer_ref": "mm-1", "program": BANKA, "points": 1}),
            ("/v1/authorisations", {"customer_ref": "mm-1", "program": BANKA, "points": 1}),
            (f"/v1/authorisations/{held}/capture", {}),
            (f"/v1/authorisations/{held}/void", {}),
            (f"/v1/redemptions/{booked['redemption']['id']}/refunds", {}),
            ("/v1/members", {"customer_ref": "mm-2"}),
            ("/v1/members/mm-1/tokens", {})):
        assert_problem(post(megamart, path, body), 422, "partner_suspended")
    assert ok(megamart.get("/v1/partner"), 200)["status"] == "suspended"
    assert ids_of(megamart) == [held, booked["redemption"]["id"]]
    assert ok(megamart.get(f"/v1/transactions/{held}"), 200)["status"] == "pending"
    assert ok(megamart.get("/v1/members/mm-1"), 200)["customer_ref"] == "mm-1"
    assert balances_of(megamart, "mm-1") == {BANKA: (2500, 500)}
    # Reactivated, it books again.
    in_committed_session(engine, lambda s: partners.set_status(s, megamart_id, "active"))
    ok(post(megamart, f"/v1/authorisations/{held}/void"))


def test_a_frozen_member_earns_spends_and_converts_nothing(cast, booked, engine):
    in_committed_session(engine, lambda s: members.freeze(s, cast.world.member_id))
    BANKA, SKYMILES = cast.id("BANKA"), cast.id("SKYMILES")
    for client, path, body in (
            ("banka", "/v1/issues", {"customer_ref": "c-1", "program": BANKA, "points": 1}),
            ("megamart", "/v1/redemptions", {"customer_ref": "mm-1", "program": BANKA,
                                             "points": 1}),
            ("megamart", "/v1/authorisations", {"customer_ref": "mm-1", "program": BANKA,
                                                "points": 1}),
            ("skyair", "/v1/conversions", {"customer_ref": "sa-1", "source": BANKA,
                                           "target": SKYMILES, "points": 1000}),
            ("banka", "/v1/members/c-1/tokens", {})):
        assert_problem(post(cast[client], path, body), 422, "member_frozen", "member")
    assert balances_of(cast["banka"], "c-1") == {BANKA: (2500, 500)}
    assert len(ids_of(cast["banka"])) == 3


def test_a_revoked_key_is_unknown(cast, engine):
    megamart = cast["megamart"]
    assert megamart.get("/v1/partner").status_code == 200
    in_committed_session(engine, lambda s: partners.revoke_key(
        s, cast.id("megamart"), megamart.key_id))
    assert_problem(megamart.get("/v1/partner"), 401, "unknown_key", "Pointclear-Key-Id")
    r = post(megamart, "/v1/redemptions", {"customer_ref": "mm-1",
                                           "program": cast.id("BANKA"), "points": 1})
    assert_problem(r, 401, "unknown_key")
    # Other partners' keys are untouched.
    assert cast["banka"].get("/v1/partner").status_code == 200
