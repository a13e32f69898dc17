"""``/v1/webhooks/...``: a partner's webhook subscriptions, its delivery log and replays;
``/v1/platform/keys``: the public keys that verify what the platform signs.

Which URLs a subscription may name depends on ``WEBHOOK_DEV_TARGETS`` (see
:mod:`app.clearing.webhook_urls`).

What a webhook carries and how it is signed is in :mod:`app.webhooks.deliver`; which
events exist in :mod:`app.clearing.events`.
"""

from __future__ import annotations

import uuid

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import Blueprint, current_app, g, jsonify
from marshmallow import ValidationError

from app import signing
from app.clearing import webhooks
from app.errors import problem
from ledger.seal import key_id

from . import schemas
from .edge import body, decode_cursor, page, partner_required, query, read, write

bp = Blueprint("webhooks", __name__, url_prefix="/v1")
PLATFORM_KEYS = "pointclear.platform_keys"
subscribe_schema = schemas.SubscribeSchema()
subscription_url_schema = schemas.SubscriptionUrlSchema()
delivery_query_schema = schemas.DeliveryQuerySchema()


def subscription_out(sub) -> dict:
    return {"id": sub.id, "url": sub.url, "events": sub.events.split(","),
            "status": sub.status, "created_at": sub.created_at,
            "disabled_at": sub.disabled_at}


def delivery_out(delivery, event, attempts) -> dict:
    return {
        "id": delivery.id, "event_id": event.id, "event_type": event.type,
        "event_created_at": event.created_at, "subscription_id": delivery.subscription_id,
        "state": delivery.state, "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at if delivery.state == "pending" else None,
        "last_status": delivery.last_status, "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at, "created_at": delivery.created_at,
        "attempt_log": [{"attempted_at": a.attempted_at, "status": a.status, "error": a.error,
                         "duration_ms": a.duration_ms} for a in attempts],
    }


@bp.post("/webhooks/subscriptions")
@partner_required
def subscribe():
    """POST the partner's events of ``events`` to ``url`` from now on."""
    d = body(subscribe_schema)
    return write(lambda s, _key: subscription_out(webhooks.create_subscription(
        s, g.partner_id, d["url"], d["events"], dev_targets=_dev_targets())))


def _dev_targets() -> bool:
    return bool(current_app.config.get("WEBHOOK_DEV_TARGETS"))


@bp.get("/webhooks/subscriptions")
@partner_required
def list_subscriptions():
    """The partner's subscriptions, active and disabled, oldest first."""
    return jsonify(read(lambda s: {
        "items": [subscription_out(sub) for sub in webhooks.subscriptions_of(s, g.partner_id)],
        "next_cursor": None}))


@bp.post("/webhooks/subscriptions/<subscription_id>/disable")
@partner_required
def disable(subscription_id):
    """Stop a subscription: pending deliveries fail, no new ones are made."""
    body(schemas.EmptySchema())
    return write(lambda s, _key: subscription_out(
        webhooks.disable_subscription(s, g.partner_id, subscription_id)), status=200)


@bp.post("/webhooks/subscriptions/<subscription_id>/url")
@partner_required
def change_url(subscription_id):
    """Move a subscription to another URL; its pending deliveries go there."""
    d = body(subscription_url_schema)
    return write(lambda s, _key: subscription_out(webhooks.change_url(
        s, g.partner_id, subscription_id, d["url"], dev_targets=_dev_targets())), status=200)


@bp.get("/webhooks/deliveries")
@partner_required
def deliveries():
    """The delivery log: each delivery with every attempt, newest first (paginated)."""
    args = query(delivery_query_schema)
    cursor = decode_cursor(args.get("cursor"))
    try:
        before = uuid.UUID(cursor) if cursor is not None else None
    except ValueError as exc:
        raise ValidationError({"cursor": ["not a cursor this API returned"]}) from exc

    def work(session):
        rows = webhooks.delivery_log(session, g.partner_id, event_id=args.get("event_id"),
                                     state=args.get("state"),
                                     subscription_id=args.get("subscription_id"),
                                     before=before, limit=args["limit"] + 1)
        return page([delivery_out(*row) for row in rows], args["limit"],
                    lambda item: str(item["id"]))
    return jsonify(read(work))


@bp.post("/webhooks/deliveries/<delivery_id>/replay")
@partner_required
def replay(delivery_id):
    """Queue a delivery again, due now: the same event id and body."""
    body(schemas.EmptySchema())

    def work(session, _key):
        delivery = webhooks.replay(session, g.partner_id, delivery_id)
        (row,) = webhooks.delivery_log(session, g.partner_id, event_id=delivery.event_id,
                                       subscription_id=delivery.subscription_id, limit=1)
        return delivery_out(*row)
    return write(work, status=202)


@bp.get("/platform/keys")
@partner_required
def platform_keys():
    """The platform's Ed25519 public keys: they verify webhooks (and statements)."""
    if PLATFORM_KEYS not in current_app.extensions:
        try:
            public = signing.load_private_key(current_app.config["SIGNING_KEY"]).public_key()
        except signing.SigningKeyMissing:
            current_app.logger.error("GET /v1/platform/keys: the platform signing key is "
                                     "missing")
            return problem(503, "signing_key_missing", "the platform signing key is not set "
                           "up; try again later")
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            current_app.logger.error("GET /v1/platform/keys: the platform signing key at %s "
                                     "cannot be read: %r", current_app.config["SIGNING_KEY"],
                                     exc)
            return problem(503, "signing_key_invalid", "the platform signing key cannot be "
                           "read; try again later")
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        # Read once per process: the key does not change under a running server.
        current_app.extensions[PLATFORM_KEYS] = {"items": [{
            "key_id": key_id(public), "public_key": raw.hex(), "algorithm": "ed25519"}]}
    return jsonify(current_app.extensions[PLATFORM_KEYS])
