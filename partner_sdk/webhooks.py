"""Verify the platform's webhooks and detached signatures before trusting them.

Webhook format ``pointclear-webhook-v1``
----------------------------------------
The platform POSTs each event as JSON with four headers::

    Pointclear-Webhook-Id         the event id
    Pointclear-Webhook-Timestamp  when it was signed, whole Unix seconds
    Pointclear-Webhook-Key-Id     which platform key signed it
    Pointclear-Webhook-Signature  standard base64 of the Ed25519 signature

The signature is over the UTF-8 lines ``pointclear-webhook-v1``, the event id and the
timestamp, then the raw body bytes, joined by ``\\n``. The body is
``{"id", "type", "created_at", "partner", "data"}``: ``type`` is e.g.
``transaction.posted``, ``transaction.authorised``, ``transaction.voided``,
``transaction.reversed`` or
``transaction.expired``, and ``data`` the operation as the partner sees it.

Verify the raw body bytes exactly as received, before parsing them. A delivery can
arrive more than once (the platform retries until it gets a 2xx): deduplicate on
``event.id``. The platform's public keys come from ``GET /v1/platform/keys``
(:meth:`partner_sdk.Client.platform_keys`); keep every key id it lists, so that events
signed before a key rotation still verify.

Detached signatures
-------------------
:func:`verify_detached` checks a base64 Ed25519 signature over whole bytes: settlement
statements (issue 5) will be published with one, signed by the same platform keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature

from .errors import SignatureVerificationError, WebhookVerificationError
from .keys import InvalidKeyError, PublicKeyLike, decode_b64, load_public_key
from .models import parse_instant

WEBHOOK_SCHEME = "pointclear-webhook-v1"
WEBHOOK_ID = "Pointclear-Webhook-Id"
WEBHOOK_TIMESTAMP = "Pointclear-Webhook-Timestamp"
WEBHOOK_KEY_ID = "Pointclear-Webhook-Key-Id"
WEBHOOK_SIGNATURE = "Pointclear-Webhook-Signature"
DEFAULT_TOLERANCE = 300  # seconds either way


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook event.

    Attributes:
      id: the event id (deduplicate on it). type: e.g. ``transaction.posted``.
      created_at: when the event happened. partner: the partner it is addressed to.
      data: the event's payload (for transaction events, the operation as a dict).
      raw: the whole parsed body.
    """

    id: str
    type: str
    created_at: datetime | None
    partner: str | None
    data: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)


def webhook_message(event_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes the platform signs for one delivery (module docstring)."""
    head = "\n".join((WEBHOOK_SCHEME, event_id, timestamp)).encode("utf-8")
    return head + b"\n" + body


#: What a detached signature signs before the document's bytes: a tag, so that no other
#: message the platform signs (a webhook, a ledger seal) can pass for a document.
DETACHED_TAG = b"pointclear-document-v1\n"


def verify_detached(data: bytes, signature_b64: str, public_key: PublicKeyLike) -> None:
    """Raise :class:`SignatureVerificationError` unless ``signature_b64`` (standard base64
    of an Ed25519 signature) is ``public_key``'s signature of :data:`DETACHED_TAG` followed
    by exactly ``data``.

    Settlement statements will be signed and verified this way (issue 5).
    """
    _verify(DETACHED_TAG + data, signature_b64, public_key, SignatureVerificationError)


def _verify(data: bytes, signature_b64: str, public_key: PublicKeyLike,
            error: type[SignatureVerificationError]) -> None:
    try:
        key = load_public_key(public_key)
    except InvalidKeyError as exc:
        raise error(f"unusable public key: {exc}") from exc
    try:
        signature = decode_b64(signature_b64, what="the signature")
    except ValueError as exc:
        raise error(str(exc)) from exc
    if len(signature) != 64:
        raise error("an Ed25519 signature is 64 bytes")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise error("the signature does not verify with the platform key") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get(name.lower())
    if value is None or not str(value).strip():
        raise WebhookVerificationError(f"the {name} header is missing")
    return str(value).strip()


def verify_webhook(body: bytes, headers: Mapping[str, str],
                   public_keys: Mapping[str, PublicKeyLike], *,
                   tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> WebhookEvent:
    """Check one webhook delivery and return its event, or raise
    :class:`WebhookVerificationError`.

    ``body``: the raw request body bytes, as received. ``headers``: the request headers
    (any mapping; names are matched case-insensitively). ``public_keys``: the platform's
    keys by key id (Ed25519PublicKey, 32 raw bytes, 64 hex digits or PEM). ``tolerance``:
    how many seconds the timestamp may be from ``now`` (Unix seconds; the clock if None),
    early or late.
    """
    if isinstance(body, str):
        raise TypeError("pass the raw body bytes as received, not decoded text")
    event_id = _header(headers, WEBHOOK_ID)
    timestamp = _header(headers, WEBHOOK_TIMESTAMP)
    key_id = _header(headers, WEBHOOK_KEY_ID)
    signature = _header(headers, WEBHOOK_SIGNATURE)
    if not timestamp.isdigit():
        raise WebhookVerificationError(f"{WEBHOOK_TIMESTAMP} must be whole Unix seconds")
    if key_id not in public_keys:
        raise WebhookVerificationError(f"unknown platform key {key_id!r}: fetch the "
                                       "platform's keys again (GET /v1/platform/keys)")
    _verify(webhook_message(event_id, timestamp, body), signature, public_keys[key_id],
            WebhookVerificationError)
    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance:
        raise WebhookVerificationError(f"the webhook is stale: signed {int(age)} s ago, more "
                                       f"than the {tolerance} s tolerance")
    if age < -tolerance:
        raise WebhookVerificationError(f"the webhook is from the future: {int(-age)} s ahead, "
                                       f"more than the {tolerance} s tolerance; check clocks")
    return parse_event(body, event_id)


def parse_event(body: bytes, event_id: str | None = None) -> WebhookEvent:
    """The event in a verified body; ``event_id`` (the header's) must match its ``id``."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookVerificationError("the webhook body is not JSON") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise WebhookVerificationError("the webhook body is not an event object")
    body_id = str(raw.get("id", ""))
    if event_id is not None and body_id != event_id:
        raise WebhookVerificationError(f"the body's id {body_id!r} is not the "
                                       f"{WEBHOOK_ID} {event_id!r}")
    data = raw.get("data")
    try:
        created_at = parse_instant(raw.get("created_at"))
    except ValueError:
        created_at = None
    return WebhookEvent(id=body_id, type=raw["type"], created_at=created_at,
                        partner=raw.get("partner"),
                        data=data if isinstance(data, dict) else {}, raw=raw)
