"""The clearing domain's tables: partners, programs, agreements, members, operations, lots.

A *partner* is an organisation of an industry, with roles (issuer: its program's points
are earned with it; redeemer: members spend points at it), a settlement currency and a
status. It signs API requests with Ed25519 keys of which the platform keeps only the
public half; keys are added and revoked independently, so rotation has no gap.

A *program* is a points currency hosted here: the platform is the system of record of
its members' balances. It is owned by an issuer partner or, for coalition points, by the
platform (no owner). Its value per point in a settlement currency is versioned by
effective date, so any past operation can be revalued exactly as it was.

An *agreement* lets one program's points be redeemed at another partner, or converted
into another program; its money terms are versioned like program values. A *member* is
one platform identity linked to each partner's own customer reference. An *operation*
gives a ledger transaction its business meaning, and *lots* keep a member's points by
earn date so that spending takes the oldest first and expiry is exact.

Partners, keys, programs and agreements are reference data, not money: a key's revocation or a partner's suspension
changes a row in place. Money is only ever in the ledger.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

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
from ledger.types import BigInt, ExactDecimal, UTCDateTime, utcnow

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


# --- agreements ------------------------------------------------------------------------------

class Agreement(Base):
    """Program ``program_code`` may be redeemed at partner ``redeemer_id`` (kind
    ``redemption``) or converted into program ``target_code`` (kind ``conversion``).

    Nothing crosses between partners without one. Its money terms are versioned in
    :class:`AgreementTerms`; ``counterparty`` (the redeemer or the target program) makes
    one agreement per pair.
    """

    __tablename__ = "clearing_agreements"
    __table_args__ = (
        CheckConstraint("kind IN ('redemption', 'conversion')", name="kind_known"),
        CheckConstraint("status IN ('active', 'ended')", name="status_known"),
        CheckConstraint(
            "(kind = 'redemption' AND redeemer_id IS NOT NULL AND target_code IS NULL"
            " AND counterparty = redeemer_id) OR "
            "(kind = 'conversion' AND target_code IS NOT NULL AND redeemer_id IS NULL"
            " AND counterparty = target_code)", name="counterparty_matches_kind"),
        UniqueConstraint("kind", "program_code", "counterparty"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))
    program_code: Mapped[str] = mapped_column(ForeignKey("clearing_programs.code"))
    redeemer_id: Mapped[str | None] = mapped_column(ForeignKey("clearing_partners.id"))
    target_code: Mapped[str | None] = mapped_column(ForeignKey("clearing_programs.code"))
    counterparty: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(8), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AgreementTerms(Base):
    """One version of an agreement's money terms, in force from ``effective_from``.

    Redemption: the program's owner pays ``value_per_point`` per point redeemed; the
    platform keeps ``fee_rate`` of that and the redeemer gets the rest.
    Conversion: each source point becomes ``ratio`` target points (rounded down); the
    source's owner pays ``value_per_point`` per source point, the target's owner gets
    ``target_value_per_point`` per target point, the platform keeps the difference (the
    spread, never negative). ``min_points``/``max_points`` bound one conversion.
    """

    __tablename__ = "clearing_agreement_terms"
    __table_args__ = (
        UniqueConstraint("agreement_id", "version", name="uq_clearing_agreement_terms_version"),
        UniqueConstraint("agreement_id", "effective_from",
                         name="uq_clearing_agreement_terms_effective_from"),
        CheckConstraint("version >= 1", name="version_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("clearing_agreements.id"))
    version: Mapped[int]
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    value_per_point: Mapped[Decimal] = mapped_column(ExactDecimal)
    fee_rate: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    ratio: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    target_value_per_point: Mapped[Decimal | None] = mapped_column(ExactDecimal)
    min_points: Mapped[int | None] = mapped_column(BigInt)
    max_points: Mapped[int | None] = mapped_column(BigInt)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- members ---------------------------------------------------------------------------------

class Member(Base):
    """One platform identity. ``contact`` is encrypted at rest (see
    :mod:`app.clearing.crypto`); a frozen member earns and spends nothing."""

    __tablename__ = "clearing_members"
    __table_args__ = (CheckConstraint("status IN ('active', 'frozen')", name="status_known"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(8), default="active")
    contact: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberLink(Base):
    """The partner knows the member as ``customer_ref``; one link per partner and member."""

    __tablename__ = "clearing_member_links"
    __table_args__ = (
        UniqueConstraint("partner_id", "customer_ref",
                         name="uq_clearing_member_links_partner_customer_ref"),
        UniqueConstraint("partner_id", "member_id", name="uq_clearing_member_links_partner_member"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("clearing_partners.id"))
    customer_ref: Mapped[str] = mapped_column(String(100))
    member_id: Mapped[str] = mapped_column(ForeignKey("clearing_members.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberToken(Base):
    """A short-lived bearer token with which a member reads their own balances. Only the
    SHA-256 of the token is stored."""

    __tablename__ = "clearing_member_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("clearing_members.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("clearing_partners.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- operations and lots ---------------------------------------------------------------------

OPERATION_KINDS = ("issue", "import", "redemption", "authorisation", "capture", "void",
                   "refund", "clawback", "conversion", "expiry")


class Operation(Base):
    """The business meaning of one ledger transaction the clearing domain booked.

    ``id`` is the ledger transaction's id. It records who asked (``partner_id``), the
    other partner whose money moved (``counterparty_id``), the agreement, terms version
    and program value version used -- so any past settlement can be recomputed -- and the
    amounts, for filters and reports without reading postings.

    Kind ``expiry`` with a ``related_id`` is an authorisation that expired unresolved:
    the ledger voided its hold (transaction kind ``expiry``) and the operation keeps the
    authorisation's partner, counterparty, member, points and terms, no money. Points
    expiry (the platform's own booking, no partner) has no ``related_id``.
    """

    __tablename__ = "clearing_operations"
    __table_args__ = (
        CheckConstraint(f"kind IN {OPERATION_KINDS!r}", name="kind_known"),
        CheckConstraint("points > 0", name="points_positive"),
        Index("ix_clearing_operations_partner_created", "partner_id", "created_at"),
        Index("ix_clearing_operations_counterparty_created", "counterparty_id", "created_at"),
        Index("ix_clearing_operations_member_created", "member_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("ledger_transactions.id"),
                                          primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # None for what the platform books on its own: points expiry.
    partner_id: Mapped[str | None] = mapped_column(ForeignKey("clearing_partners.id"))
    counterparty_id: Mapped[str | None] = mapped_column(ForeignKey("clearing_partners.id"))
    member_id: Mapped[str] = mapped_column(ForeignKey("clearing_members.id"))
    program_code: Mapped[str] = mapped_column(ForeignKey("clearing_programs.code"))
    points: Mapped[int] = mapped_column(BigInt)
    target_code: Mapped[str | None] = mapped_column(ForeignKey("clearing_programs.code"))
    target_points: Mapped[int | None] = mapped_column(BigInt)
    currency: Mapped[str | None] = mapped_column(String(3))
    gross: Mapped[int | None] = mapped_column(BigInt)
    fee: Mapped[int | None] = mapped_column(BigInt)
    agreement_id: Mapped[str | None] = mapped_column(ForeignKey("clearing_agreements.id"))
    terms_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_agreement_terms.id"))
    value_id: Mapped[int | None] = mapped_column(ForeignKey("clearing_program_values.id"))
    related_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("clearing_operations.id"), index=True)
    reference: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Lot(Base):
    """Points a member earned in one program at one instant; they expire together.

    A lot is never changed: what was spent, reserved, restored or expired from it is in
    :class:`LotMove`, so its remaining points are ``points`` plus its moves.
    """

    __tablename__ = "clearing_lots"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        Index("ix_clearing_lots_member_program", "member_id", "program_code", "earned_at"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    member_id: Mapped[str] = mapped_column(ForeignKey("clearing_members.id"))
    program_code: Mapped[str] = mapped_column(ForeignKey("clearing_programs.code"))
    points: Mapped[int] = mapped_column(BigInt)
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    transaction_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("ledger_transactions.id"),
                                                      index=True)


class LotMove(Base):
    """Points taken from (negative) or given back to (positive) a lot by a transaction.

    ``reserve`` moves belong to an authorisation and count only while it is unresolved:
    its capture writes ``spend`` moves, and a void or expiry simply ends the reservation.
    """

    __tablename__ = "clearing_lot_moves"
    __table_args__ = (
        CheckConstraint("kind IN ('reserve', 'spend', 'restore', 'expire')", name="kind_known"),
        CheckConstraint("points <> 0", name="points_nonzero"),
        CheckConstraint("(kind = 'restore') = (points > 0)", name="sign_matches_kind"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    lot_id: Mapped[int] = mapped_column(BigInt, ForeignKey("clearing_lots.id"), index=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("ledger_transactions.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    points: Mapped[int] = mapped_column(BigInt)
