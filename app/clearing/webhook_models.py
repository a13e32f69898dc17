"""The webhook tables: the outbox of events, partners' subscriptions, deliveries and
the log of every delivery attempt.

An *event* is written in the same database transaction as the booking it reports (the
outbox): it exists if and only if the booking committed, so none is lost and none is
sent for a booking that rolled back. One event per partner that is party to the
operation (who booked it, and the counterparty whose money or points moved), with the
operation as that partner sees it; events are append-only, like the operations.

A *subscription* asks for the events of some types at one URL. A *delivery* is one
event for one subscription: created with the event, in the same transaction, for each
active subscription of the recipient whose types match. It is ``pending`` until a POST
is answered 2xx (``delivered``) or its attempts run out (``failed``); a replay makes it
``pending`` again. Every attempt, whatever came of it, is an append-only *attempt* row:
the delivery log a partner reads.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models import Base
from ledger.types import BigInt, UTCDateTime

SUBSCRIPTION_STATES = ("active", "disabled")
DELIVERY_STATES = ("pending", "delivered", "failed")


class WebhookEvent(Base):
    """One event for one recipient partner; ``payload`` is the exact JSON body sent."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_partner_created", "partner_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # UUIDv7
    type: Mapped[str] = mapped_column(String(40))
    partner_id: Mapped[str] = mapped_column(ForeignKey("clearing_partners.id"))
    # None for events about something other than an operation (settlement, later).
    operation_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("clearing_operations.id"), index=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookSubscription(Base):
    """Partner ``partner_id`` wants events of ``events`` (comma-separated types, or
    ``*`` for every type) POSTed to ``url``. Disabled, it gets nothing more."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        CheckConstraint(f"status IN {SUBSCRIPTION_STATES!r}", name="status_known"),
        Index("ix_webhook_subscriptions_partner_status", "partner_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # whs_ + 24 hex
    partner_id: Mapped[str] = mapped_column(ForeignKey("clearing_partners.id"))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event to one subscription, and where its delivery stands.

    ``attempts`` counts the attempts started since the delivery was created or last
    replayed; a worker claims a pending delivery by pushing ``next_attempt_at`` past the
    time its POST can take (a lease) and writing a fresh ``claim_token``, so a worker
    that dies mid-POST leaves it to be retried, never lost. Only the result of the claim
    whose token is still there moves the delivery on (recording it clears the token): a
    late result of an older claim -- one whose lease ran out, or that a replay or another
    worker's claim replaced -- is logged and changes nothing else. ``partner_id`` is the
    subscription's, copied for the log's and the queue's indexes.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(f"state IN {DELIVERY_STATES!r}", name="state_known"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        UniqueConstraint("event_id", "subscription_id",
                         name="uq_webhook_deliveries_event_subscription"),
        # The queue is read per partner (a fair share each): its due deliveries in order.
        Index("ix_webhook_deliveries_partner_state_due", "partner_id", "state",
              "next_attempt_at"),
        Index("ix_webhook_deliveries_partner_id_id", "partner_id", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # UUIDv7
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("webhook_events.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id"),
                                                 index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("clearing_partners.id"))
    state: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # 32 hex, while claimed
    last_status: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookAttempt(Base):
    """One POST of a delivery: the HTTP status it got, or the error that stopped it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("webhook_deliveries.id"),
                                                   index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column()
