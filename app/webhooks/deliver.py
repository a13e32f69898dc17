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
them with no transaction open -- each to a vetted address, within a hard deadline
(:mod:`.transport`) -- and records each result in its own transaction
(:mod:`app.clearing.webhook_queue`). The lease of a claim outlasts every attempt the
claim allows, so two workers never POST one delivery at once.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.clearing import webhook_queue
from app.clearing.webhook_queue import Claim, Outcome
from ledger.seal import key_id
from ledger.types import utcnow
from ledger.unit_of_work import run

from . import transport

SIGNATURE_VERSION = "pointclear-webhook-v1"
USER_AGENT = "Pointclear-Webhooks/1"
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


@dataclass(frozen=True)
class Result:
    """One attempt: its claim, the HTTP status or the error category the partner sees,
    how long it took, what recording it did to the delivery, and ``detail`` -- what
    happened, for the worker's output only."""

    claim: Claim
    status: int | None
    error: str | None
    duration_ms: int
    outcome: Outcome
    detail: str | None = None


def post_window(batch: int, concurrency: int, timeout: float) -> float:
    """Seconds after a claim within which every POST of its batch has ended: a round of
    ``concurrency`` attempts per ``timeout`` (each attempt's hard deadline), and one
    round more for recording results. An attempt whose full ``timeout`` no longer fits
    is not made: its claim is handed back (:func:`.webhook_queue.release`)."""
    return (math.ceil(batch / max(1, concurrency)) + 1) * timeout


def lease_for(batch: int, concurrency: int, timeout: float) -> timedelta:
    """How long a claim keeps a delivery from other workers: the whole POST window, and
    a margin for the last results to be recorded and for workers' clocks that differ.
    No attempt of the claim can still be running when it runs out."""
    return timedelta(seconds=post_window(batch, concurrency, timeout)) + LEASE_MARGIN


def deliver_due(sessions, private_key: Ed25519PrivateKey, *, now: datetime | None = None,
                batch: int = 50, timeout: float = 10.0, concurrency: int = 4,
                partners: list[str] | None = None, dev_targets: bool = False,
                poster: Callable[..., transport.Answer] = transport.post,
                clock: Callable[[], float] = time.time,
                monotonic: Callable[[], float] = time.monotonic,
                report: Callable[[Result], None] | None = None) -> list[Result]:
    """One round: claim up to ``batch`` deliveries due at ``now`` (default: the clock;
    only to ``partners`` if given), POST them (``concurrency`` at a time, each finished
    within ``timeout`` seconds whatever the endpoint does; ``dev_targets``: see
    :mod:`app.clearing.webhook_urls`), record every result. ``now`` also stamps the
    attempts and schedules the retries, so tests drive time without sleeping; the
    signature's timestamp is always the real ``clock``, deadlines the real
    ``monotonic`` (the one ``poster`` checks)."""
    lease = lease_for(batch, concurrency, timeout)
    claim_at, claimed = now or utcnow(), monotonic()
    claims = run(sessions, lambda s: webhook_queue.claim_due(
        s, now=claim_at, limit=batch, lease=lease, partners=partners))
    window_ends = claimed + post_window(batch, concurrency, timeout)
    lock = threading.Lock()

    def attempt(claim: Claim) -> Result:
        started = monotonic()
        if started + timeout > window_ends:
            run(sessions, lambda s: webhook_queue.release(s, claim, now=now or utcnow()))
            result = Result(claim, None, None, 0, Outcome("released"),
                            "not attempted: its lease would run out first")
        else:
            event_id = str(claim.event_id)
            headers = webhook_headers(private_key, event_id, claim.body, timestamp=clock())
            answer = poster(claim.url, claim.body, headers, deadline=started + timeout,
                            dev_targets=dev_targets)
            duration_ms = round((monotonic() - started) * 1000)
            attempted_at = now or utcnow()
            outcome = run(sessions, lambda s: webhook_queue.record_attempt(
                s, claim, status=answer.status, error=answer.error, duration_ms=duration_ms,
                now=attempted_at))
            result = Result(claim, answer.status, answer.error, duration_ms, outcome,
                            answer.detail)
        if report is not None:
            with lock:
                report(result)
        return result

    if len(claims) <= 1 or concurrency <= 1:
        return [attempt(claim) for claim in claims]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(claims)),
                            thread_name_prefix="webhook") as pool:
        return list(pool.map(attempt, claims))


def shown(url: str) -> str:
    """``scheme://host[:port]/path`` of an endpoint: its query string often carries a
    secret, which has no place in a log."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def describe(result: Result) -> str:
    """One line of progress for a person watching the worker (with the details the
    partner's delivery log leaves out)."""
    c, o = result.claim, result.outcome
    answer = ": ".join(filter(None, (result.error, result.detail))) or f"HTTP {result.status}"
    where = f"{c.event_type} {c.event_id} -> {shown(c.url)}"
    if o.state == "delivered":
        return f"delivered {where} ({answer}, {result.duration_ms} ms)"
    if o.state == "pending":
        return (f"retry     {where}: {answer} (attempt {c.attempt}; next at "
                f"{o.next_attempt_at:%Y-%m-%d %H:%M:%S}Z)")
    if o.state == "failed":
        return f"FAILED    {where}: {answer} (attempt {c.attempt}, the last; replay it later)"
    if o.state == "released":
        return f"released  {where}: {answer}; due again"
    return f"logged    {where}: {answer} (replayed or re-claimed meanwhile)"
