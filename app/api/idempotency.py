"""The HTTP ``Idempotency-Key`` store (IETF draft "The Idempotency-Key HTTP Header Field").

Every POST carries an ``Idempotency-Key``; a retry with the same key and the same request
gets the first answer back and changes nothing. Records are per (partner, key) in
``api_idempotency`` (:class:`~app.api.models.RequestRecord`). The protocol of one request:

1. :func:`begin`, in its own short transaction, inserts a ``running`` row with a fresh
   random *token* and commits it before the work starts. Committing first is the point:
   a concurrent retry must see that the request is under way (and get 409) instead of
   running the work a second time beside it. The outcomes:

   - ``started`` -- the caller owns the key (holds the token) and must do the work;
   - ``replay`` -- the request finished before: answer its stored status and body;
   - ``mismatch`` -- the key was used for a different request, running or done
     (the API answers 422 ``idempotency_key_reused``);
   - ``in_progress`` -- the same request is running (the API answers 409).

   A ``running`` row older than ``stale_after`` belongs to a process that died. It is
   taken over by one conditional UPDATE that replaces the token only if it is still the
   one we read, so of several concurrent retries exactly one wins (``started``); the rest
   get ``in_progress``.

2. :func:`finish`, inside the work's own transaction, marks the row ``done`` with the
   response -- only if the caller's token still owns it -- so the response commits
   atomically with the booking. If the run was taken over meanwhile it raises
   :class:`LostOwnership`; the caller's transaction rolls back and nothing is booked
   twice. On PostgreSQL the UPDATE also locks the row until that commit, so a takeover
   racing it waits and then finds the row done.

3. A refusal (4xx) rolled the work back: :func:`finish_separately` stores it on its own,
   so a retry gets the same refusal. An unexpected error (500): :func:`abandon` deletes
   the row so a retry may run again. A crash does neither; its row goes stale.

Only answers a retry must get again are stored; the caller decides, and this module
refuses the ones that must never be stored: every 5xx (the server failed, a retry may
succeed), 401 (fix the credentials and retry), 409 (a conflict of the moment: the key
was busy) and 429 (rate limited: retry later). For those the caller calls :func:`abandon`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.types import utcnow
from ledger.unit_of_work import run

from .models import RequestRecord

STARTED, REPLAY, MISMATCH, IN_PROGRESS = "started", "replay", "mismatch", "in_progress"
STALE_AFTER = timedelta(seconds=60)
NEVER_STORED = frozenset({401, 409, 429})
_KEY = re.compile(r"[\x20-\x7e]{1,200}")
_INSERT_ATTEMPTS = 3

Sessions = Callable[[], Session]


class IdempotencyError(Exception):
    """Root of the errors of the HTTP idempotency store."""

    code = "idempotency_error"


class InvalidIdempotencyKey(IdempotencyError):
    """An ``Idempotency-Key`` must be 1-200 printable ASCII characters."""

    code = "invalid_idempotency_key"


class LostOwnership(IdempotencyError):
    """Only the holder of a run's current token may store its response; the run was
    taken over (or finished) by another request, so this transaction must roll back."""

    code = "idempotency_key_taken_over"


@dataclass(frozen=True, slots=True)
class Begin:
    """What :func:`begin` found for a request.

    Attributes:
      kind: ``STARTED``, ``REPLAY``, ``MISMATCH`` or ``IN_PROGRESS``.
      token: ``STARTED`` only: the run's token, for :func:`finish` and friends.
      status_code: ``REPLAY`` only: the stored HTTP status.
      response: ``REPLAY`` only: the stored response body, exactly as stored.
    """

    kind: str
    token: str | None = None
    status_code: int | None = None
    response: str | None = None


def check_key(key) -> str:
    """Return ``key`` if it is a valid ``Idempotency-Key``; raise otherwise."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidIdempotencyKey("Idempotency-Key must be 1-200 printable ASCII characters")
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 hex of the request: what "the same request" means for a key.

    Method and path are length-prefixed, so no two different requests hash the same
    bytes. ``path`` is the request target the API gives meaning to (with its query
    string, if it has one); ``body`` is the raw bytes as received.
    """
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode()):
        digest.update(b"%d:" % len(part) + part)
    digest.update(bytes(body))
    return digest.hexdigest()


def is_storable(status_code: int) -> bool:
    """May a response with this status be stored and replayed? (Module docstring.)"""
    return status_code < 500 and status_code not in NEVER_STORED


def begin(sessions: Sessions, partner_id: str, key: str, fingerprint: str, *,
          now: datetime | None = None, stale_after: timedelta = STALE_AFTER) -> Begin:
    """Claim ``key`` for this request in a committed transaction of its own."""
    check_key(key)
    now = now or utcnow()
    token = secrets.token_hex(16)
    for _ in range(_INSERT_ATTEMPTS):
        try:
            # Idempotent: if the commit is lost and the INSERT runs again, _examine
            # recognises our own token.
            run(sessions, lambda s: _insert_running(s, partner_id, key, fingerprint,
                                                    token, now), idempotent=True)
            return Begin(STARTED, token=token)
        except IntegrityError as exc:
            error = exc  # the key exists (or the partner does not: re-raised below)
        found = run(sessions, lambda s: _examine(s, partner_id, key, fingerprint, token,
                                                 now, stale_after), idempotent=True)
        if found is not None:
            return found
        # The row was abandoned between our INSERT and our read: insert again.
    raise error


def _insert_running(session, partner_id, key, fp, token, now) -> None:
    session.add(RequestRecord(partner_id=partner_id, key=key, fingerprint=fp,
                              state="running", token=token, started_at=now))
    session.flush()


def _examine(session, partner_id, key, fp, token, now, stale_after) -> Begin | None:
    """Classify an existing record; take a stale run over. None if there is none."""
    record = session.get(RequestRecord, (partner_id, key), populate_existing=True)
    if record is None:
        return None
    if record.fingerprint != fp:
        return Begin(MISMATCH)
    if record.state == "done":
        return Begin(REPLAY, status_code=record.status_code, response=record.response)
    if record.token == token:
        return Begin(STARTED, token=token)  # our own INSERT or takeover, retried
    if now - record.started_at < stale_after:
        return Begin(IN_PROGRESS)
    return _take_over(session, partner_id, key, record.token, token, now)


def _take_over(session, partner_id, key, stale_token, token, now) -> Begin:
    # Compare-and-set on the token: of several retries taking over at once, the first
    # UPDATE wins; the others (on PostgreSQL they wait for its commit) match no row.
    taken = session.execute(
        update(RequestRecord)
        .where(*_owned(partner_id, key, stale_token))
        .values(token=token, started_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    return Begin(STARTED, token=token) if taken else Begin(IN_PROGRESS)


def finish(session: Session, partner_id: str, key: str, token: str, status_code: int,
           response: str, *, now: datetime | None = None) -> None:
    """Store the response in the work's own transaction (the caller commits).

    Call it last, right before the commit: on PostgreSQL it holds the row lock until then.
    Raises :class:`LostOwnership` if ``token`` no longer owns the run.
    """
    if not is_storable(status_code):
        raise ValueError(f"a {status_code} response is never stored; abandon the run")
    stored = session.execute(
        update(RequestRecord)
        .where(*_owned(partner_id, key, token))
        .values(state="done", status_code=status_code, response=response,
                finished_at=now or utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not stored:
        raise LostOwnership(f"idempotency key {key!r} of partner {partner_id!r} is no "
                            f"longer this run's: a retry took it over")


def finish_separately(sessions: Sessions, partner_id: str, key: str, token: str,
                      status_code: int, response: str, *,
                      now: datetime | None = None) -> None:
    """Store a refusal in a transaction of its own (the work's was rolled back)."""
    run(sessions, lambda s: finish(s, partner_id, key, token, status_code, response,
                                   now=now))


def abandon(sessions: Sessions, partner_id: str, key: str, token: str) -> bool:
    """Delete our running record after an unexpected error, so a retry may run again.

    True if it was deleted; False if the run had been taken over (or finished).
    """
    return run(sessions, lambda s: s.execute(
        delete(RequestRecord)
        .where(*_owned(partner_id, key, token))
        .execution_options(synchronize_session=False)
    ).rowcount == 1)


def _owned(partner_id: str, key: str, token: str) -> tuple:
    return (RequestRecord.partner_id == partner_id, RequestRecord.key == key,
            RequestRecord.token == token, RequestRecord.state == "running")
