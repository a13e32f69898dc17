"""The database: engine per app, one session per request, migrations.

SQLite is the embedded default. Several gunicorn workers can share its file because
every connection runs in WAL mode with a busy timeout, and every transaction that may
write begins with ``BEGIN IMMEDIATE``: it takes the write lock when it starts, so two
writers queue at BEGIN (and wait out the busy timeout) instead of both reading and then
failing with "database is locked" when the second tries to write. Sessions from
:func:`read_only_sessions` begin deferred and never take the write lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app, g
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
READ_ONLY = "pointclear_read_only"  # execution option: this transaction only reads
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, **options) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **options,
        )
        _sqlite_transactions(engine)
        return engine
    # No pre-ping: it costs a round trip on every checkout. A connection that died in
    # the pool fails its first statement, the pool invalidates it, and the unit of work
    # retries the transaction on a fresh one (same idempotency key).
    options.setdefault("pool_recycle", 3600)
    # LIFO: the connection used last (warm caches, prepared statements) is reused first.
    options.setdefault("pool_use_lifo", True)
    return create_engine(url, **options)


def _sqlite_transactions(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        # A read-only transaction begins deferred: in WAL mode it reads a snapshot and
        # never holds the write lock, so long reports do not stop bookings.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def read_only_sessions(engine: Engine) -> sessionmaker:
    """A sessionmaker whose transactions are marked read-only (see ``on_begin``).

    On SQLite they begin deferred instead of taking the write lock; on PostgreSQL the
    mark changes nothing today (a replica could serve them later).
    """
    return sessionmaker(bind=engine.execution_options(**{READ_ONLY: True}),
                        expire_on_commit=False)


# --- migrations -------------------------------------------------------------------------------

def alembic_config(url: str | None = None, connection=None) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str | None = None, connection=None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url, connection), revision)


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


# --- per-app engine, per-request session ---------------------------------------------------------

def get_engine() -> Engine:
    return current_app.extensions["pointclear.engine"]


def session_factory() -> sessionmaker:
    return current_app.extensions["pointclear.sessions"]


def read_session_factory() -> sessionmaker:
    """Sessions for work that only reads (reports, verify, balance reads)."""
    return current_app.extensions["pointclear.read_sessions"]


def get_session() -> Session:
    """The request's session, opened on first use and closed on teardown."""
    if "db_session" not in g:
        g.db_session = session_factory()()
    return g.db_session


def close_session(_exc=None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def init_app(app) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    app.extensions["pointclear.engine"] = engine
    app.extensions["pointclear.sessions"] = sessionmaker(bind=engine, expire_on_commit=False)
    app.extensions["pointclear.read_sessions"] = read_only_sessions(engine)
    app.teardown_appcontext(close_session)
