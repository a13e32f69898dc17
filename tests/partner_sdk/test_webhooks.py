"""Webhooks: a genuine delivery verifies and parses; a tampered, stale, future,
unknown-key or incomplete one is refused. Signed here from the format's text, not with
the SDK's own message builder."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from partner_sdk import (
    SignatureVerificationError,
    WebhookVerificationError,
    public_key_hex,
    public_key_pem,
    verify_detached,
    verify_webhook,
)
from partner_sdk.webhooks import DETACHED_TAG, webhook_message

from .conftest import BASE_URL, KEY_ID, PARTNER, ok

NOW = 1767225600
EVENT = {"id": "evt_0190a", "type": "transaction.posted", "created_at": "2026-01-01T00:00:00Z",
         "partner": PARTNER, "data": {"id": "op-1", "kind": "issue", "points": 5000}}


@pytest.fixture
def platform_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def deliver(key: Ed25519PrivateKey, event: dict | None = None, *, timestamp: int = NOW,
            key_id: str = "pk_1") -> tuple[bytes, dict[str, str]]:
    """A delivery as the platform makes it: lines, then the raw body, joined by \\n."""
    event = event or EVENT
    body = json.dumps(event).encode()
    message = f"pointclear-webhook-v1\n{event['id']}\n{timestamp}\n".encode() + body
    return body, {"Pointclear-Webhook-Id": event["id"],
                  "Pointclear-Webhook-Timestamp": str(timestamp),
                  "Pointclear-Webhook-Key-Id": key_id,
                  "Pointclear-Webhook-Signature": base64.b64encode(key.sign(message)).decode()}


def test_a_genuine_webhook_verifies_and_parses(platform_key):
    body, headers = deliver(platform_key)
    event = verify_webhook(body, headers, {"pk_1": platform_key.public_key()}, now=NOW + 10)
    assert (event.id, event.type, event.partner) == ("evt_0190a", "transaction.posted", PARTNER)
    assert event.data == EVENT["data"] and event.raw == EVENT
    assert event.created_at is not None and event.created_at.year == 2026


@pytest.mark.parametrize("form", ["object", "raw", "hex", "pem", "pem-bytes"])
def test_public_keys_in_every_form(platform_key, form):
    public = platform_key.public_key()
    given = {"object": public, "raw": bytes.fromhex(public_key_hex(public)),
             "hex": public_key_hex(public), "pem": public_key_pem(public),
             "pem-bytes": public_key_pem(public).encode()}[form]
    body, headers = deliver(platform_key)
    assert verify_webhook(body, headers, {"pk_1": given}, now=NOW).id == "evt_0190a"


def test_header_names_are_case_insensitive(platform_key):
    body, headers = deliver(platform_key)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_webhook(body, lower, {"pk_1": platform_key.public_key()}, now=NOW)


def test_the_sdk_builds_the_same_message(platform_key):
    body, headers = deliver(platform_key)
    expected = b"pointclear-webhook-v1\nevt_0190a\n1767225600\n" + body
    assert webhook_message("evt_0190a", "1767225600", body) == expected


@pytest.mark.parametrize("tamper, why", [
    (lambda b, h: (b.replace(b"5000", b"9000"), h), "does not verify"),
    (lambda b, h: (b, {**h, "Pointclear-Webhook-Timestamp": str(NOW + 1)}), "does not verify"),
    (lambda b, h: (b, {**h, "Pointclear-Webhook-Id": "evt_other"}), "does not verify"),
    (lambda b, h: (b, {**h, "Pointclear-Webhook-Signature": "AAAA"}), "64 bytes"),
    (lambda b, h: (b, {**h, "Pointclear-Webhook-Signature": "not base64!"}), "base64"),
])
def test_a_tampered_webhook_is_refused(platform_key, tamper, why):
    body, headers = tamper(*deliver(platform_key))
    with pytest.raises(WebhookVerificationError, match=why):
        verify_webhook(body, headers, {"pk_1": platform_key.public_key()}, now=NOW)


def test_a_webhook_signed_by_another_key_is_refused(platform_key):
    body, headers = deliver(Ed25519PrivateKey.generate())
    with pytest.raises(WebhookVerificationError, match="does not verify"):
        verify_webhook(body, headers, {"pk_1": platform_key.public_key()}, now=NOW)


def test_stale_and_future_webhooks_are_refused(platform_key):
    keys = {"pk_1": platform_key.public_key()}
    body, headers = deliver(platform_key)
    assert verify_webhook(body, headers, keys, now=NOW + 300)  # at the edge: accepted
    assert verify_webhook(body, headers, keys, now=NOW - 300)
    with pytest.raises(WebhookVerificationError, match="stale"):
        verify_webhook(body, headers, keys, now=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_webhook(body, headers, keys, now=NOW - 301)
    with pytest.raises(WebhookVerificationError, match="stale"):
        verify_webhook(body, headers, keys, now=NOW + 61, tolerance=60)


def test_the_clock_is_the_default_now(platform_key):
    keys = {"pk_1": platform_key.public_key()}
    assert verify_webhook(*deliver(platform_key, timestamp=int(time.time())), keys)
    with pytest.raises(WebhookVerificationError, match="stale"):
        verify_webhook(*deliver(platform_key, timestamp=int(time.time()) - 3600), keys)


def test_an_unknown_key_id_is_refused(platform_key):
    body, headers = deliver(platform_key, key_id="pk_new")
    with pytest.raises(WebhookVerificationError, match="unknown platform key 'pk_new'"):
        verify_webhook(body, headers, {"pk_1": platform_key.public_key()}, now=NOW)


@pytest.mark.parametrize("missing", ["Pointclear-Webhook-Id", "Pointclear-Webhook-Timestamp",
                                     "Pointclear-Webhook-Key-Id",
                                     "Pointclear-Webhook-Signature"])
def test_a_missing_header_is_refused(platform_key, missing):
    body, headers = deliver(platform_key)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"{missing} header is missing"):
        verify_webhook(body, headers, {"pk_1": platform_key.public_key()}, now=NOW)


def test_a_signed_body_that_is_not_an_event_is_refused(platform_key):
    keys = {"pk_1": platform_key.public_key()}
    not_json = b"id=evt_0190a"
    message = b"pointclear-webhook-v1\nevt_0190a\n1767225600\n" + not_json
    signature = base64.b64encode(platform_key.sign(message)).decode()
    headers = {"Pointclear-Webhook-Id": "evt_0190a", "Pointclear-Webhook-Timestamp": str(NOW),
               "Pointclear-Webhook-Key-Id": "pk_1", "Pointclear-Webhook-Signature": signature}
    with pytest.raises(WebhookVerificationError, match="not JSON"):
        verify_webhook(not_json, headers, keys, now=NOW)
    other_id = {**EVENT, "id": "evt_x"}
    body, headers = deliver(platform_key, other_id)
    headers["Pointclear-Webhook-Id"] = "evt_0190a"
    message = b"pointclear-webhook-v1\nevt_0190a\n1767225600\n" + body
    headers["Pointclear-Webhook-Signature"] = base64.b64encode(platform_key.sign(message)).decode()
    with pytest.raises(WebhookVerificationError, match="is not the"):
        verify_webhook(body, headers, keys, now=NOW)


def test_text_instead_of_raw_bytes_is_a_type_error(platform_key):
    body, headers = deliver(platform_key)
    with pytest.raises(TypeError):
        verify_webhook(body.decode(), headers, {"pk_1": platform_key.public_key()})  # type: ignore[arg-type]


def test_the_client_fetches_platform_keys_when_it_meets_a_new_one(scripted, private_key,
                                                                  platform_key):
    from partner_sdk import Client

    scripted.then(ok({"items": [{"key_id": "pk_1", "public_key": public_key_hex(platform_key),
                                 "algorithm": "ed25519"}]}))
    with Client(PARTNER, KEY_ID, private_key, base_url=BASE_URL,
                transport=scripted.transport) as client:
        body, headers = deliver(platform_key)
        assert client.verify_webhook(body, headers, now=NOW).id == "evt_0190a"
        assert client.verify_webhook(body, headers, now=NOW).id == "evt_0190a"
        assert len(scripted.requests) == 1  # cached until a new key id shows up
        body, headers = deliver(platform_key, {**EVENT, "partner": "skyair"})
        with pytest.raises(WebhookVerificationError, match="addressed to partner 'skyair'"):
            client.verify_webhook(body, headers, now=NOW)


def test_detached_signatures_verify_whole_bytes(platform_key):
    statement = b"date,partner,net\n2026-01-15,banka,-1960\n"
    signature = base64.b64encode(platform_key.sign(DETACHED_TAG + statement)).decode()
    verify_detached(statement, signature, public_key_hex(platform_key))
    # Without the tag it is some other signed message (a webhook, a seal): refused.
    untagged = base64.b64encode(platform_key.sign(statement)).decode()
    with pytest.raises(SignatureVerificationError):
        verify_detached(statement, untagged, platform_key.public_key())
    with pytest.raises(SignatureVerificationError):
        verify_detached(statement + b" ", signature, platform_key.public_key())
    with pytest.raises(SignatureVerificationError, match="public key"):
        verify_detached(statement, signature, "abcd")


def test_unknown_key_ids_cannot_make_the_client_refetch_at_will(scripted, private_key,
                                                               platform_key):
    """Anyone can POST to a webhook endpoint: a forged key id refreshes the keys at most
    every few minutes, and a failed fetch is a refusal, not a crash."""
    from partner_sdk import Client

    scripted.then(ok({"items": [{"key_id": "pk_1", "public_key": public_key_hex(platform_key),
                                 "algorithm": "ed25519"}]}))
    with Client(PARTNER, KEY_ID, private_key, base_url=BASE_URL, transport=scripted.transport,
                backoff=lambda attempt, after: 0.0, sleep=lambda s: None) as client:
        body, headers = deliver(platform_key)
        assert client.verify_webhook(body, headers, now=NOW).id == "evt_0190a"
        for forged in ("pk_2", "pk_3", "pk_4"):
            body, headers = deliver(platform_key, key_id=forged)
            with pytest.raises(WebhookVerificationError):
                client.verify_webhook(body, headers, now=NOW)
        assert len(scripted.requests) == 1  # no refetch within the refresh interval
        body, headers = deliver(platform_key, {**EVENT, "partner": None})
        with pytest.raises(WebhookVerificationError, match="addressed to partner None"):
            client.verify_webhook(body, headers, now=NOW)

    failing = [httpx.Response(503, json={"code": "unavailable"})] * 4
    scripted.then(*failing)
    with Client(PARTNER, KEY_ID, private_key, base_url=BASE_URL, transport=scripted.transport,
                backoff=lambda attempt, after: 0.0, sleep=lambda s: None) as client:
        body, headers = deliver(platform_key)
        with pytest.raises(WebhookVerificationError, match="could not be fetched"):
            client.verify_webhook(body, headers, now=NOW)
