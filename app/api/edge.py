"""What every API view shares: who is asking, how a write runs, how a list pages.

A partner endpoint is wrapped in :func:`partner_required` (Ed25519 request signature,
see :mod:`.signatures`); a member endpoint in :func:`member_required` (a member token).

A write (:func:`write`) is one request, one unit of work, at most one booking:

1. the body is validated first -- a malformed request uses up no idempotency key;
2. the ``Idempotency-Key`` is claimed in a committed row of its own (:mod:`.idempotency`):
   a finished request is replayed, a running one is 409, a reused key is 422;
3. the work runs through ``ledger.unit_of_work.run`` (one transaction, retried on
   serialisation failures with the same keys) and stores its response in the same
   transaction, so the booking and the answer a retry will get commit together;
4. a refusal rolls everything back and stores only the refusal; an unexpected error
   releases the key so that the client may retry.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from functools import wraps
from typing import Callable

from flask import Response, current_app, g, request
from marshmallow import Schema, ValidationError

from app import db
from app.clearing import members
from app.clearing.crypto import ContactCipher, load_data_key
from app.clearing.errors import InvalidMemberToken
from app.errors import PROBLEM_JSON, problem, problem_for
from ledger.errors import LedgerError
from ledger.unit_of_work import run

from . import JSONProvider, idempotency, signatures

IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_PAGE, MAX_PAGE = 50, 200


def partner_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        g.partner_id, g.key_id = signatures.authenticate(db.session_factory(), request)
        return view(*args, **kwargs)
    return wrapper


class MemberAuthError(signatures.AuthError):
    """A member endpoint's 401: it challenges with the Bearer scheme (RFC 6750)."""


def member_auth_problem(err: MemberAuthError) -> Response:
    response = problem(err.status, err.code, err.detail, field=err.header)
    response.headers["WWW-Authenticate"] = 'Bearer realm="pointclear-members"'
    return response


def member_required(view):
    """``Authorization: Bearer mt_...``: the member the token was issued for."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise MemberAuthError("member_token_missing",
                                  "send Authorization: Bearer <member token>",
                                  header="Authorization")
        try:
            g.member_token = read(lambda s: members.member_for_token(s, token.strip()))
        except InvalidMemberToken as exc:
            raise MemberAuthError("invalid_member_token", exc.message,
                                  header="Authorization") from exc
        return view(*args, **kwargs)
    return wrapper


def _no_duplicates(pairs):
    names = [name for name, _ in pairs]
    for name in names:
        if names.count(name) > 1:
            raise ValidationError({name: ["the field is given twice"]})
    return dict(pairs)


def _check_text(value, path: str = "") -> None:
    """Refuse NUL characters anywhere: no database stores them in text."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError({path or "_body": ["must not contain NUL characters"]})
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, path or "_body")
            _check_text(item, f"{path}.{key}".strip("."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_text(item, f"{path}.{i}".strip("."))


def body(schema: Schema) -> dict:
    """The request's JSON body, loaded by ``schema`` (ValidationError -> 422).

    Parsed here rather than by Flask so that every malformed body is a 422: invalid
    UTF-8 or JSON, nesting too deep for the parser, a field given twice (which other
    parsers would read differently), NUL characters.
    """
    raw = request.get_data()
    if raw.strip() and request.mimetype != "application/json":
        raise ValidationError({"_body": ["send the body as application/json"]})
    try:
        data = json.loads(raw, object_pairs_hook=_no_duplicates) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise ValidationError({"_body": ["the body is not valid JSON"]}) from None
    if not isinstance(data, dict):
        raise ValidationError({"_body": ["the body must be a JSON object"]})
    _check_text(data)
    return schema.load(data)


def query(schema: Schema) -> dict:
    args = request.args.to_dict()
    _check_text(args)
    return schema.load(args)


def check_path(view_args: dict | None) -> None:
    """Refuse path parameters with NUL characters (registered before every request)."""
    _check_text(view_args or {})


def read(work: Callable):
    """Run ``work(session)`` in a read-only session (never blocks a booking on SQLite)."""
    with db.read_session_factory()() as session:
        return work(session)


def _json(status: int, payload: str, *, replayed: bool = False) -> Response:
    response = Response(payload, status=status,
                        mimetype="application/json" if status < 400 else PROBLEM_JSON)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def cipher() -> ContactCipher:
    """The data-key cipher (contact data, secret responses), read once per process."""
    if "pointclear.cipher" not in current_app.extensions:
        current_app.extensions["pointclear.cipher"] = ContactCipher(
            load_data_key(current_app.config["DATA_KEY"]))
    return current_app.extensions["pointclear.cipher"]


def _sealed(partner_id: str, key: str, payload: str) -> str:
    return cipher().encrypt(f"idempotency:{partner_id}:{key}", {"body": payload})


def _unsealed(partner_id: str, key: str, stored: str) -> str:
    if stored.startswith("{"):
        return stored
    return cipher().decrypt(f"idempotency:{partner_id}:{key}", stored)["body"]


def write(work: Callable, *, status: int = 201, secret: bool = False) -> Response:
    """Run ``work(session, key) -> dict`` as the request's one idempotent unit of work.

    ``secret``: the answer holds a credential (a member token); the copy kept for
    replays is sealed with the data key, never stored in clear.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return problem(400, "idempotency_key_missing",
                       f"every POST needs an {IDEMPOTENCY_HEADER} header",
                       field=IDEMPOTENCY_HEADER)
    try:
        idempotency.check_key(key)
    except idempotency.InvalidIdempotencyKey as exc:
        return problem(400, "invalid_idempotency_key", str(exc), field=IDEMPOTENCY_HEADER)
    partner_id, sessions = g.partner_id, db.session_factory()
    fp = idempotency.fingerprint(request.method, request.full_path.rstrip("?"),
                                 request.get_data())
    begun = idempotency.begin(sessions, partner_id, key, fp)
    if begun.kind == idempotency.REPLAY:
        return _json(begun.status_code, _unsealed(partner_id, key, begun.response),
                     replayed=True)
    if begun.kind == idempotency.MISMATCH:
        return problem(422, "idempotency_key_reused", f"{IDEMPOTENCY_HEADER} {key!r} was "
                       "already used for a different request", field=IDEMPOTENCY_HEADER)
    if begun.kind == idempotency.IN_PROGRESS:
        return _busy(key)

    def unit(session):
        payload = json.dumps(work(session, key), default=JSONProvider.default)
        kept = _sealed(partner_id, key, payload) if secret else payload
        idempotency.finish(session, partner_id, key, begun.token, status, kept)
        return payload

    try:
        payload = run(sessions, unit, idempotent=True)
    except LedgerError as err:
        return _refused(sessions, partner_id, key, begun.token, err)
    except idempotency.LostOwnership:
        return _busy(key)
    except BaseException:
        idempotency.abandon(sessions, partner_id, key, begun.token)
        raise
    return _json(status, payload)


def _refused(sessions, partner_id: str, key: str, token: str, err: LedgerError) -> Response:
    """Keep the refusal for retries; if the key was taken over meanwhile, say busy. A
    conflict of the moment (409: the delivery is being attempted) is not kept: a retry
    with the same key may succeed once it is over."""
    refusal = problem_for(err)
    if not idempotency.is_storable(refusal.status_code):
        idempotency.abandon(sessions, partner_id, key, token)
        return refusal
    try:
        idempotency.finish_separately(sessions, partner_id, key, token, refusal.status_code,
                                      refusal.get_data(as_text=True))
    except idempotency.LostOwnership:
        return _busy(key)
    except BaseException:
        idempotency.abandon(sessions, partner_id, key, token)
        raise
    return refusal


def _busy(key: str) -> Response:
    response = problem(409, "request_in_progress", f"a request with {IDEMPOTENCY_HEADER} "
                       f"{key!r} is still being processed; retry it shortly",
                       field=IDEMPOTENCY_HEADER)
    response.headers["Retry-After"] = "1"
    return response


# --- pagination --------------------------------------------------------------------------------

def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


_CURSOR = re.compile(r"[A-Za-z0-9_-]{2,400}")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        if not _CURSOR.fullmatch(cursor):
            raise ValueError("not base64url")
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        _check_text(value, "cursor")
        if not value:
            raise ValueError("empty")
        return value
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError({"cursor": ["not a cursor this API returned"]}) from exc


def page(items: list, limit: int, cursor_of: Callable) -> dict:
    """The list envelope: ``items`` and, if there may be more, ``next_cursor``. Views
    fetch ``limit + 1`` rows so that a last page says so."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items,
            "next_cursor": encode_cursor(cursor_of(items[-1])) if more and items else None}
