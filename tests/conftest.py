"""Fixtures shared by every layer of the suite.

One environment variable picks the database: POINTCLEAR_TEST_DATABASE_URL (a PostgreSQL
URL, e.g. postgresql://postgres@127.0.0.1:5432/pointclear_test). Unset, the suite runs on
a fresh SQLite file. The schema is always built by running the Alembic migrations. A
PostgreSQL URL that cannot be reached is an error, never a skip.

``session`` runs each test inside a transaction that is rolled back at the end (the code
under test may commit: that releases a savepoint). Tests marked ``postgres`` need real
concurrency or PostgreSQL triggers and are skipped on SQLite runs; they commit for real,
into accounts whose codes are unique to the test.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app import create_app
from app.db import make_engine, normalise_url, upgrade

DB_ENV = "POINTCLEAR_TEST_DATABASE_URL"


def _configured_url() -> str | None:
    url = os.environ.get(DB_ENV)
    return normalise_url(url) if url else None


def pytest_report_header(config):
    return f"database: {_configured_url() or 'SQLite (temporary file)'}"


def pytest_collection_modifyitems(config, items):
    url = _configured_url()
    if url and url.startswith("postgresql"):
        return
    skip = pytest.mark.skip(reason=f"needs PostgreSQL: set {DB_ENV}")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """The URL of an empty database for this run.

    On PostgreSQL each run gets its own database, named after the configured one plus the
    process id, so that two runs on one server (a developer's and CI's, or parallel
    sessions) never drop each other's schema. It is dropped when the run ends.
    """
    url = _configured_url()
    if url is None:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'pointclear-test.db'}"
        return
    parsed = make_url(url)
    name = f"{parsed.database}_{os.getpid()}"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield parsed.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url):
    # The pool is large enough for the 16-thread PostgreSQL tests.
    engine = make_engine(database_url, pool_size=20, max_overflow=20) \
        if database_url.startswith("postgresql") else make_engine(database_url)
    with engine.begin() as connection:
        upgrade(connection=connection)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def is_postgres(engine) -> bool:
    return engine.dialect.name == "postgresql"


@pytest.fixture
def session(engine):
    """A session whose work is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint",
                      expire_on_commit=False)
    yield session
    session.close()
    outer.rollback()
    connection.close()


@pytest.fixture
def sessions(engine) -> sessionmaker:
    """A factory of real, committing sessions (for concurrency and crash tests)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def unique() -> str:
    """A short string unique to this test, for account codes of committed data."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def app(tmp_path):
    """An app on its own fresh SQLite file, migrated, with a signing key path."""
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        "SIGNING_KEY": str(tmp_path / "signing-key.pem"),
        "DATA_KEY": str(tmp_path / "data-key"),
    })
    with app.app_context():
        from app import db

        with db.get_engine().begin() as connection:
            upgrade(connection=connection)
    return app
