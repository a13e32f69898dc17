"""``/v1/openapi.json`` (OpenAPI 3.1) and ``/v1/docs``, built from the same marshmallow
schemas the views validate with, so the document cannot drift from what is accepted.

Every route under ``/v1`` must be described in :data:`ROUTES`; a test checks that the
Flask URL map and this table agree.
"""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, current_app, jsonify

from app.clearing.events import EVENT_TYPES

from . import schemas

bp = Blueprint("openapi", __name__, url_prefix="/v1")

S = schemas
P, M = "partner", "member"
#: (method, path, summary, auth, request schema, response schema, status)
ROUTES = [
    ("get", "/v1/partner", "The calling partner", P, None, None, 200),
    ("get", "/v1/programs", "Programs hosted on the platform", P, None, None, 200),
    ("get", "/v1/agreements", "Agreements the partner is party to, with terms versions", P,
     None, None, 200),
    ("post", "/v1/members", "Link a customer to a platform member", P, S.EnrolSchema,
     S.LinkSchema, 201),
    ("get", "/v1/members", "The partner's linked members (paginated)", P, S.PageQuerySchema,
     None, 200),
    ("get", "/v1/members/{customer_ref}", "One linked member", P, None, S.LinkSchema, 200),
    ("post", "/v1/members/{customer_ref}/tokens", "A short-lived member token", P,
     S.TokenRequestSchema, None, 201),
    ("get", "/v1/members/{customer_ref}/balances", "A member's balances in the partner's "
     "programs", P, None, None, 200),
    ("post", "/v1/issues", "Issue points to a member", P, S.IssueSchema, S.OperationSchema, 201),
    ("post", "/v1/issues/{operation_id}/clawbacks", "Claw back issued points", P, S.PartSchema,
     S.OperationSchema, 201),
    ("post", "/v1/imports", "Bulk-import points with their earn dates", P, S.ImportSchema, None,
     201),
    ("post", "/v1/redemptions", "Redeem points at once", P, S.RedeemSchema, S.OperationSchema,
     201),
    ("post", "/v1/redemptions/{operation_id}/refunds", "Refund a redemption, in full or part",
     P, S.PartSchema, S.OperationSchema, 201),
    ("post", "/v1/authorisations", "Authorise (reserve) a redemption", P, S.AuthoriseSchema,
     S.OperationSchema, 201),
    ("post", "/v1/authorisations/{operation_id}/capture", "Capture an authorisation", P,
     S.PartSchema, S.OperationSchema, 201),
    ("post", "/v1/authorisations/{operation_id}/void", "Void an authorisation", P,
     S.EmptySchema, S.OperationSchema, 201),
    ("post", "/v1/conversions", "Convert points between programs", P, S.ConvertSchema,
     S.OperationSchema, 201),
    ("get", "/v1/transactions", "The partner's operations (filters, paginated)", P,
     S.TransactionQuerySchema, None, 200),
    ("get", "/v1/transactions/{operation_id}", "One operation with its postings", P, None,
     S.OperationSchema, 200),
    ("post", "/v1/webhooks/subscriptions", "Subscribe a URL to webhook events", P,
     S.SubscribeSchema, S.SubscriptionSchema, 201),
    ("get", "/v1/webhooks/subscriptions", "The partner's webhook subscriptions", P, None, None,
     200),
    ("post", "/v1/webhooks/subscriptions/{subscription_id}/disable", "Disable a subscription",
     P, S.EmptySchema, S.SubscriptionSchema, 200),
    ("post", "/v1/webhooks/subscriptions/{subscription_id}/url", "Move a subscription to "
     "another URL, keeping its pending deliveries", P, S.SubscriptionUrlSchema,
     S.SubscriptionSchema, 200),
    ("get", "/v1/webhooks/deliveries", "The webhook delivery log with every attempt "
     "(filters, paginated)", P, S.DeliveryQuerySchema, None, 200),
    ("post", "/v1/webhooks/deliveries/{delivery_id}/replay", "Deliver an event again (409 "
     "delivery_in_progress while an attempt is in flight)", P,
     S.EmptySchema, S.DeliverySchema, 202),
    ("get", "/v1/platform/keys", "The platform's public keys (verify webhooks)", P, None,
     None, 200),
    ("get", "/v1/me/balances", "The member's balances across all programs", M, None, None, 200),
    ("get", "/v1/me/transactions", "The member's own operations (paginated)", M,
     S.MemberTransactionQuerySchema, None, 200),
]

SECURITY_SCHEMES = {
    P: {"type": "apiKey", "in": "header", "name": "Pointclear-Signature",
        "description": "Ed25519 signature over method, path, query, timestamp, nonce and "
                       "Content-Digest; with Pointclear-Key-Id, Pointclear-Timestamp, "
                       "Pointclear-Nonce and Content-Digest headers (see README)."},
    M: {"type": "http", "scheme": "bearer", "description": "a member token (mt_...)"},
}
PROBLEM_SCHEMA = {
    "type": "object", "required": ["type", "title", "status", "detail", "code"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"},
                   "code": {"type": "string", "description": "stable, machine-readable"},
                   "field": {"type": "string", "description": "the input at fault"},
                   "errors": {"type": "array", "items": {"type": "object"}}}}
PROBLEM = {"description": "problem+json (RFC 9457) with a stable code and the field at fault",
           "content": {"application/problem+json": {
               "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _operation(method, path, summary, auth, request_schema, response_schema, status):
    op = {"summary": summary, "security": [{auth: []}],
          "responses": {str(status): {"description": "OK"}, "4XX": PROBLEM}}
    if response_schema is not None:
        op["responses"][str(status)]["content"] = {"application/json": {
            "schema": response_schema}}
    params = [{"name": name.strip("{}"), "in": "path", "required": True,
               "schema": {"type": "string"}} for name in path.split("/") if name.startswith("{")]
    if method == "post":
        params.append({"name": "Idempotency-Key", "in": "header", "required": True,
                       "schema": {"type": "string", "minLength": 1, "maxLength": 200}})
        if request_schema is not None:
            required = any(f.required for f in request_schema().fields.values())
            op["requestBody"] = {"required": required, "content": {
                "application/json": {"schema": request_schema}}}
    elif request_schema is not None:
        op["parameters"] = [{"in": "query", "schema": request_schema}]
    op.setdefault("parameters", []).extend(params)
    return op


def build_spec() -> dict:
    spec = APISpec(title="Pointclear API", version="1", openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Partner and member API of the Pointclear "
                         "loyalty-points clearing house."})
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    spec.components.schema("Problem", PROBLEM_SCHEMA)
    paths: dict[str, dict] = {}
    for route in ROUTES:
        paths.setdefault(route[1], {})[route[0]] = _operation(*route)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    spec.components.schema("WebhookEvent", schema=schemas.WebhookEventSchema)
    document = spec.to_dict()
    document["webhooks"] = {type_: {"post": _webhook(type_)} for type_ in EVENT_TYPES}
    return document


WEBHOOK_HEADERS = (
    ("Pointclear-Webhook-Id", "the event id: dedupe on it"),
    ("Pointclear-Webhook-Timestamp", "Unix seconds when this attempt was signed"),
    ("Pointclear-Webhook-Key-Id", "the platform key that signed (GET /v1/platform/keys)"),
    ("Pointclear-Webhook-Signature", "base64 Ed25519 signature over the lines "
     "pointclear-webhook-v1, the event id, the timestamp and the raw body, joined by \\n"),
)


def _webhook(type_: str) -> dict:
    """What the platform POSTs to a subscribed URL (OpenAPI 3.1 ``webhooks``)."""
    return {"summary": f"{type_}, signed by the platform", "parameters": [
                {"name": name, "in": "header", "required": True, "description": what,
                 "schema": {"type": "string"}} for name, what in WEBHOOK_HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/WebhookEvent"}}}},
            "responses": {"2XX": {"description": "received: not sent again (unless "
                                                 "replayed)"},
                          "default": {"description": "retried with backoff"}}}


@bp.get("/openapi.json")
def openapi_json():
    if "pointclear.openapi" not in current_app.extensions:
        current_app.extensions["pointclear.openapi"] = build_spec()
    return jsonify(current_app.extensions["pointclear.openapi"])


@bp.get("/docs")
def docs():
    """A plain index of the API: no scripts, no third-party assets."""
    rows = "".join(f"<tr><td>{m.upper()}</td><td><code>{p}</code></td><td>{s}</td>"
                   f"<td>{a}</td></tr>" for m, p, s, a, *_ in ROUTES)
    html = ("<!doctype html><meta charset=utf-8><title>Pointclear API</title>"
            "<h1>Pointclear API v1</h1><p>Machine-readable: "
            "<a href=/v1/openapi.json>/v1/openapi.json</a> (OpenAPI 3.1).</p>"
            f"<table><tr><th>method<th>path<th>what<th>auth</tr>{rows}</table>")
    return Response(html, mimetype="text/html")
