"""The clearing domain's tables: partners and their keys, programs and their values.

A *partner* is an organisation of an industry, with roles (issuer: its program's points
are earned with it; redeemer: members spend points at it), a settlement currency and a
status. It signs API requests with Ed25519 keys of which the platform keeps only the
public half; keys are added and revoked independently, so rotation has no gap.

A *program* is a points currency hosted here: the platform is the system of record of
its members' balances. It is owned by an issuer partner or, for coalition points, by the
platform (no owner). Its value per point in a settlement currency is versioned by
effective date, so any past operation can be revalued exactly as it was.

These rows are reference data, not money: a key's revocation or a partner's suspension
changes a row in place. Money is only ever in the ledger.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models import Base
from ledger.types import ExactDecimal, UTCDateTime, utcnow

INDUSTRIES = ("bank", "airline", "telecom", "retail", "ecommerce", "other")


class Partner(Base):
    __tablename__ = "clearing_partners"
    __table_args__ = (
        CheckConstraint(f"industry IN {INDUSTRIES!r}", name="industry_known"),
        CheckConstraint("status IN ('active', 'suspended')", name="status_known"),
        CheckConstraint("is_issuer OR is_redeemer", name="has_a_role"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    industry: Mapped[str] = mapped_column(String(20))
    is_issuer: Mapped[bool]
    is_redeemer: Mapped[bool]
    settlement_currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PartnerKey(Base):
    """One Ed25519 public key of a partner; usable from creation until revoked."""

    __tablename__ = "clearing_partner_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("clearing_partners.id"), index=True)
    public_key: Mapped[str] = mapped_column(String(64))  # raw 32 bytes, hex
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Program(Base):
    __tablename__ = "clearing_programs"
    __table_args__ = (
        CheckConstraint("expiry_months IS NULL OR expiry_months BETWEEN 1 AND 120",
                        name="expiry_range"),
    )

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # None: the platform's own coalition program.
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("clearing_partners.id"), index=True)
    expiry_months: Mapped[int | None] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProgramValue(Base):
    """From ``effective_from`` on (until the next version), one point is worth
    ``value_per_point`` units of ``currency`` (e.g. 0.01 CNY)."""

    __tablename__ = "clearing_program_values"
    __table_args__ = (UniqueConstraint("program_code", "effective_from"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    program_code: Mapped[str] = mapped_column(ForeignKey("clearing_programs.code"))
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    value_per_point: Mapped[Decimal] = mapped_column(ExactDecimal)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
