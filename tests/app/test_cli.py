"""The `pointclear` command: db, keys and ledger groups."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from app import db, signing
from app.clearing.crypto import key_id as data_key_id
from app.clearing.crypto import load_data_key
from app.db import head_revision
from ledger import credit, debit, open_account, post


def _book(app, n=3):
    with app.app_context():
        session = db.session_factory()()
        open_account(session, "member:1:BANKA", "BANKA", no_overdraft=True)
        open_account(session, "program:BANKA:issued", "BANKA", shards=4)
        for i in range(n):
            post(session, [debit("program:BANKA:issued", 10 + i), credit("member:1:BANKA", 10 + i)],
                 kind="issue")
        session.commit()
        session.close()


def test_help_lists_the_groups(app):
    result = app.test_cli_runner().invoke(args=["--help"])
    for group in ("db", "keys", "ledger"):
        assert group in result.output
    result = app.test_cli_runner().invoke(args=["ledger", "--help"])
    for command in ("verify", "seal", "expire-holds"):
        assert command in result.output


def test_db_upgrade_is_idempotent_and_check_passes(app):
    runner = app.test_cli_runner()
    assert f"revision {head_revision()}" in runner.invoke(args=["db", "upgrade"]).output
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    result = runner.invoke(args=["db", "check"])
    assert result.exit_code == 0, result.output
    assert head_revision() in runner.invoke(args=["db", "current"]).output


def test_keys_init_creates_once(app):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["keys", "init"])
    assert "created signing key" in first.output and "BEGIN PUBLIC KEY" in first.output
    second = runner.invoke(args=["keys", "init"])
    assert "exists" in second.output
    assert first.output.splitlines()[1] == second.output.splitlines()[1]  # same key id


def test_seal_without_a_key_says_how_to_make_one(app):
    result = app.test_cli_runner().invoke(args=["ledger", "seal"])
    assert result.exit_code != 0
    assert "pointclear keys init" in result.output


def test_seal_then_verify_ok(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["keys", "init"])
    _book(app, n=5)
    result = runner.invoke(args=["ledger", "seal", "--block-size", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count("sealed block") == 3
    assert "nothing to seal" in runner.invoke(args=["ledger", "seal"]).output
    tip = result.output.split("tip ")[1].split()[0]
    result = runner.invoke(args=["ledger", "verify", "--tip", tip])
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output and "5 transactions" in result.output
    wrong = tip.split(":")[0] + ":" + "0" * 64
    result = runner.invoke(args=["ledger", "verify", "--tip", wrong])
    assert result.exit_code == 1 and "recorded tip" in result.output
    result = runner.invoke(args=["ledger", "verify", "--tip", "nonsense"])
    assert result.exit_code == 2 and "HEIGHT:HASH" in result.output


def test_verify_exits_nonzero_with_a_readable_report(app, tmp_path):
    runner = app.test_cli_runner()
    runner.invoke(args=["keys", "init"])
    _book(app)
    runner.invoke(args=["ledger", "seal"])
    # Someone with a database shell edits a booked posting.
    raw = sqlite3.connect(tmp_path / "app.db")
    raw.execute("DROP TRIGGER ledger_postings_no_update")
    changed = raw.execute("UPDATE ledger_postings SET amount = 999 WHERE line = 1 AND "
                          "transaction_id = (SELECT transaction_id FROM ledger_postings LIMIT 1)")
    assert changed.rowcount == 1
    raw.commit()
    raw.close()
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 1
    assert "ledger BROKEN" in result.output
    for rule in ("[balanced]", "[totals]", "[seal]"):
        assert rule in result.output


def test_expire_holds_reports_a_count(app):
    result = app.test_cli_runner().invoke(args=["ledger", "expire-holds"])
    assert result.exit_code == 0 and "expired 0" in result.output


# --- the data key (members' contact data at rest) ---------------------------------------------

@pytest.fixture(autouse=True)
def _data_key_in_tmp(app, tmp_path):
    """`keys init` also writes the data key: keep it out of the real instance folder."""
    app.config["DATA_KEY"] = str(tmp_path / "data-key")


def test_keys_init_creates_the_data_key_once(app, tmp_path):
    runner = app.test_cli_runner()
    path = tmp_path / "data-key"
    first = runner.invoke(args=["keys", "init"])
    assert first.exit_code == 0, first.output
    key = load_data_key(path)
    assert f"created data key at {path} (key id {data_key_id(key)})" in first.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = runner.invoke(args=["keys", "init"])
    assert f"data key exists at {path} (key id {data_key_id(key)})" in second.output
    assert load_data_key(path) == key


def test_keys_init_adds_a_data_key_beside_an_existing_signing_key(app, tmp_path):
    signing.create_private_key(app.config["SIGNING_KEY"])
    result = app.test_cli_runner().invoke(args=["keys", "init"])
    assert result.exit_code == 0, result.output
    assert "signing key exists" in result.output and "created data key" in result.output
    assert len(load_data_key(tmp_path / "data-key")) == 32


def test_keys_init_never_replaces_a_file_that_is_not_a_data_key(app, tmp_path):
    path = tmp_path / "data-key"
    path.write_text("not a key\n")
    result = app.test_cli_runner().invoke(args=["keys", "init"])
    assert result.exit_code != 0
    assert "does not hold a base64 data key" in result.output
    assert path.read_text() == "not a key\n"
