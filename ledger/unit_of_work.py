"""The unit of work at the edge: one database transaction, committed once, retried.

Ledger functions only flush; whoever calls them (a view, a CLI command, a batch job)
runs them through :func:`run`, which

- commits on success;
- on a refusal (:class:`~ledger.errors.LedgerError`) commits too -- the ledger has
  written nothing but the idempotency record of that refusal, which must persist so that
  a retry gets the same answer -- and re-raises;
- on a serialisation failure or deadlock (SQLSTATE 40001 / 40P01), or SQLite's "database
  is locked", rolls back and runs ``work`` again from the start, with jittered
  exponential backoff. The request is the same, so its idempotency key is the same: if
  an earlier attempt did commit (a connection lost during COMMIT), the retry returns that
  attempt's outcome instead of booking twice.
"""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from .errors import LedgerError

T = TypeVar("T")
RETRYABLE_SQLSTATES = {"40001", "40P01"}


def is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    if isinstance(exc, OperationalError):
        text = str(orig).lower()
        # SQLite: the busy timeout ran out. PostgreSQL: connection dropped mid-way.
        return "database is locked" in text or "server closed the connection" in text
    return False


def _sleep(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.5, 0.005 * 2**attempt)))


def run(sessions: Callable[[], Session], work: Callable[[Session], T], *,
        attempts: int = 10, sleep: Callable[[int], None] = _sleep) -> T:
    """Run ``work(session)`` in a fresh session and commit it; see the module docstring."""
    for attempt in range(attempts):
        session = sessions()
        try:
            result = work(session)
            session.commit()
            return result
        except LedgerError:
            session.commit()
            raise
        except DBAPIError as exc:
            session.rollback()
            if not is_retryable(exc) or attempt == attempts - 1:
                raise
        finally:
            session.close()
        sleep(attempt)
    raise AssertionError("unreachable")  # pragma: no cover
