"""``/v1/openapi.json`` and ``/v1/docs`` describe the API the app serves: every route with
its methods, path parameters, query parameters, request bodies and statuses, in a
structurally valid OpenAPI 3.1 document -- and nothing the app does not serve."""

from __future__ import annotations

import re
import uuid

import pytest

from app.api.openapi import ROUTES

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# The document's own endpoints: public, not part of the partner or member API.
SELF_DESCRIBING = {"/v1/openapi.json", "/v1/docs"}


@pytest.fixture
def spec(api) -> dict:
    r = api.test_client().get("/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    return r.json


def served(api) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the app serves under /v1."""
    out = set()
    for rule in api.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or rule.rule in SELF_DESCRIBING:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        out |= {(m.lower(), path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def documented(spec) -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec["paths"].items()
            for method in item if method in HTTP_METHODS}


def operations(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield method, path, op


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            assert part in node, f"dangling $ref {ref}"
            node = node[part]
    return node


def test_the_document_is_openapi_3_1(spec):
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] and spec["info"]["version"] == "1"
    assert set(spec) <= {"openapi", "info", "jsonSchemaDialect", "servers", "paths",
                         "webhooks", "components", "security", "tags", "externalDocs"}
    assert spec["paths"] and all(path.startswith("/v1/") for path in spec["paths"])
    schemes = spec["components"]["securitySchemes"]
    assert schemes["partner"]["type"] == "apiKey" and schemes["partner"]["in"] == "header"
    assert (schemes["member"]["type"], schemes["member"]["scheme"]) == ("http", "bearer")


def test_every_operation_is_well_formed(spec):
    schemes = set(spec["components"]["securitySchemes"])
    seen_ids = set()
    for method, path, op in operations(spec):
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        assert op["responses"], where
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), (where, status)
            assert resolve(spec, response).get("description"), (where, status)
        assert [s for req in op["security"] for s in req] and all(
            s in schemes for req in op["security"] for s in req), where
        params = [resolve(spec, p) for p in op.get("parameters", [])]
        names = [(p["in"], p["name"]) for p in params]
        assert len(names) == len(set(names)), (where, names)
        for p in params:
            assert p["in"] in {"query", "header", "path", "cookie"}, (where, p)
            assert "schema" in p or "content" in p, (where, p)
            if p["in"] == "path":
                assert p["required"] is True, (where, p)
        # Path templating: every {name} in the path is a path parameter, and back.
        assert {n for i, n in names if i == "path"} == set(re.findall(r"{([^}]+)}", path)), \
            where
        if "operationId" in op:
            assert op["operationId"] not in seen_ids
            seen_ids.add(op["operationId"])
        if "requestBody" in op:
            for media in op["requestBody"]["content"].values():
                assert resolve(spec, media["schema"]), where


def test_every_ref_resolves(spec):
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(spec, node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(spec)


def test_every_served_route_is_documented_and_nothing_else(api, spec):
    assert served(api) == documented(spec)
    assert documented(spec) == {(m, p) for m, p, *_ in ROUTES}


def test_every_post_documents_its_idempotency_key_and_body(spec):
    for method, path, op in operations(spec):
        headers = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}
        if method == "post":
            assert headers["Idempotency-Key"]["required"] is True, path
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            assert resolve(spec, schema)["type"] == "object", path
        else:
            assert "Idempotency-Key" not in headers and "requestBody" not in op, path


def test_member_routes_use_the_member_scheme(spec):
    for method, path, op in operations(spec):
        expected = "member" if path.startswith("/v1/me/") else "partner"
        assert op["security"] == [{expected: []}], (method, path)


def test_documented_request_fields_are_the_accepted_ones(spec):
    """An issue body documents exactly the fields the view accepts, required ones marked."""
    op = spec["paths"]["/v1/issues"]["post"]
    schema = resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
    assert set(schema["properties"]) == {"customer_ref", "program", "points", "reference"}
    assert set(schema["required"]) == {"customer_ref", "program", "points"}
    assert schema["properties"]["points"]["type"] == "integer"


def _query_parameters(spec, path) -> set[str]:
    return {p["name"] for p in spec["paths"][path]["get"].get("parameters", [])
            if p["in"] == "query"}


def test_the_transactions_filters_are_documented(spec):
    expected = {"customer_ref", "program", "kind", "since", "until", "cursor", "limit"}
    assert _query_parameters(spec, "/v1/transactions") == expected
    limit = next(p for p in spec["paths"]["/v1/transactions"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)


def test_every_paginated_list_documents_cursor_and_limit(api, cast, spec):
    """Behaviour decides: a list that refuses ?limit=0 takes a limit, so documents one."""
    token = cast["banka"].post("/v1/members/c-1/tokens", json={},
                               headers={"Idempotency-Key": uuid.uuid4().hex}).json["token"]
    client = cast["banka"]
    checked = []
    for method, path, _ in operations(spec):
        if method != "get" or "{" in path:
            continue
        if path.startswith("/v1/me/"):
            r = client.client.get(path, query_string={"limit": "0"},
                                  headers={"Authorization": f"Bearer {token}"})
        else:
            r = client.get(path, query={"limit": "0"})
        if r.status_code == 422 and r.json.get("field") == "limit":
            checked.append(path)
            assert {"cursor", "limit"} <= _query_parameters(spec, path), path
    assert set(checked) == {"/v1/transactions", "/v1/me/transactions", "/v1/members",
                            "/v1/webhooks/deliveries"}


def test_documented_success_statuses_are_what_the_api_answers(cast, spec):
    client, BANKA = cast["banka"], cast.id("BANKA")

    def documented_status(method, path):
        return {s for s in spec["paths"][path][method]["responses"] if s[0] == "2"}

    def post(path, body):
        return client.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})

    checks = [
        ("post", "/v1/members", post("/v1/members", {"customer_ref": "c-2"})),
        ("post", "/v1/members/{customer_ref}/tokens", post("/v1/members/c-1/tokens", {})),
        ("post", "/v1/issues", post("/v1/issues", {"customer_ref": "c-1", "program": BANKA,
                                                   "points": 10})),
        ("get", "/v1/partner", client.get("/v1/partner")),
        ("get", "/v1/programs", client.get("/v1/programs")),
        ("get", "/v1/agreements", client.get("/v1/agreements")),
        ("get", "/v1/members", client.get("/v1/members")),
        ("get", "/v1/members/{customer_ref}", client.get("/v1/members/c-1")),
        ("get", "/v1/members/{customer_ref}/balances", client.get("/v1/members/c-1/balances")),
        ("get", "/v1/transactions", client.get("/v1/transactions")),
    ]
    for method, path, r in checks:
        assert documented_status(method, path) == {str(r.status_code)}, (method, path, r.json)


def test_the_link_schema_matches_what_the_api_answers(cast, spec):
    link = cast["banka"].get("/v1/members/c-1").json
    op = spec["paths"]["/v1/members/{customer_ref}"]["get"]
    schema = resolve(spec, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(schema["properties"]) == set(link)


def test_the_operation_schema_matches_what_the_api_answers(cast, spec):
    r = cast["banka"].post("/v1/issues", json={"customer_ref": "c-1",
                                               "program": cast.id("BANKA"), "points": 10},
                           headers={"Idempotency-Key": uuid.uuid4().hex})
    op = spec["paths"]["/v1/issues"]["post"]
    schema = resolve(spec, op["responses"]["201"]["content"]["application/json"]["schema"])
    assert set(schema["properties"]) == set(r.json)


def test_the_document_needs_no_credentials(api):
    client = api.test_client()
    assert client.get("/v1/openapi.json").status_code == 200
    assert client.get("/v1/docs").status_code == 200


def test_docs_list_every_path(api, spec):
    r = api.test_client().get("/v1/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert html.lower().startswith("<!doctype html>")
    assert "<script" not in html.lower()
    rows = set(re.findall(r"<td>([A-Z]+)</td><td><code>([^<]+)</code></td>", html))
    assert rows == {(m.upper(), p) for m, p in documented(spec)}
    assert 'href=/v1/openapi.json' in html or 'href="/v1/openapi.json"' in html
