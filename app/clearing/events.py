"""The outbox: webhook events written in the booking's own database transaction.

Every operation the clearing domain records (:func:`.operations.record`, the expiry of
an authorisation) is published here before its unit of work commits, so an event exists
exactly when its booking does: none is lost, none is sent for a booking that rolled
back, and an idempotent retry that replays the first booking publishes nothing again.

Each partner that is party to the operation -- the one that booked it and the
counterparty whose money or points moved -- gets its own event, once, whose ``data`` is
the operation as that partner sees it in ``GET /v1/transactions`` (its own customer
reference of the member). The event's type follows the operation's kind:

==========================  ===========================================================
``transaction.posted``      issue, import, redemption, capture, conversion
``transaction.authorised``  authorisation (points and money reserved, not yet posted)
``transaction.voided``      void of an authorisation by the partner
``transaction.reversed``    refund, clawback (``data.related_id`` is the original)
``transaction.expired``     an authorisation that expired unresolved (``data.kind`` is
                            ``expiry``, ``data.related_id`` the authorisation)
==========================  ===========================================================

Deliveries are created here too, in the same transaction: one per active subscription
of the recipient that asks for the event's type. A subscription created later gets only
later events; one disabled later gets nothing more (:mod:`.webhooks`).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ledger.types import new_id

from . import presentation
from .models import Operation
from .webhook_models import WebhookDelivery, WebhookEvent, WebhookSubscription

POSTED, AUTHORISED = "transaction.posted", "transaction.authorised"
VOIDED, REVERSED, EXPIRED = "transaction.voided", "transaction.reversed", "transaction.expired"
EVENT_TYPES = (POSTED, AUTHORISED, VOIDED, REVERSED, EXPIRED)
ALL_TYPES = "*"

_TYPE_OF_KIND = {
    "issue": POSTED, "import": POSTED, "redemption": POSTED, "capture": POSTED,
    "conversion": POSTED, "authorisation": AUTHORISED, "void": VOIDED, "refund": REVERSED,
    "clawback": REVERSED, "expiry": EXPIRED,
}
_CHUNK = 500  # operations presented per round of queries (bound parameters stay few)


def event_type(op: Operation) -> str:
    """The event type of an operation of ``op.kind`` (see the module docstring)."""
    return _TYPE_OF_KIND[op.kind]


def recipients(op: Operation) -> list[str]:
    """The partners an operation concerns, each once: who booked it, the counterparty."""
    return [p for p in dict.fromkeys((op.partner_id, op.counterparty_id)) if p is not None]


def wants(subscription_events: str, event_type_: str) -> bool:
    types = subscription_events.split(",")
    return ALL_TYPES in types or event_type_ in types


def _default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(payload: dict) -> str:
    """The body as it is stored and sent, byte for byte, on every attempt."""
    return json.dumps(payload, default=_default, separators=(",", ":"))


def _delivery(event_id, subscription: WebhookSubscription, at: datetime) -> dict:
    """A pending delivery of the event to the subscription, due at once."""
    return {"id": new_id(), "event_id": event_id, "subscription_id": subscription.id,
            "partner_id": subscription.partner_id, "state": "pending", "attempts": 0,
            "next_attempt_at": at, "created_at": at}


def publish(session: Session, ops: list[Operation]) -> int:
    """Write the events of freshly recorded ``ops`` and their deliveries; only flushes.

    Set-wise, so an import of thousands of lines costs a few statements per 500 lines.
    Returns how many events it wrote.
    """
    ops = [op for op in ops if recipients(op)]
    if not ops:
        return 0
    session.flush()
    parties = sorted({p for op in ops for p in recipients(op)})
    subscriptions: dict[str, list[WebhookSubscription]] = {}
    for sub in session.scalars(select(WebhookSubscription).where(
            WebhookSubscription.partner_id.in_(parties),
            WebhookSubscription.status == "active")):
        subscriptions.setdefault(sub.partner_id, []).append(sub)
    events, deliveries = [], []
    for start in range(0, len(ops), _CHUNK):
        chunk = ops[start:start + _CHUNK]
        now = max(op.created_at for op in chunk)
        views = presentation.for_viewers(session, chunk, parties, now)
        for i, op in enumerate(chunk):
            type_ = event_type(op)
            for partner in recipients(op):
                event_id = new_id()
                payload = {"id": str(event_id), "type": type_, "created_at": op.created_at,
                           "partner": partner, "data": views[partner][i]}
                events.append({"id": event_id, "type": type_, "partner_id": partner,
                               "operation_id": op.id, "payload": dumps(payload),
                               "created_at": op.created_at})
                deliveries += [_delivery(event_id, sub, op.created_at)
                               for sub in subscriptions.get(partner, ())
                               if wants(sub.events, type_)]
    session.execute(insert(WebhookEvent), events)
    if deliveries:
        session.execute(insert(WebhookDelivery), deliveries)
    return len(events)
