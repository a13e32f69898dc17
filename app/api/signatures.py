"""Partner request authentication: every API request is signed with a partner's Ed25519 key.

This module owns the wire protocol (the partner SDK implements the signing half of it),
the check of one incoming request, and the store of nonces already seen.

Protocol ``pointclear-v1``
--------------------------
A partner registers Ed25519 public keys (see :mod:`app.clearing.partners`); the platform
never holds the private half. Every request carries five headers:

``Pointclear-Key-Id: key_0123456789abcdef``
    The id of one of the partner's keys. It names the partner: there is no partner header.
    1-40 characters of ``[A-Za-z0-9_-]``.
``Pointclear-Timestamp: 1767225600``
    When the request was signed, in whole Unix seconds (1-12 ASCII digits, no sign, no
    fraction). Refused if more than 300 s from the server's clock, early or late.
``Pointclear-Nonce: 3q2-7wEAAQ_sCqY1nF0Ruw``
    16-64 characters of ``[A-Za-z0-9_-]``, never used before with this key. Make it
    random (``secrets.token_urlsafe(16)`` gives 22 characters).
``Content-Digest: sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:``
    RFC 9530 syntax with exactly one member, ``sha-256``: the standard base64 (with
    ``=`` padding) of the SHA-256 of the raw body bytes, between colons. Always sent;
    a GET or an empty body carries the digest of no bytes, shown above.
``Pointclear-Signature: <88 characters>``
    The standard base64 (with padding) of the 64-byte Ed25519 signature of the message.

The signed message is these seven lines joined by ``"\\n"`` (no newline at the end),
encoded as UTF-8 (all of them are ASCII)::

    pointclear-v1
    POST                          the method, upper case
    /v1/members/m%C3%A9/earn      the path exactly as sent: percent-encoding untouched
    expand=lots&page=2            the raw query string as sent, without "?"; may be empty
    1767225600                    the Pointclear-Timestamp value
    3q2-7wEAAQ_sCqY1nF0Ruw        the Pointclear-Nonce value
    sha-256=:...:                 the Content-Digest value

The path and query are the request target as it travels (printable ASCII only; encode
everything else), so a proxy in front of the API must pass the target through unchanged.
The body is signed through its digest, so sign the exact bytes you send: serialise JSON
once. Header values are compared after trimming surrounding spaces; a header sent twice
is malformed.

Refusals
--------
All are 401 ``application/problem+json`` with ``WWW-Authenticate: Pointclear-Signature``
and a stable ``code``; ``field`` names the header at fault, where one is.
They are checked in this order:

``signature_missing``    a header is absent (headers are checked in the order above)
``signature_malformed``  a header (or the request target) breaks the syntax above
``stale_timestamp``      the timestamp is more than the tolerance from server time
``digest_mismatch``      the body does not hash to the Content-Digest
``unknown_key``          no such key, the key is revoked, or its partner does not exist
``bad_signature``        the signature does not verify with that key
``nonce_reused``         this key already sent this nonce (a replay, or a retry that
                         forgot to sign again: sign every attempt afresh)

A suspended partner is authenticated as usual: the domain refuses its operations (422
``partner_suspended``) and its reads still work.

Nonces
------
A nonce is recorded only once the signature verifies, in its own short transaction, so a
forged request cannot burn a partner's nonces and two concurrent copies of one request
race on the primary key ``(key_id, nonce)``: exactly one commits. A request that passes
has a timestamp at most ``tolerance`` behind server time, so it can be replayed for at
most ``2 * tolerance`` after it was seen; rows older than that are purged now and then.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import re
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Response
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from app.clearing.errors import PartnerNotFound
from app.clearing.models import PartnerKey
from app.clearing.partners import active_key, get_partner
from app.db import READ_ONLY
from app.errors import problem
from ledger.types import utcnow

from .models import SeenNonce

SCHEME = "pointclear-v1"
AUTH_SCHEME = "Pointclear-Signature"
KEY_ID = "Pointclear-Key-Id"
TIMESTAMP = "Pointclear-Timestamp"
NONCE = "Pointclear-Nonce"
DIGEST = "Content-Digest"
SIGNATURE = "Pointclear-Signature"
TOLERANCE = 300  # seconds
PURGE_CHANCE = 0.01  # share of authenticated requests that also purge old nonces

log = logging.getLogger(__name__)

# Header -> (syntax, what a malformed value is told).
_SYNTAX = {
    KEY_ID: (re.compile(r"[A-Za-z0-9_-]{1,40}"), "1-40 of A-Z a-z 0-9 _ -"),
    TIMESTAMP: (re.compile(r"[0-9]{1,12}"), "whole Unix seconds"),
    NONCE: (re.compile(r"[A-Za-z0-9_-]{16,64}"), "16-64 of A-Z a-z 0-9 _ -"),
    DIGEST: (re.compile(r"sha-256=:[A-Za-z0-9+/]{43}=:"), "sha-256=:<base64 of 32 bytes>:"),
    SIGNATURE: (re.compile(r"[A-Za-z0-9+/]{86}=="), "base64 of a 64-byte Ed25519 signature"),
}
_TARGET = re.compile(r"[!-~]*")  # printable ASCII: no spaces, no newlines


class AuthError(Exception):
    """A request does not prove which partner sent it; the API answers 401 with ``code``.

    ``header`` names the header at fault when there is one.
    """

    status = 401

    def __init__(self, code: str, detail: str, *, header: str | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.header = header


class SignedHeaders(NamedTuple):
    key_id: str
    timestamp: str
    nonce: str
    digest: str
    signature: bytes


def canonical_message(method: str, path: str, query: str, timestamp: str, nonce: str,
                      content_digest: str) -> bytes:
    """The bytes a partner signs: seven lines joined by ``\\n``, UTF-8 (module docstring)."""
    lines = (SCHEME, method.upper(), path, query, timestamp, nonce, content_digest)
    return "\n".join(lines).encode("utf-8")


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` value of ``body``: ``sha-256=:<base64>:``."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"


def authenticate(sessions, request, *, now: datetime | None = None,
                 tolerance: int = TOLERANCE) -> tuple[str, str]:
    """Check the request's signature headers; return ``(partner_id, key_id)`` or raise
    :class:`AuthError`.

    ``sessions`` makes new sessions (a committing sessionmaker such as
    ``app.db.session_factory()``); every session opened here is closed here. Call this
    before the request opens its own transaction: on SQLite the nonce's write would
    otherwise wait for the request's own write lock. ``now`` (aware) overrides the clock.
    """
    now = now or utcnow()
    signed = _signed_headers(request.headers)
    path, query = _request_target(request)
    _check_fresh(signed.timestamp, now, tolerance)
    _check_digest(signed.digest, request.get_data(cache=True))
    partner_id, public_key = _load_key(sessions, signed.key_id)
    message = canonical_message(request.method, path, query, signed.timestamp, signed.nonce,
                                signed.digest)
    try:
        public_key.verify(signed.signature, message)
    except InvalidSignature:
        raise AuthError("bad_signature", f"the signature does not verify with key "
                        f"{signed.key_id!r} over {SCHEME} for this request",
                        header=SIGNATURE) from None
    _remember_nonce(sessions, signed.key_id, signed.nonce, now)
    # + 1: timestamps are whole seconds, so a nonce may be replayable up to 1 s longer.
    _maybe_purge(sessions, older_than=now - timedelta(seconds=2 * tolerance + 1))
    return partner_id, signed.key_id


def _signed_headers(headers) -> SignedHeaders:
    """Each header is present once and matches its syntax."""
    values = {}
    for name, (syntax, shape) in _SYNTAX.items():
        sent = headers.getlist(name)
        if not sent:
            raise AuthError("signature_missing", f"the {name} header is required", header=name)
        value = sent[0].strip()
        if len(sent) > 1 or not syntax.fullmatch(value):
            raise AuthError("signature_malformed", f"{name} must be sent once, as {shape}",
                            header=name)
        values[name] = value
    return SignedHeaders(values[KEY_ID], values[TIMESTAMP], values[NONCE], values[DIGEST],
                         base64.b64decode(values[SIGNATURE], validate=True))


def _check_fresh(timestamp: str, now: datetime, tolerance: int) -> None:
    """The timestamp is at most ``tolerance`` seconds from ``now``, either way."""
    server = int(now.timestamp())
    if abs(int(timestamp) - server) > tolerance:
        raise AuthError("stale_timestamp", f"{TIMESTAMP} {timestamp} is more than {tolerance} s "
                        f"from server time {server}; check the clock", header=TIMESTAMP)


def _check_digest(digest: str, body: bytes) -> None:
    """The body hashes to the Content-Digest the partner signed."""
    if not hmac.compare_digest(digest, content_digest(body)):
        raise AuthError("digest_mismatch", f"the body does not match its {DIGEST}; sign the "
                        "exact bytes you send", header=DIGEST)


def _load_key(sessions, key_id: str) -> tuple[str, Ed25519PublicKey]:
    """The key exists, is not revoked, and its partner exists. Reads only, so on SQLite
    the transaction begins deferred and does not take the write lock."""
    with sessions() as session:
        session.connection(execution_options={READ_ONLY: True})
        found = _active_key_of(session, key_id)
    if found is None:
        raise AuthError("unknown_key", f"key {key_id!r} is unknown or revoked", header=KEY_ID)
    return found


def _active_key_of(session: Session, key_id: str) -> tuple[str, Ed25519PublicKey] | None:
    row = session.get(PartnerKey, key_id)
    if row is None:
        return None
    try:
        partner_id = get_partner(session, row.partner_id).id
    except PartnerNotFound:
        return None
    public_key = active_key(session, partner_id, key_id)
    return None if public_key is None else (partner_id, public_key)


def _request_target(request) -> tuple[str, str]:
    """The path and query string exactly as the client sent them.

    The raw target comes from ``RAW_URI`` (gunicorn, werkzeug) or ``REQUEST_URI`` (uWSGI,
    mod_wsgi); without either, the decoded path is percent-encoded again, which agrees
    with every client that encodes only what it must.
    """
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw and raw.startswith("/"):
        path = raw.partition("?")[0]
    elif raw:  # absolute-form: http://host/path?query
        path = urlsplit(raw).path or "/"
    else:
        path = quote(request.script_root + request.path, safe="/:@!$&'()*+,;=-._~")
    query = request.query_string.decode("latin-1")
    if not (_TARGET.fullmatch(path) and _TARGET.fullmatch(query)):
        raise AuthError("signature_malformed", "the path and query must be printable ASCII: "
                        "percent-encode everything else")
    return path, query


def _remember_nonce(sessions, key_id: str, nonce: str, now: datetime) -> None:
    """A key uses a nonce once. Its own transaction, committed at once: the primary key
    lets exactly one of two concurrent copies of a request through."""
    try:
        with sessions() as session, session.begin():
            session.add(SeenNonce(key_id=key_id, nonce=nonce, seen_at=now))
    except IntegrityError:
        raise AuthError("nonce_reused", f"key {key_id!r} already used nonce {nonce!r}; sign "
                        "every request, and every retry, with a fresh nonce",
                        header=NONCE) from None


def _maybe_purge(sessions, *, older_than: datetime) -> None:
    """Now and then, in its own transaction, forget nonces too old to matter. A failure
    is logged, not raised: the request is authenticated and a later purge catches up."""
    if random.random() >= PURGE_CHANCE:
        return
    try:
        with sessions() as session, session.begin():
            purge_nonces(session, older_than=older_than)
    except SQLAlchemyError:
        log.warning("purging old nonces failed", exc_info=True)


def purge_nonces(session: Session, *, older_than: datetime) -> int:
    """Delete the nonces seen before ``older_than``; return how many. The caller commits.

    Safe from ``older_than = now - 2 * tolerance`` back: a request seen earlier than that
    has a stale timestamp by now, so its replay is refused without the row.
    """
    result = session.execute(delete(SeenNonce).where(SeenNonce.seen_at < older_than),
                             execution_options={"synchronize_session": False})
    return result.rowcount


def auth_problem(err: AuthError) -> Response:
    """The 401 problem+json for an :class:`AuthError`, with the scheme to use."""
    response = problem(err.status, err.code, err.detail, field=err.header)
    response.headers["WWW-Authenticate"] = AUTH_SCHEME
    return response
