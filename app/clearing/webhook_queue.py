"""The delivery queue as the worker sees it: claim what is due, record what came of it.

A worker never holds a database transaction open while it waits on a partner's
server. It claims a batch of due deliveries in one short transaction -- counting the
attempt, writing a fresh claim token and pushing ``next_attempt_at`` past the time the
POST may take (a lease) -- commits, POSTs, then records each outcome in a transaction of
its own. Claims take the rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
workers share the queue without sending a delivery twice at once; SQLite has one writer
at a time anyway. A worker that dies mid-POST leaves its claims to run out: they are
then due again, so a delivery is sent at least once, and every send carries the same
event id and body, so a receiver can discard repeats. Only the result of the current
claim (its token still on the delivery) moves the delivery on; a late one is logged.

Each partner gets a fair share of a batch: one partner's backlog of thousands does not
hold up another's few deliveries behind it.

Retries: after the n-th failed attempt the next comes 10 s x 2^(n-1) later, at most
6 h, less up to a quarter at random so deliveries that failed together do not all return
together: 10 s, 20 s, 40 s ... 5.7 h (after the 12th), then every 6 h. After
``MAX_ATTEMPTS`` (25) the delivery fails; the last attempt comes about 3 days (2.6 to
3.5) after the first, so a partner's endpoint can be down over a long weekend and lose
nothing. The log keeps every attempt; a failed delivery can be replayed.
"""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from .webhook_models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription

MAX_ATTEMPTS = 25
FIRST_RETRY = timedelta(seconds=10)
LONGEST_RETRY = timedelta(hours=6)
MAX_ERROR = 500


@dataclass(frozen=True)
class Claim:
    """One delivery a worker is to POST now: the ``attempt``-th since it was queued.

    Attributes:
      delivery_id, event_id, event_type: what is sent.
      url: the subscription's endpoint (as it is now: a changed URL applies from the
        next claim).
      body: the event's JSON, exactly as stored (the bytes the signature covers).
      token: this claim's own token; a result counts only while it is the delivery's.
    """

    delivery_id: uuid.UUID
    attempt: int
    event_id: uuid.UUID
    event_type: str
    url: str
    body: bytes
    token: str


def retry_delay(attempts: int, rand: Callable[[], float] = random.random) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt (jitter from ``rand``)."""
    full = min(FIRST_RETRY * 2 ** min(attempts - 1, 20), LONGEST_RETRY)
    return full * (1 - 0.25 * rand())


def _due(session: Session, partner_id: str, now: datetime, limit: int) -> list:
    return list(session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.partner_id == partner_id, WebhookDelivery.state == "pending",
               WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)))


def claim_due(session: Session, *, now: datetime, limit: int, lease: timedelta,
              partners: list[str] | None = None) -> list[Claim]:
    """Claim up to ``limit`` deliveries due at ``now`` (only those to ``partners``, if
    given: a slow endpoint can get a worker of its own), oldest due first within each
    partner, an equal share per partner with deliveries due (what one leaves unused goes
    to the others). A delivery whose subscription was disabled meanwhile fails here
    instead of being sent. Fewer than ``limit`` claims means nothing else is due (that
    another worker has not claimed)."""
    statement = select(WebhookSubscription.partner_id).distinct()
    if partners is not None:
        statement = statement.where(WebhookSubscription.partner_id.in_(list(partners)))
    waiting = list(session.scalars(statement))
    random.shuffle(waiting)  # who goes first when the shares round up past the limit
    claims: list[Claim] = []
    while waiting and len(claims) < limit:
        share = max(1, -(-(limit - len(claims)) // len(waiting)))
        more = []
        for partner_id in waiting:
            wanted = min(share, limit - len(claims))
            if wanted <= 0:
                more.append(partner_id)
                continue
            due = _due(session, partner_id, now, wanted)
            claims += _claim(session, due, now, lease)
            if len(due) == wanted:  # it may have more
                more.append(partner_id)
        session.flush()  # what was claimed or failed is no longer due
        waiting = more
    return claims


def _claim(session: Session, due: list[WebhookDelivery], now: datetime,
           lease: timedelta) -> list[Claim]:
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
            delivery.claim_token = None
            continue
        delivery.attempts += 1
        delivery.next_attempt_at = now + lease
        delivery.claim_token = secrets.token_hex(16)
        event = events[delivery.event_id]
        claims.append(Claim(delivery.id, delivery.attempts, event.id, event.type,
                            subscription.url, event.payload.encode("utf-8"),
                            delivery.claim_token))
    return claims


def _current(session: Session, claim: Claim) -> WebhookDelivery | None:
    """The claim's delivery, locked, if the claim is still its current one."""
    delivery = session.scalars(select(WebhookDelivery)
                               .where(WebhookDelivery.id == claim.delivery_id)
                               .with_for_update()).one()
    if delivery.state != "pending" or delivery.claim_token != claim.token:
        return None
    return delivery


def release(session: Session, claim: Claim, *, now: datetime) -> bool:
    """Hand back a claim that was not attempted (no time was left in its lease): the
    delivery is due again at ``now`` and the attempt is not counted."""
    delivery = _current(session, claim)
    if delivery is None:
        return False
    delivery.attempts -= 1
    delivery.next_attempt_at, delivery.claim_token = now, None
    session.flush()
    return True


@dataclass(frozen=True)
class Outcome:
    """What recording an attempt did: ``state`` after it (``delivered``, ``pending``
    for a retry at ``next_attempt_at``, ``failed``), ``superseded`` when the claim was
    no longer current (a replay, another claim after its lease ran out, a disabled
    subscription) so this result changed only the log, or ``released`` when the claim
    was handed back unattempted."""

    state: str
    next_attempt_at: datetime | None = None


def record_attempt(session: Session, claim: Claim, *, status: int | None,
                   error: str | None, duration_ms: int, now: datetime,
                   rand: Callable[[], float] = random.random) -> Outcome:
    """Log one POST of ``claim`` and, if the claim is still current, move its delivery
    on: a 2xx delivers it; anything else schedules the next attempt, or fails it after
    the last. ``error`` is what the partner reads: a coarse category, never details of
    the platform's network."""
    session.add(WebhookAttempt(delivery_id=claim.delivery_id, attempted_at=now, status=status,
                               error=error[:MAX_ERROR] if error else None,
                               duration_ms=max(0, duration_ms)))
    delivery = _current(session, claim)
    if delivery is None:
        session.flush()
        return Outcome("superseded")
    ok = status is not None and 200 <= status < 300
    delivery.claim_token, delivery.last_status = None, status
    delivery.last_error = None if ok else (error or f"http_{status}")[:MAX_ERROR]
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
