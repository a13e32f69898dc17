"""The delivery worker: sign each due event with the platform key and POST it.

Protocol ``pointclear-webhook-v1``. The body is the event's JSON exactly as stored,
the same bytes on every attempt. The request carries

    Content-Type: application/json
    Pointclear-Webhook-Id: <event id>            the same on every retry: dedupe on it
    Pointclear-Webhook-Timestamp: <unix seconds> when this attempt was signed
    Pointclear-Webhook-Key-Id: <platform key id> first 16 bytes of SHA-256 of the raw
                                                 public key, hex (GET /v1/platform/keys)
    Pointclear-Webhook-Signature: <base64>       standard base64 of the Ed25519
                                                 signature, by the platform key, of the
                                                 UTF-8 lines

        pointclear-webhook-v1
        <event id>
        <timestamp>
        <raw body>

joined by "\\n". A receiver verifies the signature with the public key of that key id,
refuses a timestamp too far from its clock (replays), and answers 2xx once it has the
event; any other answer, a redirect, a timeout or a refused connection is retried.

A round (:func:`deliver_due`) claims due deliveries in one short transaction, POSTs
them with no transaction open, and records each result in its own transaction
(:mod:`app.clearing.webhook_queue`).
"""

from __future__ import annotations

import base64
import math
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.client import HTTPException
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.clearing import webhook_queue
from app.clearing.webhook_queue import Claim, Outcome
from ledger.seal import key_id
from ledger.types import utcnow
from ledger.unit_of_work import run

SIGNATURE_VERSION = "pointclear-webhook-v1"
USER_AGENT = "Pointclear-Webhooks/1"
MAX_RESPONSE_READ = 64 * 1024
LEASE_MARGIN = timedelta(seconds=60)


def signed_message(event_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes the signature covers (see the module docstring)."""
    return "\n".join((SIGNATURE_VERSION, event_id, timestamp, "")).encode("utf-8") + body


def webhook_headers(private_key: Ed25519PrivateKey, event_id: str, body: bytes, *,
                    timestamp: int) -> dict[str, str]:
    """The headers of one attempt, signed at ``timestamp`` (Unix seconds)."""
    ts = str(int(timestamp))
    signature = private_key.sign(signed_message(event_id, ts, body))
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Pointclear-Webhook-Id": event_id,
        "Pointclear-Webhook-Timestamp": ts,
        "Pointclear-Webhook-Key-Id": key_id(private_key.public_key()),
        "Pointclear-Webhook-Signature": base64.b64encode(signature).decode("ascii"),
    }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer that is not 2xx: it is logged and retried, never
    followed (the event would go somewhere the partner did not subscribe)."""

    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: dict[str, str],
         timeout: float) -> tuple[int | None, str | None]:
    """POST ``body``; the HTTP status, or None and what stopped the request."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(MAX_RESPONSE_READ)
            return response.status, None
    except urllib.error.HTTPError as err:
        err.close()
        return err.code, f"HTTP {err.code} {err.reason}".strip()
    except urllib.error.URLError as err:
        return None, f"connection failed: {err.reason}"
    except (OSError, HTTPException, ValueError) as err:  # timeouts, resets, bad replies
        return None, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


@dataclass(frozen=True)
class Result:
    """One attempt: its claim, the HTTP status or error, how long it took, and what
    recording it did to the delivery."""

    claim: Claim
    status: int | None
    error: str | None
    duration_ms: int
    outcome: Outcome


def lease_for(batch: int, concurrency: int, timeout: float) -> timedelta:
    """How long a claim keeps a delivery from other workers: the whole batch's POSTs
    at their slowest, and a margin."""
    rounds = math.ceil(batch / max(1, concurrency))
    return timedelta(seconds=rounds * timeout) + LEASE_MARGIN


def deliver_due(sessions, private_key: Ed25519PrivateKey, *, now: datetime | None = None,
                batch: int = 50, timeout: float = 10.0, concurrency: int = 4,
                partners: list[str] | None = None, poster: Callable = post,
                clock: Callable[[], float] = time.time,
                report: Callable[[Result], None] | None = None) -> list[Result]:
    """One round: claim up to ``batch`` deliveries due at ``now`` (default: the clock;
    only to ``partners`` if given), POST them (``concurrency`` at a time), record every
    result. ``now`` also stamps the attempts and schedules the retries, so tests drive
    time without sleeping; the signature's timestamp is always the real ``clock``."""
    lease = lease_for(batch, concurrency, timeout)
    claim_at = now or utcnow()
    claims = run(sessions, lambda s: webhook_queue.claim_due(
        s, now=claim_at, limit=batch, lease=lease, partners=partners))
    lock = threading.Lock()

    def attempt(claim: Claim) -> Result:
        event_id = str(claim.event_id)
        headers = webhook_headers(private_key, event_id, claim.body, timestamp=clock())
        started = time.monotonic()
        status, error = poster(claim.url, claim.body, headers, timeout)
        duration_ms = round((time.monotonic() - started) * 1000)
        attempted_at = now or utcnow()
        outcome = run(sessions, lambda s: webhook_queue.record_attempt(
            s, claim, status=status, error=error, duration_ms=duration_ms, now=attempted_at))
        result = Result(claim, status, error, duration_ms, outcome)
        if report is not None:
            with lock:
                report(result)
        return result

    if len(claims) <= 1 or concurrency <= 1:
        return [attempt(claim) for claim in claims]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(claims)),
                            thread_name_prefix="webhook") as pool:
        return list(pool.map(attempt, claims))


def describe(result: Result) -> str:
    """One line of progress for a person watching the worker."""
    c, o = result.claim, result.outcome
    answer = f"HTTP {result.status}" if result.status is not None else result.error
    where = f"{c.event_type} {c.event_id} -> {c.url}"
    if o.state == "delivered":
        return f"delivered {where} ({answer}, {result.duration_ms} ms)"
    if o.state == "pending":
        return (f"retry     {where}: {answer} (attempt {c.attempt}; next at "
                f"{o.next_attempt_at:%Y-%m-%d %H:%M:%S}Z)")
    if o.state == "failed":
        return f"FAILED    {where}: {answer} (attempt {c.attempt}, the last; replay it later)"
    return f"logged    {where}: {answer} (replayed or re-claimed meanwhile)"
