"""Bad input over HTTP: every refusal is problem+json with a stable code and the field at
fault, nothing is booked, and no input -- however malformed -- makes the server fail."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta

import pytest

from app.api import schemas
from app.api.openapi import ROUTES
from ledger.types import utcnow

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def post(client, path, json=None, key=None, **options):
    return client.post(path, json=json if json is not None else {},
                       headers={"Idempotency-Key": key or uuid.uuid4().hex}, **options)


def post_raw(client, path, data: bytes, content_type="application/json"):
    return client.post(path, data=data, headers={"Idempotency-Key": uuid.uuid4().hex,
                                                 "Content-Type": content_type})


def assert_problem(r, status, code, field=None):
    text = r.get_data(as_text=True)
    assert r.status_code == status, text
    assert r.mimetype == "application/problem+json", text
    body = r.json
    assert PROBLEM_KEYS <= set(body), body
    assert (body["status"], body["code"]) == (status, code), body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert body["type"].endswith("/" + code)
    if field is not None:
        assert body.get("field") == field, body
    return body


def issued(cast, points=5000):
    r = post(cast["banka"], "/v1/issues", {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                           "points": points})
    assert r.status_code == 201, r.json
    return r.json


def operations_of(client, **query):
    r = client.get("/v1/transactions", query=query or None)
    assert r.status_code == 200, r.json
    return r.json["items"]


def body_of(cast, **overrides):
    return {"customer_ref": "c-1", "program": cast.id("BANKA"), "points": 5, **overrides}


# --- body fields --------------------------------------------------------------------------

def test_an_unknown_field_is_refused_by_name(cast):
    r = post(cast["banka"], "/v1/issues", body_of(cast, pionts=5))
    body = assert_problem(r, 422, "validation_failed", "pionts")
    assert body["errors"] == [{"field": "pionts", "detail": "Unknown field."}]
    assert operations_of(cast["banka"]) == []


def test_an_unknown_nested_field_is_named_by_its_path(cast):
    r = post(cast["banka"], "/v1/members", {"customer_ref": "c-2", "contact": {"nmae": "A"}})
    assert_problem(r, 422, "validation_failed", "contact.nmae")
    r = post(cast["banka"], "/v1/imports", {"program": cast.id("BANKA"), "lines": [
        {"customer_ref": "c-1", "points": 1, "earned_at": utcnow().isoformat(), "pts": 1}]})
    assert_problem(r, 422, "validation_failed", "lines.0.pts")
    assert cast["banka"].get("/v1/members/c-2").status_code == 404


@pytest.mark.parametrize("points", [1.5, 10.0, "10", True, False, None, [], {}, "NaN"])
@pytest.mark.parametrize("path, client, extra", [
    ("/v1/issues", "banka", {}),
    ("/v1/redemptions", "megamart", {"customer_ref": "mm-1"}),
    ("/v1/authorisations", "megamart", {"customer_ref": "mm-1"}),
])
def test_points_that_are_not_a_json_integer_fail_validation(cast, path, client, extra, points):
    issued(cast)
    r = post(cast[client], path, body_of(cast, points=points, **extra))
    assert_problem(r, 422, "validation_failed", "points")
    assert [op["kind"] for op in operations_of(cast["banka"])] == ["issue"]


@pytest.mark.parametrize("points", [0, -5, 10**12 + 1, 10**13, 10**40])
@pytest.mark.parametrize("path, client, extra", [
    ("/v1/issues", "banka", {}),
    ("/v1/redemptions", "megamart", {"customer_ref": "mm-1"}),
    ("/v1/authorisations", "megamart", {"customer_ref": "mm-1"}),
])
def test_points_out_of_range_are_an_invalid_amount(cast, path, client, extra, points):
    issued(cast)
    r = post(cast[client], path, body_of(cast, points=points, **extra))
    assert_problem(r, 422, "invalid_amount", "points")
    assert [op["kind"] for op in operations_of(cast["banka"])] == ["issue"]


@pytest.mark.parametrize("points", [0, -1, 10**13])
def test_conversion_points_out_of_range_are_an_invalid_amount(cast, points):
    issued(cast)
    r = post(cast["skyair"], "/v1/conversions", {"customer_ref": "sa-1",
                                                  "source": cast.id("BANKA"),
                                                  "target": cast.id("SKYMILES"),
                                                  "points": points})
    assert_problem(r, 422, "invalid_amount", "points")


@pytest.mark.parametrize("points", [0, -3, 10**13])
def test_partial_points_out_of_range_are_an_invalid_amount(cast, points):
    issue = issued(cast)
    megamart = cast["megamart"]
    spent = post(megamart, "/v1/redemptions", body_of(cast, customer_ref="mm-1", points=100)).json
    held = post(megamart, "/v1/authorisations", body_of(cast, customer_ref="mm-1",
                                                         points=100)).json
    for client, path in ((megamart, f"/v1/redemptions/{spent['id']}/refunds"),
                         (megamart, f"/v1/authorisations/{held['id']}/capture"),
                         (cast["banka"], f"/v1/issues/{issue['id']}/clawbacks")):
        assert_problem(post(client, path, {"points": points}), 422, "invalid_amount", "points")
    assert sorted(op["kind"] for op in operations_of(cast["banka"])) == [
        "authorisation", "issue", "redemption"]


def test_reversing_more_than_is_left_names_points(cast):
    issued(cast)
    spent = post(cast["megamart"], "/v1/redemptions", body_of(cast, customer_ref="mm-1",
                                                              points=100)).json
    r = post(cast["megamart"], f"/v1/redemptions/{spent['id']}/refunds", {"points": 101})
    assert_problem(r, 422, "reversal_exceeds_original", "points")


@pytest.mark.parametrize("data, content_type", [
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'"a string"', "application/json"),
    (b"42", "application/json"),
    (b"null", "application/json"),
    (b'{"customer_ref": "\xff"}', "application/json"),
    (b'{"customer_ref": "c-1"}', "text/plain"),
])
def test_a_body_that_is_not_a_json_object_is_refused(cast, data, content_type):
    r = post_raw(cast["banka"], "/v1/issues", data, content_type)
    assert_problem(r, 422, "validation_failed", "_body")
    assert operations_of(cast["banka"]) == []


def test_a_missing_required_field_is_named(cast):
    r = post(cast["banka"], "/v1/issues", {"program": cast.id("BANKA"), "points": 5})
    body = assert_problem(r, 422, "validation_failed", "customer_ref")
    assert body["errors"] == [{"field": "customer_ref",
                               "detail": "Missing data for required field."}]
    r = post(cast["skyair"], "/v1/conversions", {"customer_ref": "sa-1",
                                                  "source": cast.id("BANKA"), "points": 100})
    assert_problem(r, 422, "validation_failed", "target")
    # No body at all: every required field is listed, the first one named.
    r = cast["banka"].post("/v1/issues", headers={"Idempotency-Key": uuid.uuid4().hex})
    body = assert_problem(r, 422, "validation_failed", "customer_ref")
    assert {e["field"] for e in body["errors"]} == {"customer_ref", "program", "points"}


def test_an_unknown_program_is_program_not_found(cast):
    issued(cast)
    r = post(cast["banka"], "/v1/issues", body_of(cast, program="NOSUCHPROG"))
    assert_problem(r, 422, "program_not_found", "program")
    r = post(cast["megamart"], "/v1/redemptions", body_of(cast, customer_ref="mm-1",
                                                          program="NOSUCHPROG"))
    assert_problem(r, 422, "program_not_found", "program")
    r = post(cast["skyair"], "/v1/conversions", {"customer_ref": "sa-1",
                                                  "source": cast.id("BANKA"),
                                                  "target": "NOSUCHPROG", "points": 100})
    assert_problem(r, 422, "program_not_found")
    assert [op["kind"] for op in operations_of(cast["banka"])] == ["issue"]


@pytest.mark.parametrize("operation_id", ["not-a-uuid", "8d3c0b7e-5f0a-4c1e-9b7e-1f2a3b4c5d6e",
                                          "1" * 300], ids=["not-a-uuid", "unknown", "long"])
def test_an_unknown_operation_id_is_404(cast, operation_id):
    banka, megamart = cast["banka"], cast["megamart"]
    assert_problem(banka.get(f"/v1/transactions/{operation_id}"), 404, "operation_not_found",
                   "operation_id")
    for client, path in ((banka, f"/v1/issues/{operation_id}/clawbacks"),
                         (megamart, f"/v1/redemptions/{operation_id}/refunds"),
                         (megamart, f"/v1/authorisations/{operation_id}/capture"),
                         (megamart, f"/v1/authorisations/{operation_id}/void")):
        assert_problem(post(client, path), 404, "operation_not_found", "operation_id")


def test_an_operation_of_the_wrong_kind_is_invalid_operation(cast):
    issue = issued(cast)
    spent = post(cast["megamart"], "/v1/redemptions", body_of(cast, customer_ref="mm-1",
                                                              points=100)).json
    r = post(cast["megamart"], f"/v1/authorisations/{spent['id']}/capture")
    assert_problem(r, 422, "invalid_operation", "operation_id")
    r = post(cast["banka"], f"/v1/redemptions/{issue['id']}/refunds")
    assert_problem(r, 422, "invalid_operation", "operation_id")


def test_an_import_with_bad_lines_lists_every_one_and_books_nothing(cast):
    now = utcnow()
    lines = [{"customer_ref": "nobody", "points": 10, "earned_at": now.isoformat()},
             {"customer_ref": "c-1", "points": 20, "earned_at": now.isoformat()},
             {"customer_ref": "c-1", "points": 0, "earned_at": now.isoformat()}]
    r = post(cast["banka"], "/v1/imports", {"program": cast.id("BANKA"), "lines": lines})
    body = assert_problem(r, 422, "import_rejected", "lines")
    assert [(e["line"], e["code"], e["field"]) for e in body["errors"]] == [
        (0, "member_not_found", "customer_ref"), (2, "invalid_amount", "points")]
    assert operations_of(cast["banka"]) == []


def test_an_import_line_from_the_future_is_refused(cast):
    later = (utcnow() + timedelta(days=1)).isoformat()
    r = post(cast["banka"], "/v1/imports", {"program": cast.id("BANKA"), "lines": [
        {"customer_ref": "c-1", "points": 10, "earned_at": later}]})
    body = assert_problem(r, 422, "import_rejected", "lines")
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(0, "earned_at")]


@pytest.mark.parametrize("seconds", [59, 30 * 24 * 3600 + 1, -1, "600", 600.5, None])
def test_expires_in_seconds_out_of_range_fails_validation(cast, seconds):
    issued(cast)
    r = post(cast["megamart"], "/v1/authorisations",
             body_of(cast, customer_ref="mm-1", expires_in_seconds=seconds))
    assert_problem(r, 422, "validation_failed", "expires_in_seconds")
    assert [op["kind"] for op in operations_of(cast["banka"])] == ["issue"]


def test_expires_in_seconds_accepts_its_bounds(cast):
    issued(cast)
    for seconds in (60, 30 * 24 * 3600):
        r = post(cast["megamart"], "/v1/authorisations",
                 body_of(cast, customer_ref="mm-1", points=1, expires_in_seconds=seconds))
        assert r.status_code == 201, r.json
        held = cast["megamart"].get(f"/v1/transactions/{r.json['id']}").json
        created = held["created_at"]
        assert held["expires_at"] is not None and held["status"] == "pending"
        lasts = datetime.fromisoformat(held["expires_at"]) - datetime.fromisoformat(created)
        assert lasts == timedelta(seconds=seconds)


@pytest.mark.parametrize("ttl", [59, 3601, "300", 0])
def test_token_ttl_out_of_range_fails_validation(cast, ttl):
    r = post(cast["banka"], "/v1/members/c-1/tokens", {"ttl_seconds": ttl})
    assert_problem(r, 422, "validation_failed", "ttl_seconds")


# --- query strings ------------------------------------------------------------------------

LIST_PATHS = ["/v1/transactions", "/v1/members"]


@pytest.mark.parametrize("path", LIST_PATHS)
@pytest.mark.parametrize("limit", ["0", "201", "1000", "-1", "abc", "1.5", ""])
def test_a_limit_out_of_range_fails_validation(cast, path, limit):
    assert_problem(cast["banka"].get(path, query={"limit": limit}), 422, "validation_failed",
                   "limit")


@pytest.mark.parametrize("path", LIST_PATHS)
def test_limit_accepts_its_bounds(cast, path):
    for limit in ("1", "200"):
        assert cast["banka"].get(path, query={"limit": limit}).status_code == 200


@pytest.mark.parametrize("name, value", [
    ("since", "not-a-date"), ("since", "2026-01-01T00:00:00"), ("until", "yesterday"),
    ("kind", "payment"), ("program", ""), ("program", "P" * 17), ("customer_ref", "x" * 101),
    ("colour", "blue"),
])
def test_a_bad_transaction_filter_fails_validation(cast, name, value):
    r = cast["banka"].get("/v1/transactions", query={name: value})
    assert_problem(r, 422, "validation_failed", name)


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", ["!!!", "x", "_w", _cursor("not-a-uuid"), _cursor("")])
def test_a_bad_transactions_cursor_fails_validation(cast, cursor):
    issued(cast)
    r = cast["banka"].get("/v1/transactions", query={"cursor": cursor})
    assert_problem(r, 422, "validation_failed", "cursor")


def test_a_members_cursor_that_is_not_base64_fails_validation(cast):
    assert_problem(cast["banka"].get("/v1/members", query={"cursor": "_w"}), 422,
                   "validation_failed", "cursor")


def test_a_members_cursor_of_junk_characters_fails_validation(cast):
    assert_problem(cast["banka"].get("/v1/members", query={"cursor": "!!!"}), 422,
                   "validation_failed", "cursor")


@pytest.mark.parametrize("name, value", [("since", "0001-01-01T00:00:00+01:00"),
                                         ("until", "9999-12-31T23:59:59-12:00")])
def test_an_instant_outside_the_calendar_fails_validation(cast, name, value):
    r = cast["banka"].get("/v1/transactions", query={name: value})
    assert_problem(r, 422, "validation_failed", name)


@pytest.mark.parametrize("earned_at", ["0001-01-01T00:00:00+01:00",
                                       "9999-12-31T23:59:59-12:00",
                                       "1969-12-31T23:59:59+00:00"])
def test_an_import_line_outside_the_calendar_is_a_bad_line(cast, earned_at):
    # SKYMILES never expires, so only the earn date's own bounds can refuse these:
    # instants with no UTC value fail validation, those before 1970 the domain's rule.
    r = post(cast["skyair"], "/v1/imports", {"program": cast.id("SKYMILES"), "lines": [
        {"customer_ref": "sa-1", "points": 10, "earned_at": earned_at}]})
    if earned_at.startswith("1969"):
        body = assert_problem(r, 422, "import_rejected", "lines")
        assert [(e["line"], e["code"], e["field"]) for e in body["errors"]] == [
            (0, "invalid_operation", "earned_at")]
    else:
        assert_problem(r, 422, "validation_failed", "lines.0.earned_at")
    assert operations_of(cast["skyair"]) == []


@pytest.mark.parametrize("data", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"a":' * 100_000 + b"1" + b"}" * 100_000])
def test_a_deeply_nested_body_is_refused(cast, data):
    r = post_raw(cast["banka"], "/v1/issues", data)
    assert_problem(r, 422, "validation_failed", "_body")


def test_a_duplicate_field_is_refused(cast):
    program = cast.id("BANKA")
    data = f'{{"customer_ref":"c-1","program":"{program}","points":5,"points":6}}'.encode()
    r = post_raw(cast["banka"], "/v1/issues", data)
    assert_problem(r, 422, "validation_failed", "points")


# --- NUL characters ---------------------------------------------------------------------


@pytest.mark.parametrize("case", ["customer_ref", "program", "reference", "path",
                                  "members_cursor", "filter"])
def test_a_nul_character_is_refused_not_a_500(cast, case):
    banka = cast["banka"]
    if case in ("customer_ref", "program"):
        r = post(banka, "/v1/issues", body_of(cast, **{case: "c\u0000"}))
    elif case == "reference":
        r = post(banka, "/v1/issues", body_of(cast, reference="r\u0000"))
    elif case == "path":
        r = banka.get("/v1/members/c%00")
    elif case == "members_cursor":
        r = banka.get("/v1/members", query={"cursor": _cursor("\u0000")})
    else:
        r = banka.get("/v1/transactions", query={"customer_ref": "c\u0000"})
    assert r.status_code < 500, r.get_data(as_text=True)
    if r.status_code >= 400:
        assert r.mimetype == "application/problem+json"


# --- the garbage sweep ------------------------------------------------------------------

GARBAGE = [
    None, True, 0, -1, 10**40, 1.5, 1e308, "", " ", "x" * 100_000,
    "\u00fc\u202e\U0001F600\u200b", "1" * 5000, [], [1, "a", None], {},
    {"a": {"b": {"c": [1, {"d": "e"}]}}}, "2026-02-30T00:00:00Z", "../../etc/passwd",
    "'; DROP TABLE clearing_partners; --",
]
POST_ROUTES = [r for r in ROUTES if r[0] == "post"]


def _valid_bodies(cast) -> dict:
    """One valid body per POST route, with path ids of live operations."""
    banka, megamart = cast["banka"], cast["megamart"]
    issue = issued(cast, 100_000)
    spent = post(megamart, "/v1/redemptions", body_of(cast, customer_ref="mm-1",
                                                      points=1000)).json
    held = post(megamart, "/v1/authorisations", body_of(cast, customer_ref="mm-1",
                                                        points=1000)).json
    earned = (utcnow() - timedelta(days=1)).isoformat()
    BANKA = cast.id("BANKA")
    hook = {"url": "https://hooks.example.com/pointclear", "events": ["transaction.posted"]}
    subscription = post(banka, "/v1/webhooks/subscriptions", hook).json
    issued(cast, 1)  # an event for the subscription: a delivery to replay
    [delivery, *_] = banka.get("/v1/webhooks/deliveries").json["items"]
    return {
        "/v1/webhooks/subscriptions": (banka, "/v1/webhooks/subscriptions", hook),
        "/v1/webhooks/subscriptions/{subscription_id}/url": (
            banka, f"/v1/webhooks/subscriptions/{subscription['id']}/url",
            {"url": "https://hooks.example.com/moved"}),
        "/v1/webhooks/subscriptions/{subscription_id}/disable": (
            banka, f"/v1/webhooks/subscriptions/{subscription['id']}/disable", {}),
        "/v1/webhooks/deliveries/{delivery_id}/replay": (
            banka, f"/v1/webhooks/deliveries/{delivery['id']}/replay", {}),
        "/v1/members": (banka, "/v1/members", {
            "customer_ref": "sweep", "contact": {"name": "N", "email": "n@example.com",
                                                 "phone": "1"}}),
        "/v1/members/{customer_ref}/tokens": (banka, "/v1/members/c-1/tokens",
                                              {"ttl_seconds": 300}),
        "/v1/issues": (banka, "/v1/issues", body_of(cast, points=1, reference="r")),
        "/v1/issues/{operation_id}/clawbacks": (banka, f"/v1/issues/{issue['id']}/clawbacks",
                                                {"points": 1}),
        "/v1/imports": (banka, "/v1/imports", {"program": BANKA, "lines": [
            {"customer_ref": "c-1", "points": 1, "earned_at": earned, "reference": "r"}]}),
        "/v1/redemptions": (megamart, "/v1/redemptions",
                            body_of(cast, customer_ref="mm-1", points=1, reference="r")),
        "/v1/redemptions/{operation_id}/refunds": (
            megamart, f"/v1/redemptions/{spent['id']}/refunds", {"points": 1}),
        "/v1/authorisations": (megamart, "/v1/authorisations", body_of(
            cast, customer_ref="mm-1", points=1, reference="r", expires_in_seconds=600)),
        "/v1/authorisations/{operation_id}/capture": (
            megamart, f"/v1/authorisations/{held['id']}/capture", {"points": 1}),
        "/v1/authorisations/{operation_id}/void": (
            megamart, f"/v1/authorisations/{held['id']}/void", {}),
        "/v1/conversions": (cast["skyair"], "/v1/conversions", {
            "customer_ref": "sa-1", "source": BANKA, "target": cast.id("SKYMILES"),
            "points": 100, "reference": "r"}),
    }


def _variants(body: dict, schema) -> list:
    """The body with one field (nested ones too) replaced by each garbage value, one
    unknown field added, and whole bodies of the wrong type."""
    out = [g for g in GARBAGE if not isinstance(g, dict)] + [{"unknown": 1}]
    names = set(schema().fields) | set(body)
    for name in sorted(names):
        for value in GARBAGE:
            out.append({**body, name: value})
    for name, value in body.items():
        if isinstance(value, dict):
            for inner in value:
                out += [{**body, name: {**value, inner: g}} for g in GARBAGE]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            out += [{**body, name: [{**value[0], inner: g}]} for inner in value[0]
                    for g in GARBAGE]
            out += [{**body, name: [g]} for g in GARBAGE]
    return out


@pytest.mark.parametrize("route", POST_ROUTES, ids=[r[1] for r in POST_ROUTES])
def test_no_garbage_body_makes_a_post_fail(cast, route):
    template, schema = route[1], route[4]
    client, path, body = _valid_bodies(cast)[template]
    failures = []
    for variant in _variants(body, schema or schemas.EmptySchema):
        r = post_raw(client, path, json.dumps(variant).encode())
        if r.status_code >= 500 or (r.status_code >= 400
                                    and r.mimetype != "application/problem+json"):
            failures.append((json.dumps(variant)[:200], r.status_code))
    assert failures == []
    # The body the variants were made from is valid: each variant breaks one thing.
    if "customer_ref" in body and template == "/v1/members":
        body = {**body, "customer_ref": "sweep-2"}  # the variants may have linked "sweep"
    r = post(client, path, body)
    assert r.status_code == route[6], r.json  # the status the document promises


@pytest.mark.parametrize("template", [
    "/v1/members/{x}/tokens", "/v1/issues/{x}/clawbacks", "/v1/redemptions/{x}/refunds",
    "/v1/authorisations/{x}/capture", "/v1/authorisations/{x}/void",
])
def test_no_garbage_path_makes_a_post_fail(cast, template):
    for segment in ("x", "%F0%9F%98%80", "9" * 2000, "%20", "..", "%FF%FE",
                    str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000"):
        r = post(cast["banka"], template.replace("{x}", segment))
        assert 400 <= r.status_code < 500, (segment, r.get_data(as_text=True))
        assert r.mimetype == "application/problem+json"


@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/members"])
def test_no_garbage_query_makes_a_list_fail(cast, path):
    issued(cast)
    names = ("customer_ref", "program", "kind", "since", "until", "cursor", "limit", "zz")
    values = ("", "x" * 5000, "\u00fc\U0001F600", "-1", "99999999999999999999999", "[]",
              "2026-02-30T00:00:00Z", "1e400", "%")
    for name in names:
        for value in values:
            r = cast["banka"].get(path, query={name: value})
            assert r.status_code < 500, (name, value, r.get_data(as_text=True))
