"""The signing half of the request protocol ``pointclear-v1``, written from its spec.

Every partner request carries five headers::

    Pointclear-Key-Id       the id of the partner's registered key
    Pointclear-Timestamp    whole Unix seconds when signed (the server allows 300 s)
    Pointclear-Nonce        16-64 of [A-Za-z0-9_-], never used before with this key
    Content-Digest          sha-256=:<base64 of SHA-256 of the body bytes>: (always sent)
    Pointclear-Signature    base64 of the Ed25519 signature of the message below

The signed message is seven lines joined by ``\\n`` (no final newline), UTF-8::

    pointclear-v1
    METHOD                  upper case
    /v1/members/m%C3%A9     the path exactly as sent (percent-encoding untouched)
    a=1&b=2                 the raw query string as sent, without "?" (may be empty)
    TIMESTAMP
    NONCE
    CONTENT-DIGEST

Sign every attempt afresh: the server refuses a nonce it has seen, so a retry that
re-sent the first attempt's headers would be refused. The body is covered through its
digest, so the exact bytes sent must be the bytes signed.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SCHEME = "pointclear-v1"
KEY_ID = "Pointclear-Key-Id"
TIMESTAMP = "Pointclear-Timestamp"
NONCE = "Pointclear-Nonce"
DIGEST = "Content-Digest"
SIGNATURE = "Pointclear-Signature"

#: Characters left as they are in a path segment. The same set the server uses when it
#: must rebuild the target itself, so both readings agree behind any WSGI server.
SEGMENT_SAFE = ":@!$&'()*+,;=-._~"


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` of ``body``: ``sha-256=:<base64>:``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def canonical_message(method: str, path: str, query: str, timestamp: str, nonce: str,
                      digest: str) -> bytes:
    """The bytes to sign: the seven lines of the module docstring."""
    lines = (SCHEME, method.upper(), path, query, timestamp, nonce, digest)
    return "\n".join(lines).encode("utf-8")


def new_nonce() -> str:
    """22 random characters of [A-Za-z0-9_-]."""
    return secrets.token_urlsafe(16)


def sign_request(private_key: Ed25519PrivateKey, key_id: str, method: str, path: str,
                 query: str, body: bytes, *, timestamp: int | None = None,
                 nonce: str | None = None) -> dict[str, str]:
    """The five authentication headers for one attempt of one request.

    ``path`` and ``query`` are the request target exactly as it travels (percent-encoded,
    the query without "?"); ``body`` the exact bytes sent. A fresh nonce and the current
    time unless given (tests pin them).
    """
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = new_nonce() if nonce is None else nonce
    digest = content_digest(body)
    message = canonical_message(method, path, query, stamp, nonce, digest)
    signature = base64.b64encode(private_key.sign(message)).decode("ascii")
    return {KEY_ID: key_id, TIMESTAMP: stamp, NONCE: nonce, DIGEST: digest,
            SIGNATURE: signature}


def segment(value: str) -> str:
    """``value`` percent-encoded as one path segment (a customer ref, an operation id):
    ``/``, ``?``, ``#``, spaces and non-ASCII are encoded; UTF-8 underneath."""
    if not isinstance(value, str) or not value:
        raise ValueError("a path parameter must be a non-empty string")
    return quote(value, safe=SEGMENT_SAFE)
