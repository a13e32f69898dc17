"""Column types and identifiers shared by the ledger's tables."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Integer, String
from sqlalchemy.types import TypeDecorator

#: BIGINT on PostgreSQL; INTEGER on SQLite so that an integer primary key is the
#: rowid alias and autoincrements (SQLite's INTEGER is 64-bit anyway).
BigInt = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timestamp that is always UTC and always timezone-aware in Python.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, which compares
    correctly as text because every value goes through here.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.

    Made in Python so that a transaction's id is known before its first INSERT (the
    idempotency record points at it in the same round trip), time-ordered so that
    PostgreSQL's B-tree stays compact, and random enough in its tail that a
    distributed engine does not see one sequential hot spot per node.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & ((1 << 62) - 1)  # rand_b: 62 bits
    return uuid.UUID(int=value)


class ExactDecimal(TypeDecorator):
    """A Decimal stored exactly on both databases: as canonical text.

    SQLite binds NUMERIC as a float, which would make a rate approximate; rates are never
    summed in SQL, so text loses nothing and keeps every digit.
    """

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"ExactDecimal needs a finite Decimal, got {value!r}")
        return format(value.normalize(), "f")

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)


def parse_id(value) -> uuid.UUID | None:
    """``value`` as a UUID (a UUID, or its text), or None if it is not one: callers that
    look a row up by an id from outside answer "not found" for both."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
