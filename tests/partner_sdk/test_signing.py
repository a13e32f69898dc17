"""The signature the client sends verifies under an independent reading of protocol
pointclear-v1 (app/api/signatures.py's docstring), and under the server's own functions."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from datetime import datetime, timezone

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.api import signatures as server_side
from partner_sdk import signing

from .conftest import KEY_ID, ok

EMPTY_DIGEST = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
SYNTAX = {
    "Pointclear-Key-Id": r"[A-Za-z0-9_-]{1,40}",
    "Pointclear-Timestamp": r"[0-9]{1,12}",
    "Pointclear-Nonce": r"[A-Za-z0-9_-]{16,64}",
    "Content-Digest": r"sha-256=:[A-Za-z0-9+/]{43}=:",
    "Pointclear-Signature": r"[A-Za-z0-9+/]{86}==",
}


def check_signed(request: httpx.Request, public_key: Ed25519PublicKey) -> bytes:
    """What the server checks, written here from the protocol text; returns the message."""
    headers = request.headers
    for name, syntax in SYNTAX.items():
        assert re.fullmatch(syntax, headers[name]), (name, headers[name])
    assert headers["Pointclear-Key-Id"] == KEY_ID
    assert abs(int(headers["Pointclear-Timestamp"]) - time.time()) <= 5
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(request.content).digest()).decode() + ":"
    assert headers["Content-Digest"] == digest
    path, _, query = request.url.raw_path.decode("ascii").partition("?")
    message = "\n".join(["pointclear-v1", request.method, path, query,
                         headers["Pointclear-Timestamp"], headers["Pointclear-Nonce"],
                         digest]).encode("utf-8")
    public_key.verify(base64.b64decode(headers["Pointclear-Signature"]), message)
    return message


def test_a_get_is_signed_over_the_digest_of_no_bytes(client, scripted, private_key):
    scripted.then(ok({"id": "banka"}))
    assert client.partner() == {"id": "banka"}
    sent = scripted.requests[0]
    assert sent.method == "GET" and sent.url.raw_path == b"/v1/partner"
    assert sent.content == b"" and sent.headers["Content-Digest"] == EMPTY_DIGEST
    message = check_signed(sent, private_key.public_key())
    assert message.split(b"\n")[:4] == [b"pointclear-v1", b"GET", b"/v1/partner", b""]


def test_a_post_signs_the_exact_compact_json_it_sends(client, scripted, private_key):
    scripted.then(ok({"id": "op-1", "kind": "issue", "points": 5000}, 201))
    client.points.issue("c-1", "BANKA", 5000, reference="welcome")
    sent = scripted.requests[0]
    assert sent.content == b'{"customer_ref":"c-1","program":"BANKA","points":5000,' \
                           b'"reference":"welcome"}'
    assert sent.headers["Content-Type"] == "application/json"
    check_signed(sent, private_key.public_key())


def test_the_path_is_signed_percent_encoded_as_sent(client, scripted, private_key):
    scripted.then(ok({"customer_ref": "mé x?#", "balances": []}))
    client.members.balances("mé x?#")
    sent = scripted.requests[0]
    assert sent.url.raw_path == b"/v1/members/m%C3%A9%20x%3F%23/balances"
    message = check_signed(sent, private_key.public_key())
    assert message.split(b"\n")[2] == b"/v1/members/m%C3%A9%20x%3F%23/balances"


def test_the_raw_query_is_signed_as_sent(client, scripted, private_key):
    scripted.then(ok({"items": [], "next_cursor": None}))
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    list(client.transactions.list(customer_ref="c 1", kind="issue", since=since, limit=5))
    sent = scripted.requests[0]
    query = sent.url.query.decode()
    assert query == "customer_ref=c+1&kind=issue&since=2026-01-01T00%3A00%3A00%2B00%3A00&limit=5"
    assert check_signed(sent, private_key.public_key()).split(b"\n")[3] == query.encode()


def test_the_servers_own_canonical_message_agrees(client, scripted, private_key):
    scripted.then(ok({"id": "op", "kind": "redemption"}, 201))
    client.redemptions.redeem("mm-1", "BANKA", 20)
    sent = scripted.requests[0]
    h = sent.headers
    assert server_side.content_digest(sent.content) == h["Content-Digest"]
    message = server_side.canonical_message("POST", "/v1/redemptions", "",
                                            h["Pointclear-Timestamp"], h["Pointclear-Nonce"],
                                            h["Content-Digest"])
    private_key.public_key().verify(base64.b64decode(h["Pointclear-Signature"]), message)


def test_sign_request_pins_time_and_nonce(private_key):
    headers = signing.sign_request(private_key, KEY_ID, "post", "/v1/issues", "", b"{}",
                                   timestamp=1767225600, nonce="n" * 22)
    assert headers["Pointclear-Timestamp"] == "1767225600"
    assert headers["Pointclear-Nonce"] == "n" * 22
    message = b"\n".join([b"pointclear-v1", b"POST", b"/v1/issues", b"", b"1767225600",
                          b"n" * 22, signing.content_digest(b"{}").encode()])
    private_key.public_key().verify(base64.b64decode(headers["Pointclear-Signature"]), message)


def test_nonces_are_fresh_and_valid():
    nonces = {signing.new_nonce() for _ in range(200)}
    assert len(nonces) == 200
    assert all(re.fullmatch(SYNTAX["Pointclear-Nonce"], n) for n in nonces)
