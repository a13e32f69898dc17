"""The booking hot path as hand-written SQL on the session's own connection.

Every booking runs the same handful of statements. Through SQLAlchemy Core each one costs
~200 microseconds of CPU (statement construction, cache key, result processing) where the
driver itself needs ~30; on a two-core machine that CPU is taken from the database, and
it showed as a third of plain-SQL throughput. So these statements go to the DBAPI
cursor of the connection the session already holds -- same transaction, same
savepoints, same locks; driver errors re-raised as SQLAlchemy's -- and bind values in the exact format SQLAlchemy's types use on each database
(UUIDs as 32 hex digits and naive UTC text on SQLite), so Core and ORM reads see the
same rows. Everything else in the ledger stays on Core.

Statements are written once with psycopg's positional ``%s`` placeholders and rewritten
to sqlite3's ``?``; positional parameters are also the cheapest for the driver to bind.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from functools import lru_cache

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

@lru_cache(maxsize=256)
def _for(dialect: str, sql: str) -> str:
    return sql if dialect == "postgresql" else sql.replace("%s", "?")


@lru_cache(maxsize=256)
def _marks(n: int, width: int = 1, casts: tuple[str, ...] = ()) -> str:
    """``%s, %s`` for an IN list (width 1), or ``(%s, %s), (%s, %s)`` for VALUES rows."""
    if width == 1 and not casts:
        return ", ".join(["%s"] * n)
    row = "(" + ", ".join(f"%s{casts[i] if casts else ''}" for i in range(width)) + ")"
    return ", ".join([row] * n)


class Sql:
    """The raw cursor of a session's connection, with the ledger's statements."""

    #: Rows per multi-row INSERT: well under both databases' limits on bound parameters.
    CHUNK = 500

    def __init__(self, session: Session):
        self.connection = session.connection()  # begins (BEGIN IMMEDIATE on SQLite)
        self._dialect = self.connection.dialect
        self.dialect = self._dialect.name
        self.postgres = self.dialect == "postgresql"
        self._dbapi_connection = self.connection.connection
        self.cursor = self._dbapi_connection.cursor()

    # -- binding -------------------------------------------------------------------------

    def uuid(self, value: uuid.UUID | None):
        if value is None or self.postgres:
            return value
        return value.hex

    def when(self, value: datetime | None):
        if value is None:
            return None
        value = value.astimezone(timezone.utc)
        return value if self.postgres else value.replace(tzinfo=None).isoformat(" ", "microseconds")

    @staticmethod
    def json(value) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def run(self, sql: str, params: tuple | list = (), *, many: bool = False):
        """Execute on the raw cursor (``many``: one execution per parameter tuple).

        Driver errors are re-raised as SQLAlchemy's DBAPIError, exactly as Core would
        raise them, so the unit of work recognises deadlocks and serialisation failures,
        and a lost connection is invalidated in the pool.
        """
        statement = _for(self.dialect, sql)
        try:
            if many:
                self.cursor.executemany(statement, params)
            else:
                self.cursor.execute(statement, params)
        except self._dialect.loaded_dbapi.Error as exc:
            lost = self._dialect.is_disconnect(exc, self._dbapi_connection, self.cursor)
            if lost:
                self.connection.invalidate(exc)
            raise DBAPIError.instance(
                statement, params, exc, self._dialect.loaded_dbapi.Error,
                connection_invalidated=lost, dialect=self._dialect,
            ) from exc
        return self.cursor

    def _any(self, column: str, values: list) -> tuple[str, list]:
        """``column`` is one of ``values``: an IN list, or for many values on PostgreSQL
        one array parameter (a short statement however many values; for a few values the
        array costs the driver more than the list)."""
        if self.postgres and len(values) > 16:
            return f"{column} = ANY(%s)", [list(values)]
        return f"{column} IN ({_marks(len(values))})", list(values)

    # -- statements ------------------------------------------------------------------------

    def accounts(self, codes: list[str]) -> list[tuple]:
        if not codes:
            return []
        where, params = self._any("code", codes)
        rows = self.run(
            "SELECT id, code, unit, no_overdraft, frozen, closed, shards FROM ledger_accounts "
            f"WHERE {where}", params).fetchall()
        return [(r[0], r[1], r[2], bool(r[3]), bool(r[4]), bool(r[5]), r[6]) for r in rows]

    def lock_balances(self, account_ids: list[int]) -> list[tuple]:
        """Lock balance rows in (account, shard) order and return them.

        Rows: (account_id, debits_posted, credits_posted, debits_pending, frozen, closed).
        """
        if not account_ids:
            return []
        where, params = self._any("account_id", account_ids)
        lock = " FOR UPDATE" if self.postgres else ""  # SQLite: BEGIN IMMEDIATE holds the db
        rows = self.run(
            "SELECT account_id, debits_posted, credits_posted, debits_pending, frozen, closed "
            f"FROM ledger_balances WHERE {where} ORDER BY account_id, shard{lock}",
            params).fetchall()
        return [(r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5])) for r in rows]

    def used_keys(self, scope: str, keys: list[str]) -> set[str]:
        """Which of ``keys`` already have an idempotency record in ``scope``."""
        found: set[str] = set()
        for start in range(0, len(keys), self.CHUNK):
            where, params = self._any("key", keys[start:start + self.CHUNK])
            found.update(r[0] for r in self.run(
                f"SELECT key FROM ledger_idempotency WHERE scope = %s AND {where}",
                [scope, *params]).fetchall())
        return found

    def insert_idempotency(self, row: dict) -> bool:
        """INSERT the record unless its key exists; True if this call inserted it."""
        cast = "::json" if self.postgres else ""
        return self.run(
            "INSERT INTO ledger_idempotency (scope, key, fingerprint, transaction_id, error_code, "
            f"error, created_at) VALUES (%s, %s, %s, %s, %s, %s{cast}, %s) "
            "ON CONFLICT (scope, key) DO NOTHING RETURNING scope",
            (row["scope"], row["key"], row["fingerprint"], self.uuid(row.get("transaction_id")),
             row.get("error_code"), self.json(row.get("error")), self.when(row["created_at"])),
        ).fetchone() is not None

    def insert_transaction(self, txn: dict) -> None:
        self.insert_transactions([txn])

    def insert_postings(self, postings: list[dict]) -> None:
        """A transaction's postings in one multi-row INSERT: one round trip."""
        self.insert_postings_many(postings)

    def add_to_totals(self, rows: list[tuple[int, int, int, int, int, int]]) -> int:
        """Add (dp, cp, dpend, cpend) to each (account, shard), in the order given.

        A row that takes new amounts is only updated while its account is neither frozen
        nor closed; a row that only gives back a hold's reservation always is. Returns how
        many rows were updated: fewer than given means an account changed under us.
        """
        cursor = self.run(
            "UPDATE ledger_balances SET debits_posted = debits_posted + %s, "
            "credits_posted = credits_posted + %s, debits_pending = debits_pending + %s, "
            "credits_pending = credits_pending + %s "
            "WHERE account_id = %s AND shard = %s AND (%s OR NOT (frozen OR closed))",
            [(dp, cp, dpend, cpend, a, s, dp == 0 and cp == 0 and dpend <= 0 and cpend <= 0)
             for a, s, dp, cp, dpend, cpend in rows], many=True)
        return cursor.rowcount

    # -- many rows at once ------------------------------------------------------------------

    def _insert_many(self, table: str, columns: dict[str, str], rows: list[tuple],
                     suffix: str = "") -> int:
        """INSERT ``rows`` (bound values, in ``columns`` order); with a RETURNING
        ``suffix``, return how many rows came back, else how many were given.

        A few rows: multi-row VALUES, CHUNK rows per statement. Many rows on PostgreSQL:
        one INSERT ... SELECT FROM unnest(one array per column) -- a multi-row VALUES of
        thousands of rows spends most of its time in the driver's query parsing.
        """
        if not rows:
            return 0
        names = ", ".join(columns)
        if self.postgres and len(rows) > 16:
            arrays = ", ".join(f"%s::{t}[]" for t in columns.values())
            cursor = self.run(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"
                              + suffix, [list(col) for col in zip(*rows)])
            return len(cursor.fetchall()) if suffix else len(rows)
        casts = tuple(f"::{t}" if self.postgres and t == "json" else ""
                      for t in columns.values())
        returned = 0
        for start in range(0, len(rows), self.CHUNK):
            chunk = rows[start:start + self.CHUNK]
            cursor = self.run(
                f"INSERT INTO {table} ({names}) VALUES "
                + _marks(len(chunk), len(columns), casts) + suffix,
                [v for row in chunk for v in row])
            returned += len(cursor.fetchall()) if suffix else len(chunk)
        return returned

    def insert_postings_many(self, postings: list[dict]) -> None:
        uuid_ = self.uuid
        self._insert_many(
            "ledger_postings", {"transaction_id": "uuid", "line": "smallint",
                                "account_id": "bigint", "side": "varchar", "amount": "bigint",
                                "unit": "varchar"},
            [(uuid_(p["transaction_id"]), p["line"], p["account_id"], p["side"], p["amount"],
              p["unit"]) for p in postings])

    def insert_transactions(self, txns: list[dict]) -> None:
        uuid_, when, json_ = self.uuid, self.when, self.json
        self._insert_many(
            "ledger_transactions", {"id": "uuid", "kind": "varchar", "status": "varchar",
                                    "reference": "varchar", "meta": "json",
                                    "created_at": "timestamptz", "expires_at": "timestamptz",
                                    "resolves_id": "uuid", "reverses_id": "uuid"},
            [(uuid_(t["id"]), t["kind"], t["status"], t["reference"], json_(t["meta"]),
              when(t["created_at"]), when(t["expires_at"]), uuid_(t["resolves_id"]),
              uuid_(t["reverses_id"])) for t in txns])

    def insert_idempotency_many(self, records: list[dict]) -> int:
        """INSERT records whose keys are free; return how many were inserted."""
        uuid_, when = self.uuid, self.when
        return self._insert_many(
            "ledger_idempotency", {"scope": "varchar", "key": "varchar",
                                   "fingerprint": "varchar", "transaction_id": "uuid",
                                   "created_at": "timestamptz"},
            [(r["scope"], r["key"], r["fingerprint"], uuid_(r["transaction_id"]),
              when(r["created_at"])) for r in records],
            suffix=" ON CONFLICT (scope, key) DO NOTHING RETURNING scope")
