"""The booking hot path as hand-written SQL on the session's own connection.

Every booking runs the same handful of statements. Through SQLAlchemy Core each one costs
~200 microseconds of CPU (statement construction, cache key, result processing) where the
driver itself needs ~30; on a two-core machine that CPU is taken from the database, and
it showed as a third of plain-SQL throughput. So these statements go to the DBAPI
cursor of the connection the session already holds -- same transaction, same
savepoints, same locks; driver errors re-raised as SQLAlchemy's -- and bind values in the exact format SQLAlchemy's types use on each database
(UUIDs as 32 hex digits and naive UTC text on SQLite), so Core and ORM reads see the
same rows. Everything else in the ledger stays on Core.

Statements are written once in the ``%(name)s`` style of psycopg and rewritten to
``:name`` for sqlite3.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from functools import lru_cache

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

_NAMED = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=None)
def _for(dialect: str, sql: str) -> str:
    return sql if dialect == "postgresql" else _NAMED.sub(r":\1", sql)


@lru_cache(maxsize=64)
def _in_list(prefix: str, n: int) -> str:
    return ", ".join(f"%({prefix}{i})s" for i in range(n))


class Sql:
    """The raw cursor of a session's connection, with the ledger's statements."""

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

    def run(self, sql: str, params: dict | list[dict] | None = None):
        """Execute on the raw cursor; a list of parameter sets is an executemany.

        Driver errors are re-raised as SQLAlchemy's DBAPIError, exactly as Core would
        raise them, so the unit of work recognises deadlocks and serialisation failures,
        and a lost connection is invalidated in the pool.
        """
        statement = _for(self.dialect, sql)
        try:
            if isinstance(params, list):
                self.cursor.executemany(statement, params)
            else:
                self.cursor.execute(statement, params or {})
        except self._dialect.loaded_dbapi.Error as exc:
            lost = self._dialect.is_disconnect(exc, self._dbapi_connection, self.cursor)
            if lost:
                self.connection.invalidate(exc)
            raise DBAPIError.instance(
                statement, params, exc, self._dialect.loaded_dbapi.Error,
                connection_invalidated=lost, dialect=self._dialect,
            ) from exc
        return self.cursor

    # -- statements ------------------------------------------------------------------------

    def _any(self, column: str, values: list, prefix: str) -> tuple[str, dict]:
        """``column`` is one of ``values``: an IN list, or for many values on PostgreSQL
        one array parameter (a short statement however many values; for a few values the
        array costs the driver more than the list)."""
        if self.postgres and len(values) > 16:
            return f"{column} = ANY(%({prefix})s)", {prefix: list(values)}
        return (f"{column} IN ({_in_list(prefix, len(values))})",
                {f"{prefix}{i}": v for i, v in enumerate(values)})

    def accounts(self, codes: list[str]) -> list[tuple]:
        where, params = self._any("code", codes, "c")
        rows = self.run(
            "SELECT id, code, unit, no_overdraft, frozen, closed, shards FROM ledger_accounts "
            f"WHERE {where}", params).fetchall()
        return [(r[0], r[1], r[2], bool(r[3]), bool(r[4]), bool(r[5]), r[6]) for r in rows]

    def lock_balances(self, account_ids: list[int]) -> list[tuple]:
        """Lock balance rows in (account, shard) order and return them.

        Rows: (account_id, debits_posted, credits_posted, debits_pending, frozen, closed).
        """
        where, params = self._any("account_id", account_ids, "a")
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
            where, params = self._any("key", keys[start:start + self.CHUNK], "k")
            params["scope"] = scope
            found.update(r[0] for r in self.run(
                f"SELECT key FROM ledger_idempotency WHERE scope = %(scope)s AND {where}",
                params).fetchall())
        return found

    def insert_idempotency(self, row: dict) -> bool:
        """INSERT the record unless its key exists; True if this call inserted it."""
        params = dict(
            scope=row["scope"], key=row["key"], fingerprint=row["fingerprint"],
            transaction_id=self.uuid(row.get("transaction_id")),
            error_code=row.get("error_code"), error=self.json(row.get("error")),
            created_at=self.when(row["created_at"]),
        )
        cast = "::json" if self.postgres else ""
        return self.run(
            "INSERT INTO ledger_idempotency (scope, key, fingerprint, transaction_id, error_code, "
            "error, created_at) VALUES (%(scope)s, %(key)s, %(fingerprint)s, %(transaction_id)s, "
            f"%(error_code)s, %(error)s{cast}, %(created_at)s) "
            "ON CONFLICT (scope, key) DO NOTHING RETURNING scope", params).fetchone() is not None

    def insert_transaction(self, txn: dict) -> None:
        cast = "::json" if self.postgres else ""
        self.run(
            "INSERT INTO ledger_transactions (id, kind, status, reference, meta, created_at, "
            "expires_at, resolves_id, reverses_id) VALUES (%(id)s, %(kind)s, %(status)s, "
            f"%(reference)s, %(meta)s{cast}, %(created_at)s, %(expires_at)s, %(resolves_id)s, "
            "%(reverses_id)s)",
            dict(id=self.uuid(txn["id"]), kind=txn["kind"], status=txn["status"],
                 reference=txn["reference"], meta=self.json(txn["meta"]),
                 created_at=self.when(txn["created_at"]), expires_at=self.when(txn["expires_at"]),
                 resolves_id=self.uuid(txn["resolves_id"]),
                 reverses_id=self.uuid(txn["reverses_id"])))

    def insert_postings(self, postings: list[dict]) -> None:
        """A transaction's postings in one multi-row INSERT: one round trip."""
        self.insert_postings_many(postings)

    # -- many rows at once (ledger.batch) ------------------------------------------------------

    #: Rows per multi-row INSERT: well under both databases' limits on bound parameters.
    CHUNK = 500

    def _insert_rows(self, table: str, columns: list[str], rows: list[tuple],
                     casts: dict[str, str] | None = None, suffix: str = "") -> int:
        """Multi-row INSERTs of ``rows`` (already bound values), CHUNK rows each.

        Returns the number of rows the statements RETURNed (with a RETURNING suffix).
        """
        casts = casts if self.postgres else {}
        returned = 0
        for start in range(0, len(rows), self.CHUNK):
            chunk = rows[start:start + self.CHUNK]
            params, values = {}, []
            for r, row in enumerate(chunk):
                names = []
                for c, value in enumerate(row):
                    params[f"p{r}_{c}"] = value
                    names.append(f"%(p{r}_{c})s{(casts or {}).get(columns[c], '')}")
                values.append("(" + ", ".join(names) + ")")
            cursor = self.run(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                              + ", ".join(values) + suffix, params)
            if suffix:
                returned += len(cursor.fetchall())
        return returned

    def _insert_unnest(self, table: str, columns: dict[str, str], rows: list[tuple],
                       suffix: str = "") -> int:
        """PostgreSQL: all rows in one INSERT ... SELECT FROM unnest(arrays).

        One short statement with one array per column: nothing for the driver to parse
        per row (a multi-row VALUES of thousands of rows spent most of its time there).
        """
        arrays = {f"c{i}": list(col) for i, col in enumerate(zip(*rows))}
        casts = ", ".join(f"%(c{i})s::{t}[]" for i, t in enumerate(columns.values()))
        cursor = self.run(f"INSERT INTO {table} ({', '.join(columns)}) "
                          f"SELECT * FROM unnest({casts}){suffix}", arrays)
        return len(cursor.fetchall()) if suffix else len(rows)

    def _insert_many(self, table: str, columns: dict[str, str], rows: list[tuple],
                     suffix: str = "") -> int:
        if not rows:
            return 0
        if self.postgres:
            return self._insert_unnest(table, columns, rows, suffix)
        return self._insert_rows(table, list(columns), rows, suffix=suffix)

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

    def add_to_totals(self, rows: list[tuple[int, int, int, int, int, int]]) -> int:
        """Add (dp, cp, dpend, cpend) to each (account, shard), in the order given.

        A row that takes new amounts is only updated while its account is neither frozen
        nor closed; a row that only gives back a hold's reservation always is. Returns how
        many rows were updated: fewer than given means an account changed under us.
        """
        result = self.run(
            "UPDATE ledger_balances SET debits_posted = debits_posted + %(dp)s, "
            "credits_posted = credits_posted + %(cp)s, "
            "debits_pending = debits_pending + %(dpend)s, "
            "credits_pending = credits_pending + %(cpend)s "
            "WHERE account_id = %(account)s AND shard = %(shard)s "
            "AND (%(release)s OR NOT (frozen OR closed))", [
                dict(account=a, shard=s, dp=dp, cp=cp, dpend=dpend, cpend=cpend,
                     release=dp == 0 and cp == 0 and dpend <= 0 and cpend <= 0)
                for a, s, dp, cp, dpend, cpend in rows
            ])
        return result.rowcount
