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
from functools import wraps
from typing import Callable

from flask import Response, g, request
from marshmallow import Schema, ValidationError

from app import db
from app.clearing import members
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


def member_required(view):
    """``Authorization: Bearer mt_...``: the member the token was issued for."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise signatures.AuthError("member_token_missing",
                                       "send Authorization: Bearer <member token>",
                                       header="Authorization")
        try:
            g.member_token = read(lambda s: members.member_for_token(s, token.strip()))
        except InvalidMemberToken as exc:
            raise signatures.AuthError("invalid_member_token", exc.message,
                                       header="Authorization") from exc
        return view(*args, **kwargs)
    return wrapper


def body(schema: Schema) -> dict:
    """The request's JSON body, loaded by ``schema`` (ValidationError -> 422)."""
    data = request.get_json(silent=True) if request.get_data() else {}
    if not isinstance(data, dict):
        raise ValidationError({"_body": ["the body must be a JSON object"]})
    return schema.load(data)


def query(schema: Schema) -> dict:
    return schema.load(request.args.to_dict())


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


def write(work: Callable, *, status: int = 201) -> Response:
    """Run ``work(session, key) -> dict`` as the request's one idempotent unit of work."""
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
        return _json(begun.status_code, begun.response, replayed=True)
    if begun.kind == idempotency.MISMATCH:
        return problem(422, "idempotency_key_reused", f"{IDEMPOTENCY_HEADER} {key!r} was "
                       "already used for a different request", field=IDEMPOTENCY_HEADER)
    if begun.kind == idempotency.IN_PROGRESS:
        return _busy(key)

    def unit(session):
        payload = json.dumps(work(session, key), default=JSONProvider.default)
        idempotency.finish(session, partner_id, key, begun.token, status, payload)
        return payload

    try:
        payload = run(sessions, unit, idempotent=True)
    except LedgerError as err:
        refusal = problem_for(err)
        idempotency.finish_separately(sessions, partner_id, key, begun.token,
                                      refusal.status_code, refusal.get_data(as_text=True))
        return refusal
    except idempotency.LostOwnership:
        return _busy(key)
    except BaseException:
        idempotency.abandon(sessions, partner_id, key, begun.token)
        raise
    return _json(status, payload)


def _busy(key: str) -> Response:
    response = problem(409, "request_in_progress", f"a request with {IDEMPOTENCY_HEADER} "
                       f"{key!r} is still being processed; retry it shortly",
                       field=IDEMPOTENCY_HEADER)
    response.headers["Retry-After"] = "1"
    return response


# --- pagination --------------------------------------------------------------------------------

def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError({"cursor": ["not a cursor this API returned"]}) from exc


def page(items: list, limit: int, cursor_of: Callable) -> dict:
    """The list envelope: ``items`` and, if there may be more, ``next_cursor``. Views
    fetch ``limit + 1`` rows so that a last page says so."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items,
            "next_cursor": encode_cursor(cursor_of(items[-1])) if more and items else None}
