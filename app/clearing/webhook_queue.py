"""The delivery queue as the worker sees it: claim what is due, record what came of it.

A worker never holds a database transaction open while it waits on a partner's
server. It claims a batch of due deliveries in one short transaction -- counting the
attempt and pushing ``next_attempt_at`` past the time the POST may take (a lease) --
commits, POSTs, then records each outcome in a transaction of its own. Claims take the
rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers share the queue
without sending a delivery twice at once; SQLite has one writer at a time anyway. A
worker that dies mid-POST leaves its claims to run out: they are then due again, so a
delivery is sent at least once, and every send carries the same event id and body, so
a receiver can discard repeats.

Failures are retried after 10 s x 2^(n-1) (at most an hour), less up to a quarter at
random so deliveries that failed together do not all return together; after
``MAX_ATTEMPTS`` the delivery fails. Its log keeps every attempt.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from .webhook_models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription

MAX_ATTEMPTS = 15
FIRST_RETRY = timedelta(seconds=10)
LONGEST_RETRY = timedelta(hours=1)
MAX_ERROR = 500


@dataclass(frozen=True)
class Claim:
    """One delivery a worker is to POST now: the ``attempt``-th since it was queued.

    Attributes:
      delivery_id, event_id, event_type: what is sent.
      url: the subscription's endpoint.
      body: the event's JSON, exactly as stored (the bytes the signature covers).
    """

    delivery_id: uuid.UUID
    attempt: int
    event_id: uuid.UUID
    event_type: str
    url: str
    body: bytes


def retry_delay(attempts: int, rand: Callable[[], float] = random.random) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt (jitter from ``rand``)."""
    full = min(FIRST_RETRY * 2 ** min(attempts - 1, 20), LONGEST_RETRY)
    return full * (1 - 0.25 * rand())


def claim_due(session: Session, *, now: datetime, limit: int, lease: timedelta,
              partners: list[str] | None = None) -> list[Claim]:
    """Claim up to ``limit`` deliveries due at ``now``, oldest due first (only those to
    ``partners``, if given: a slow endpoint can get a worker of its own). A delivery
    whose subscription was disabled meanwhile fails here instead of being sent."""
    statement = select(WebhookDelivery).where(WebhookDelivery.state == "pending",
                                              WebhookDelivery.next_attempt_at <= now)
    if partners is not None:
        statement = statement.where(WebhookDelivery.partner_id.in_(list(partners)))
    due = list(session.scalars(
        statement.order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)))
    if not due:
        return []
    subscriptions = {s.id: s for s in session.scalars(select(WebhookSubscription).where(
        WebhookSubscription.id.in_({d.subscription_id for d in due})))}
    events = {e.id: e for e in session.scalars(select(WebhookEvent).where(
        WebhookEvent.id.in_([d.event_id for d in due])))}
    claims = []
    for delivery in due:
        subscription = subscriptions[delivery.subscription_id]
        if subscription.status != "active":
            delivery.state, delivery.last_error = "failed", "subscription disabled"
            continue
        delivery.attempts += 1
        delivery.next_attempt_at = now + lease
        event = events[delivery.event_id]
        claims.append(Claim(delivery.id, delivery.attempts, event.id, event.type,
                            subscription.url, event.payload.encode("utf-8")))
    session.flush()
    return claims


@dataclass(frozen=True)
class Outcome:
    """What recording an attempt did: ``state`` after it (``delivered``, ``pending``
    for a retry at ``next_attempt_at``, ``failed``), or ``superseded`` when the delivery
    was replayed or re-claimed meanwhile and this late result changed only the log."""

    state: str
    next_attempt_at: datetime | None = None


def record_attempt(session: Session, claim: Claim, *, status: int | None,
                   error: str | None, duration_ms: int, now: datetime,
                   rand: Callable[[], float] = random.random) -> Outcome:
    """Log one POST of ``claim`` and move its delivery on: a 2xx delivers it; anything
    else schedules the next attempt, or fails it after the last."""
    session.add(WebhookAttempt(delivery_id=claim.delivery_id, attempted_at=now, status=status,
                               error=error[:MAX_ERROR] if error else None,
                               duration_ms=max(0, duration_ms)))
    delivery = session.scalars(select(WebhookDelivery)
                               .where(WebhookDelivery.id == claim.delivery_id)
                               .with_for_update()).one()
    ok = status is not None and 200 <= status < 300
    if delivery.state != "pending" or (not ok and delivery.attempts != claim.attempt):
        session.flush()
        return Outcome("superseded")
    delivery.last_status = status
    delivery.last_error = None if ok else (error or f"HTTP {status}")[:MAX_ERROR]
    if ok:
        delivery.state, delivery.delivered_at = "delivered", now
        outcome = Outcome("delivered")
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.state = "failed"
        outcome = Outcome("failed")
    else:
        delivery.next_attempt_at = now + retry_delay(delivery.attempts, rand)
        outcome = Outcome("pending", delivery.next_attempt_at)
    session.flush()
    return outcome
