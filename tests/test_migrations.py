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


def test_partners_onboarded_before_0003_get_their_money_accounts(tmp_path):
    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'older.db'}")
    with engine.begin() as connection:
        upgrade(connection=connection, revision="0002")
        connection.execute(text(
            "INSERT INTO clearing_partners (id, name, industry, is_issuer, is_redeemer, "
            "settlement_currency, status, created_at) VALUES ('oldbank', 'Old Bank', 'bank', "
            "1, 0, 'HKD', 'active', '2026-01-01 00:00:00')"))
    with engine.begin() as connection:
        upgrade(connection=connection)
        shards = dict(connection.execute(text(
            "SELECT a.code, count(b.shard) FROM ledger_accounts a JOIN ledger_balances b "
            "ON b.account_id = a.id GROUP BY a.code")).all())
    assert shards == {"partner:oldbank:position:HKD": 16, "platform:fees:HKD": 16,
                      "platform:spread:HKD": 16, "platform:coalition:HKD": 16}
    engine.dispose()
