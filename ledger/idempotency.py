"""Idempotency keys: one request per key, one outcome per request.

A write that carries an :class:`IdempotencyKey` stores, in the same database transaction
as its effect, the fingerprint of the request and its outcome: the transaction it booked,
or the refusal it met. A retry with the same key and the same request gets that outcome
back -- the same transaction, or the same refusal even if it would succeed now -- and
changes nothing. The same key with a different request is :class:`IdempotencyConflict`.

Two concurrent requests with one key cannot both book: the record's primary key is the
(scope, key) pair, and the second INSERT waits for the first transaction and then finds
its row. Records are never purged by the ledger, so they outlive any client's retry
window; a retention job, if ever needed, must keep at least 30 days.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from . import errors
from .errors import IdempotencyConflict, LedgerError
from .models import IdempotencyRecord

@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A caller's key for one request.

    Attributes:
      scope: who owns the key (a partner id, ``"admin"``, a job name); keys of different
        scopes never collide.
      key: the caller's own string, 1-200 characters.
    """

    scope: str
    key: str

    def __post_init__(self):
        if not isinstance(self.scope, str) or not 1 <= len(self.scope) <= 100:
            raise errors.InvalidIdempotencyKey("idempotency scope must be 1-100 characters",
                                               field="scope")
        if not isinstance(self.key, str) or not 1 <= len(self.key) <= 200:
            raise errors.InvalidIdempotencyKey(
                "idempotency key must be 1-200 characters", field="idempotency_key"
            )


def _canonical(value):
    # The same instant in another timezone, or an id as text or as UUID, is the same
    # request. Anything else that is not JSON was refused before we got here.
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} in an idempotent request")


def fingerprint(operation: str, request: dict) -> str:
    """SHA-256 of the request in canonical JSON: what "the same request" means."""
    body = json.dumps(
        {"operation": operation, **request}, sort_keys=True, separators=(",", ":"),
        default=_canonical,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _insert_if_absent(session: Session, values: dict, sql=None) -> bool:
    """INSERT the record unless the key exists; True if this call inserted it."""
    from .sql import Sql

    return (sql or Sql(session)).insert_idempotency(values)


def claim(
    session: Session, key: IdempotencyKey, fp: str, transaction_id: uuid.UUID, now: datetime,
    *, sql=None,
) -> IdempotencyRecord | None:
    """Record that ``key`` books ``transaction_id``; return the earlier record if any."""
    if _insert_if_absent(session, dict(
        scope=key.scope, key=key.key, fingerprint=fp, transaction_id=transaction_id,
        created_at=now,
    ), sql):
        return None
    return _existing(session, key)


def record_refusal(
    session: Session, key: IdempotencyKey, fp: str, error: LedgerError, now: datetime
) -> IdempotencyRecord | None:
    """Record that ``key`` was refused with ``error``; return the earlier record if any."""
    if _insert_if_absent(session, dict(
        scope=key.scope, key=key.key, fingerprint=fp, error_code=error.code,
        error={"message": error.message, "field": error.field, "details": error.details},
        created_at=now,
    )):
        return None
    return _existing(session, key)


def lookup(session: Session, key: IdempotencyKey) -> IdempotencyRecord | None:
    return session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.scope == key.scope, IdempotencyRecord.key == key.key)
        .execution_options(populate_existing=True)
    )


def lookup_many(session: Session, keys: list[tuple[str, str]]) -> list[IdempotencyRecord]:
    """The records of those (scope, key) pairs that have one."""
    found = []
    for start in range(0, len(keys), 500):
        found += session.scalars(
            select(IdempotencyRecord)
            .where(tuple_(IdempotencyRecord.scope, IdempotencyRecord.key)
                   .in_(keys[start:start + 500]))
        ).all()
    return found


def _existing(session: Session, key: IdempotencyKey) -> IdempotencyRecord:
    record = lookup(session, key)
    assert record is not None, "a conflicting idempotency record must be visible"
    return record


def check_same_request(record: IdempotencyRecord, fp: str, key: IdempotencyKey) -> None:
    if record.fingerprint != fp:
        raise IdempotencyConflict(
            f"idempotency key {key.key!r} was already used for a different request",
            field="idempotency_key",
        )


def stored_refusal(record: IdempotencyRecord) -> LedgerError:
    """Rebuild the refusal stored in ``record`` as the exception it was."""
    cls = _ERRORS_BY_CODE.get(record.error_code, LedgerError)
    data = record.error or {}
    err = cls(data.get("message", record.error_code), field=data.get("field"),
              **(data.get("details") or {}))
    if cls is LedgerError:  # a refusal of a layer above the ledger: keep its code
        err.code = record.error_code
    err.replayed = True
    return err


_ERRORS_BY_CODE = {
    cls.code: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, LedgerError)
}
