"""The ledger's tables.

Design overview
---------------
*Accounts* hold one unit each and are named by a readable unique ``code``
(``member:42:BANKA``). Their running totals -- posted debits/credits and pending
debits/credits -- live in ``ledger_balances``, one row per *shard*. An ordinary account
has one shard. A system account that nearly every transaction touches (a program's
issuance account, the fee account) can be opened with several shards: each transaction
adds to one shard chosen at random, so concurrent bookings do not queue on one hot row,
and its balance is the sum of its shards. A *guarded* (no-overdraft) account always has
exactly one shard, because its guard must be checked against the whole balance under one
row lock.

*Transactions* are append-only journal entries. Each has two or more *postings*
(account, side ``D``/``C``, positive amount, unit); per unit the debits equal the
credits. Nothing is updated or deleted: a pending transaction is resolved by a *new*
transaction that points at it through ``resolves_id`` (unique, so a pending transaction
resolves at most once) -- with status ``posted`` and its own postings when captured, or
status ``voided`` and no postings when voided or expired. A correction of a posted
transaction is a reversal: a new posted transaction whose ``reverses_id`` points at it.

The rules are enforced in code before anything is written (``ledger.booking``) and again
by the database: named CHECK constraints on both databases, and on PostgreSQL deferred
triggers that refuse an unbalanced transaction and row triggers that refuse any UPDATE or
DELETE of booked rows (see the first migration).

*Idempotency records* remember, per (scope, key), the fingerprint of the request and its
outcome -- the transaction it booked or the refusal it met -- so a retry gets the same
answer. *Blocks* seal committed transactions into a signed hash chain.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    MetaData,
    SmallInteger,
    String,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import BigInt, UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("shards BETWEEN 1 AND 64", name="shards_range"),
        CheckConstraint("NOT (no_overdraft AND shards <> 1)", name="guarded_single_shard"),
        CheckConstraint("length(code) BETWEEN 1 AND 200", name="code_length"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(200), unique=True)
    unit: Mapped[str] = mapped_column(String(16))
    no_overdraft: Mapped[bool] = mapped_column(default=False)
    frozen: Mapped[bool] = mapped_column(default=False)
    closed: Mapped[bool] = mapped_column(default=False)
    shards: Mapped[int] = mapped_column(SmallInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccountBalance(Base):
    """Running totals of one shard of one account."""

    __tablename__ = "ledger_balances"
    __table_args__ = (
        CheckConstraint("debits_posted >= 0", name="debits_posted_nonnegative"),
        CheckConstraint("credits_posted >= 0", name="credits_posted_nonnegative"),
        CheckConstraint("debits_pending >= 0", name="debits_pending_nonnegative"),
        CheckConstraint("credits_pending >= 0", name="credits_pending_nonnegative"),
        CheckConstraint(
            "NOT guarded OR credits_posted - debits_posted - debits_pending >= 0",
            name="no_overdraft",
        ),
    )

    account_id: Mapped[int] = mapped_column(
        BigInt, ForeignKey("ledger_accounts.id"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    # A copy of the account's no_overdraft flag, which never changes, so that the
    # CHECK above can see it in the same row.
    guarded: Mapped[bool] = mapped_column(default=False)
    # Copies of the account's frozen/closed flags, changed together with it under this
    # row's lock. A booking's UPDATE of the totals re-checks them in its WHERE clause, so
    # a freeze or close that commits while the booking is in flight cannot be missed.
    frozen: Mapped[bool] = mapped_column(default=False)
    closed: Mapped[bool] = mapped_column(default=False)
    debits_posted: Mapped[int] = mapped_column(BigInt, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInt, default=0)
    debits_pending: Mapped[int] = mapped_column(BigInt, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInt, default=0)


class Transaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'posted', 'voided')", name="status_known"),
        CheckConstraint("status = 'pending' OR expires_at IS NULL", name="expiry_only_pending"),
        CheckConstraint("status <> 'pending' OR resolves_id IS NULL", name="pending_resolves_nothing"),
        CheckConstraint("status <> 'voided' OR resolves_id IS NOT NULL", name="voided_resolves_pending"),
        CheckConstraint(
            "resolves_id IS NULL OR reverses_id IS NULL", name="resolves_or_reverses"
        ),
        CheckConstraint("length(kind) BETWEEN 1 AND 40", name="kind_length"),
        Index("ix_ledger_transactions_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(8))
    reference: Mapped[str | None] = mapped_column(String(200))
    meta: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolves_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("ledger_transactions.id"), unique=True
    )
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("ledger_transactions.id"), index=True
    )

    postings: Mapped[list[Posting]] = relationship(
        order_by="Posting.line", lazy="selectin", viewonly=True
    )


class Posting(Base):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        CheckConstraint("side IN ('D', 'C')", name="side_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_ledger_postings_account_id", "account_id"),
    )

    transaction_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("ledger_transactions.id"), primary_key=True
    )
    line: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInt, ForeignKey("ledger_accounts.id"))
    side: Mapped[str] = mapped_column(String(1))
    amount: Mapped[int] = mapped_column(BigInt)
    # The account's unit, copied so that "balanced per unit" can be checked from the
    # postings alone (by the PostgreSQL trigger and by verify).
    unit: Mapped[str] = mapped_column(String(16))


class IdempotencyRecord(Base):
    """The outcome of the first request made with a key: a transaction or a refusal."""

    __tablename__ = "ledger_idempotency"
    __table_args__ = (
        CheckConstraint(
            "(transaction_id IS NULL) <> (error_code IS NULL)", name="one_outcome"
        ),
    )

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    # Deferred: the record is written before the transaction it names, so that a
    # concurrent request with the same key waits on it before doing any work.
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("ledger_transactions.id", deferrable=True, initially="DEFERRED")
    )
    error_code: Mapped[str | None] = mapped_column(String(60))
    error: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Block(Base):
    """A sealed group of transactions, chained to the previous block by hash."""

    __tablename__ = "ledger_blocks"
    __table_args__ = (CheckConstraint("height >= 1", name="height_positive"),)

    height: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))
    tx_count: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BlockEntry(Base):
    __tablename__ = "ledger_block_entries"

    transaction_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("ledger_transactions.id"), primary_key=True
    )
    height: Mapped[int] = mapped_column(BigInt, ForeignKey("ledger_blocks.height"), index=True)
