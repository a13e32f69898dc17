"""Migrations are the only way the schema is made, and they match the models."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from app.db import alembic_config, make_engine, upgrade


def test_models_and_migrations_agree(engine):
    # Raises if autogenerate would produce any operation: a forgotten migration.
    with engine.connect() as connection:
        command.check(alembic_config(connection=connection))


def test_downgrade_and_upgrade_again(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    with engine.begin() as connection:
        upgrade(connection=connection)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection=connection), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    with engine.begin() as connection:
        upgrade(connection=connection)
    assert "ledger_postings" in inspect(engine).get_table_names()
    engine.dispose()
