"""The unit of work at the edge: one database transaction, committed once, retried.

Ledger functions only flush; whoever calls them (a view, a CLI command, a batch job)
runs them through :func:`run`, which

- commits on success;
- on a refusal (:class:`~ledger.errors.LedgerError`) rolls back *everything* the work
  wrote -- an operation that booked points and was then refused its money leg leaves
  nothing behind -- then, if the refused request carried an idempotency key, records
  the refusal on its own and commits that, so a retry gets the same answer; and
  re-raises;
- on a serialisation failure or deadlock (SQLSTATE 40001 / 40P01), SQLite's "database
  is locked", a connection lost during the work, or an account frozen or closed
  between a booking's checks and writes (:class:`~ledger.errors.ConcurrentChange`),
  rolls back and runs ``work`` again from the start, with jittered exponential backoff.
  The request is the same, so its idempotency keys are the same.

A connection lost *during COMMIT* is different: the commit may have happened. It is
retried only when the caller says the work is idempotent (every booking in it carries
an idempotency key, so a retry returns what the first attempt booked); otherwise the
error reaches the caller, who must find out before trying again.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from . import idempotency as idem
from .errors import ConcurrentChange, LedgerError

T = TypeVar("T")
RETRYABLE_SQLSTATES = {"40001", "40P01"}


def is_retryable(exc: BaseException) -> bool:
    """Did the database roll the transaction back, so that running it again is safe?"""
    if isinstance(exc, ConcurrentChange):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig).lower():
        return True  # SQLite: the busy timeout ran out; nothing was written
    return bool(exc.connection_invalidated)  # the server is gone: it rolled back


def _sleep(attempt: int) -> None:
    time.sleep(random.uniform(0, min(1.0, 0.01 * 2**attempt)))


def run(sessions: Callable[[], Session], work: Callable[[Session], T], *,
        attempts: int = 10, idempotent: bool = False,
        sleep: Callable[[int], None] = _sleep) -> T:
    """Run ``work(session)`` in a fresh session and commit it; see the module docstring."""
    for attempt in range(attempts):
        last = attempt == attempts - 1
        session = sessions()
        try:
            try:
                result = work(session)
            except LedgerError as err:
                session.rollback()
                if _record_refusal(sessions, err) or last:
                    raise
                # Another request with the same key has committed meanwhile: run again
                # to return its outcome.
                continue
            except (DBAPIError, ConcurrentChange) as exc:
                session.rollback()
                if last or not is_retryable(exc):
                    raise
                sleep(attempt)
                continue
            try:
                session.commit()
                return result
            except DBAPIError as exc:
                session.rollback()
                lost = exc.connection_invalidated and not idempotent
                if last or lost or not is_retryable(exc):
                    raise
        finally:
            session.close()
        sleep(attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _record_refusal(sessions, err: LedgerError) -> bool:
    """Store a refusal's idempotency record alone. False if the key got another outcome."""
    refusal = getattr(err, "refusal", None)
    if refusal is None:
        return True
    key, fp, now = refusal
    session = sessions()
    try:
        earlier = idem.record_refusal(session, key, fp, err, now)
        session.commit()
        return earlier is None
    finally:
        session.close()
