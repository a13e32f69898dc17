"""Signing requests the way a partner does: a test helper and a model for the SDK.

It implements the signing half of protocol ``pointclear-v1`` (see
:mod:`app.api.signatures`) on its own, without importing the server's code, so the tests
check that two readings of the protocol agree.
"""

from __future__ import annotations

import base64
import hashlib
import json as jsonlib
import secrets
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

EMPTY_BODY_DIGEST = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


def public_key_hex(private_key: Ed25519PrivateKey) -> str:
    """The raw public key as 64 hex digits: what a partner registers."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def body_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest with the one member ``sha-256``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def sign_headers(private_key: Ed25519PrivateKey, key_id: str, method: str, path: str,
                 query: str = "", body: bytes = b"", *, timestamp: int | None = None,
                 nonce: str | None = None) -> dict[str, str]:
    """The five headers that authenticate one request: ``path`` and ``query`` exactly as
    they will be sent (percent-encoded, query without "?"), ``body`` the exact bytes.

    A fresh nonce and the current time unless given; sign every attempt afresh.
    """
    timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_urlsafe(16) if nonce is None else nonce
    digest = body_digest(body)
    lines = ("pointclear-v1", method.upper(), path, query, timestamp_text, nonce, digest)
    message = "\n".join(lines).encode("utf-8")
    return {
        "Pointclear-Key-Id": key_id,
        "Pointclear-Timestamp": timestamp_text,
        "Pointclear-Nonce": nonce,
        "Content-Digest": digest,
        "Pointclear-Signature": base64.b64encode(private_key.sign(message)).decode(),
    }


def query_string(query: str | Mapping | None) -> str:
    """A raw query string as given, or a mapping encoded once (its order kept)."""
    if query is None:
        return ""
    return query if isinstance(query, str) else urlencode(query, doseq=True)


class SignedClient:
    """A Flask test client whose requests are signed with one partner key.

    The body is serialised once and exactly those bytes are signed and sent.
    ``timestamp`` and ``nonce`` pass through to :func:`sign_headers`.
    """

    def __init__(self, flask_client, private_key: Ed25519PrivateKey, key_id: str):
        self.client = flask_client
        self.private_key = private_key
        self.key_id = key_id

    def request(self, method: str, path: str, *, query=None, body: bytes = b"",
                headers: Mapping[str, str] | None = None, **sign_options):
        query = query_string(query)
        signed = sign_headers(self.private_key, self.key_id, method, path, query, body,
                              **sign_options)
        url = f"{path}?{query}" if query else path
        return self.client.open(url, method=method.upper(), data=body,
                                headers={**(headers or {}), **signed})

    def get(self, path: str, query=None, **options):
        return self.request("GET", path, query=query, **options)

    def post(self, path: str, json=None, *, data: bytes = b"", headers=None, query=None,
             **sign_options):
        """POST ``json`` (as application/json) or the raw bytes ``data``."""
        headers = dict(headers or {})
        if json is not None:
            data = jsonlib.dumps(json, separators=(",", ":")).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        return self.request("POST", path, query=query, body=data, headers=headers,
                            **sign_options)
