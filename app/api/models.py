"""The API edge's own tables: seen request nonces and idempotency of HTTP requests.

Neither holds money. A nonce row lives as long as its timestamp could still be accepted
and is then purged. An idempotency row stores the response a POST got, so that a retry
with the same ``Idempotency-Key`` gets the same answer; while the first request runs the
row is ``running`` and a retry gets 409.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models import Base
from ledger.types import UTCDateTime


class SeenNonce(Base):
    __tablename__ = "api_nonces"
    __table_args__ = (Index("ix_api_nonces_seen_at", "seen_at"),)

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RequestRecord(Base):
    __tablename__ = "api_idempotency"
    __table_args__ = (
        CheckConstraint("state IN ('running', 'done')", name="state_known"),
    )

    partner_id: Mapped[str] = mapped_column(ForeignKey("clearing_partners.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(8))
    # Who runs it now: a retry that takes over a stale run gets a new token, and only
    # the holder of the current token may store the response.
    token: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    response: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
