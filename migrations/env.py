"""Alembic environment: one metadata (the ledger's, which later domains extend).

The database URL comes from the Alembic config (set by ``pointclear db``) or, failing
that, from POINTCLEAR_DATABASE_URL. An existing connection may be handed in through
``config.attributes["connection"]`` so tests migrate inside their own engine.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

import app.api.models  # noqa: F401  (registers the API edge's tables)
import app.clearing.models  # noqa: F401  (registers the clearing tables)
import app.clearing.webhook_models  # noqa: F401  (registers the webhook tables)
from ledger.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("POINTCLEAR_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set POINTCLEAR_DATABASE_URL")
    return url


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
