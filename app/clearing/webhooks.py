"""Webhook subscriptions and the delivery log, as a partner manages and reads them.

A partner subscribes a URL to event types (:data:`.events.EVENT_TYPES`, or ``*``); from
then on each of its events of those types gets a delivery to that URL (created with the
event, see :mod:`.events`); which URLs are accepted, :mod:`.webhook_urls` says. Moving
a subscription to another URL keeps its pending deliveries. Disabling a subscription
stops it at once: its pending deliveries fail with "subscription disabled" and no new
ones are made. A replay puts a delivery back in the queue -- the same event, the same id
and body, a fresh budget of attempts -- so a partner that lost or mishandled an event
gets it again.

Every function takes the session first and only flushes; a partner sees and touches
only its own subscriptions and deliveries (another's is "not found").
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ledger.types import parse_id, utcnow

from .errors import (
    DeliveryInProgress,
    DeliveryNotFound,
    InvalidSubscription,
    SubscriptionDisabled,
    SubscriptionLimit,
    SubscriptionNotFound,
)
from .events import ALL_TYPES, EVENT_TYPES
from .partners import get_partner
from .webhook_models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from .webhook_urls import MAX_URL, check_url  # noqa: F401  (the URL rules, re-exported)

MAX_SUBSCRIPTIONS = 10


def check_types(types) -> str:
    """The event types as stored: sorted, comma-separated, or ``*`` alone."""
    if not isinstance(types, (list, tuple)) or not types:
        raise InvalidSubscription("events must list at least one event type",
                                  field="events")
    unknown = [t for t in types if t not in (*EVENT_TYPES, ALL_TYPES)]
    if unknown:
        raise InvalidSubscription(f"unknown event type {str(unknown[0])[:60]!r}; known: "
                                  f"{', '.join(EVENT_TYPES)} or {ALL_TYPES}", field="events")
    return ALL_TYPES if ALL_TYPES in types else ",".join(sorted(set(types)))


def create_subscription(session: Session, partner_id: str, url: str, types, *,
                        dev_targets: bool = False,
                        now: datetime | None = None) -> WebhookSubscription:
    """Subscribe ``url`` to the partner's events of ``types``, active at once
    (``dev_targets``: see :mod:`.webhook_urls`)."""
    partner = get_partner(session, partner_id)
    url, events = check_url(url, dev_targets=dev_targets), check_types(types)
    active = session.scalar(select(func.count()).select_from(WebhookSubscription).where(
        WebhookSubscription.partner_id == partner.id, WebhookSubscription.status == "active"))
    if active >= MAX_SUBSCRIPTIONS:
        raise SubscriptionLimit(f"a partner has at most {MAX_SUBSCRIPTIONS} active "
                                "subscriptions; disable one first", field="url")
    subscription = WebhookSubscription(id=f"whs_{secrets.token_hex(12)}", partner_id=partner.id,
                                       url=url, events=events, status="active",
                                       created_at=now or utcnow())
    session.add(subscription)
    session.flush()
    return subscription


def subscriptions_of(session: Session, partner_id: str) -> list[WebhookSubscription]:
    """The partner's subscriptions, active and disabled, oldest first."""
    return list(session.scalars(select(WebhookSubscription)
                                .where(WebhookSubscription.partner_id == partner_id)
                                .order_by(WebhookSubscription.created_at,
                                          WebhookSubscription.id)))


def own_subscription(session: Session, partner_id: str, subscription_id) -> WebhookSubscription:
    subscription = session.get(WebhookSubscription, str(subscription_id)[:40])
    if subscription is None or subscription.partner_id != partner_id:
        raise SubscriptionNotFound(f"no subscription {str(subscription_id)[:60]!r} of "
                                   f"partner {partner_id!r}", field="subscription_id")
    return subscription


def disable_subscription(session: Session, partner_id: str, subscription_id, *,
                         now: datetime | None = None) -> WebhookSubscription:
    """Stop a subscription: its pending deliveries fail, it gets no new ones. Disabling
    a disabled subscription changes nothing."""
    subscription = own_subscription(session, partner_id, subscription_id)
    if subscription.status == "disabled":
        return subscription
    now = now or utcnow()
    subscription.status, subscription.disabled_at = "disabled", now
    session.execute(update(WebhookDelivery)
                    .where(WebhookDelivery.subscription_id == subscription.id,
                           WebhookDelivery.state == "pending")
                    .values(state="failed", last_error="subscription disabled",
                            next_attempt_at=now, claim_token=None))
    session.flush()
    return subscription


def change_url(session: Session, partner_id: str, subscription_id, url, *,
               dev_targets: bool = False, now: datetime | None = None) -> WebhookSubscription:
    """Move an active subscription to ``url``, keeping its pending deliveries: each goes
    to the new URL from its next attempt, and those waiting for a retry are due at once
    (the old endpoint's failures say nothing about the new one). An attempt in flight
    finishes at the old URL; its result counts as usual."""
    subscription = own_subscription(session, partner_id, subscription_id)
    if subscription.status != "active":
        raise SubscriptionDisabled(f"subscription {subscription.id} is disabled; subscribe "
                                   "the new URL instead", field="subscription_id")
    url, now = check_url(url, dev_targets=dev_targets), now or utcnow()
    subscription.url = url
    session.execute(update(WebhookDelivery)
                    .where(WebhookDelivery.subscription_id == subscription.id,
                           WebhookDelivery.state == "pending",
                           WebhookDelivery.claim_token.is_(None),
                           WebhookDelivery.next_attempt_at > now)
                    .values(next_attempt_at=now))
    session.flush()
    return subscription


def own_delivery(session: Session, partner_id: str, delivery_id, *,
                 lock: bool = False) -> WebhookDelivery:
    wanted = parse_id(delivery_id)
    delivery = session.get(WebhookDelivery, wanted, with_for_update=lock) if wanted else None
    if delivery is None or delivery.partner_id != partner_id:
        raise DeliveryNotFound(f"no delivery {str(delivery_id)[:60]!r} of partner "
                               f"{partner_id!r}", field="delivery_id")
    return delivery


def replay(session: Session, partner_id: str, delivery_id, *,
           now: datetime | None = None) -> WebhookDelivery:
    """Queue a delivery again, due now, with a fresh budget of attempts: the same event
    (same id, same body), so a receiver that already has it can tell.

    Refused while an attempt is in flight (claimed, its lease not run out): queued at
    once, it could be claimed by a second worker and POSTed beside the first. Once the
    lease has run out the old claim no longer counts: its result, should it still come,
    is only logged (:func:`.webhook_queue.record_attempt`)."""
    now = now or utcnow()
    # Locked, so that a claim committing meanwhile is seen (and this waits for it).
    delivery = own_delivery(session, partner_id, delivery_id, lock=True)
    subscription = session.get(WebhookSubscription, delivery.subscription_id)
    if subscription.status != "active":
        raise SubscriptionDisabled(f"subscription {subscription.id} is disabled",
                                   field="delivery_id")
    if delivery.state == "pending" and delivery.claim_token is not None \
            and delivery.next_attempt_at > now:
        wait = max(1, int((delivery.next_attempt_at - now).total_seconds() + 0.999))
        raise DeliveryInProgress(f"delivery {delivery.id} is being attempted right now; "
                                 f"replay it when the attempt is over (at the latest in "
                                 f"{wait} s)", field="delivery_id", retry_after=wait)
    delivery.state, delivery.attempts, delivery.claim_token = "pending", 0, None
    delivery.next_attempt_at, delivery.delivered_at = now, None
    session.flush()
    return delivery


def delivery_log(session: Session, partner_id: str, *, event_id=None, state=None,
                 subscription_id=None, before: uuid.UUID | None = None,
                 limit: int = 50) -> list[tuple[WebhookDelivery, WebhookEvent, list]]:
    """The partner's deliveries, newest first, each with its event and its attempts
    (oldest first): up to ``limit`` with ids below ``before``."""
    statement = (select(WebhookDelivery, WebhookEvent)
                 .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                 .where(WebhookDelivery.partner_id == partner_id))
    if event_id is not None:
        statement = statement.where(WebhookDelivery.event_id == event_id)
    if state is not None:
        statement = statement.where(WebhookDelivery.state == state)
    if subscription_id is not None:
        statement = statement.where(WebhookDelivery.subscription_id == subscription_id)
    if before is not None:
        statement = statement.where(WebhookDelivery.id < before)
    rows = session.execute(statement.order_by(WebhookDelivery.id.desc()).limit(limit)).all()
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {}
    if rows:
        for attempt in session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_([d.id for d, _ in rows]))
                .order_by(WebhookAttempt.id)):
            attempts.setdefault(attempt.delivery_id, []).append(attempt)
    return [(d, e, attempts.get(d.id, [])) for d, e in rows]
