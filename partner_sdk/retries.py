"""When the SDK tries a request again, and how long it waits first.

Retried: a connection that failed or dropped, a timeout, ``409 request_in_progress``
(the first attempt with this Idempotency-Key is still running), ``429`` and any ``5xx``.
Never retried: any other 4xx -- the same request would be refused again.

Retrying a POST is safe because every attempt carries the same Idempotency-Key: the
server books once and answers a retry with the first answer (``Idempotent-Replayed``).

The wait is exponential backoff with full jitter -- a random time between 0 and
``min(cap, base * 2**attempt)`` -- unless the server sent ``Retry-After``, which is
honoured (up to ``max_retry_after``). Both the policy (``backoff=``) and the sleep
(``sleep=``) are options of the client, so tests stub them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

#: ``backoff(attempt, retry_after) -> seconds``: ``attempt`` is 0 before the first retry,
#: 1 before the second...; ``retry_after`` the server's Retry-After in seconds, or None.
Backoff = Callable[[int, "float | None"], float]
Sleep = Callable[[float], None]

#: Transport failures worth another attempt: no answer came, or only part of one.
RETRYABLE_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,  # connect, read, write, pool
    httpx.NetworkError,  # connect refused, reset, dropped mid-read or mid-write
    httpx.RemoteProtocolError,  # the server closed the connection without a full answer
)


def retryable_status(status: int, code: str | None) -> bool:
    """Whether an answer with ``status`` and problem ``code`` is worth another attempt."""
    if status == 409:
        return code == "request_in_progress"
    return status == 429 or status >= 500


def retry_after_seconds(headers: Mapping[str, str], *,
                        now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP date), or None."""
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class ExponentialBackoff:
    """The default policy: full jitter over ``base * 2**attempt``, capped at ``cap``
    seconds; a server's Retry-After wins, capped at ``max_retry_after``.

    Each client makes its own (with its own random generator): no shared state.
    """

    def __init__(self, *, base: float = 0.5, cap: float = 8.0, max_retry_after: float = 60.0,
                 rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.max_retry_after = max_retry_after
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (0-based)."""
        return float(min(self.cap, self.base * (2 ** attempt)))

    def __call__(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self._rng.uniform(0.0, self.ceiling(attempt))


def default_sleep(seconds: float) -> None:
    """``time.sleep``, looked up when called so that it can be patched in tests."""
    if seconds > 0:
        time.sleep(seconds)
