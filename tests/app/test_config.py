"""Configuration is read from the environment when an app is created, not at import."""

from __future__ import annotations

import pytest

from app import create_app


def test_database_url_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POINTCLEAR_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("POINTCLEAR_SEAL_BLOCK_SIZE", "250")
    app = create_app()
    assert app.config["DATABASE_URL"].endswith("x.db")
    assert app.config["SEAL_BLOCK_SIZE"] == 250


def test_default_is_sqlite_under_instance(monkeypatch):
    monkeypatch.delenv("POINTCLEAR_DATABASE_URL", raising=False)
    app = create_app({"TESTING": True})
    assert app.config["DATABASE_URL"] == f"sqlite:///{app.instance_path}/pointclear.db"
    assert app.config["SIGNING_KEY"].startswith(app.instance_path)


def test_test_config_wins(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'y.db'}"})
    assert app.config["DATABASE_URL"].endswith("y.db")


def test_importing_wsgi_reads_environment_at_that_moment(monkeypatch, tmp_path):
    import importlib
    import sys

    monkeypatch.setenv("POINTCLEAR_DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    sys.modules.pop("wsgi", None)
    wsgi = importlib.import_module("wsgi")
    assert wsgi.application.config["DATABASE_URL"].endswith("w.db")


def test_data_key_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POINTCLEAR_DATA_KEY", str(tmp_path / "dk"))
    assert create_app().config["DATA_KEY"] == str(tmp_path / "dk")
    monkeypatch.delenv("POINTCLEAR_DATA_KEY")
    app = create_app({"TESTING": True})
    assert app.config["DATA_KEY"] == f"{app.instance_path}/data-key"


def test_webhook_dev_targets_are_off_unless_turned_on(monkeypatch):
    monkeypatch.delenv("POINTCLEAR_WEBHOOK_DEV_TARGETS", raising=False)
    assert create_app({"TESTING": True}).config["WEBHOOK_DEV_TARGETS"] is False
    for value, on in (("1", True), ("true", True), ("0", False), ("off", False)):
        monkeypatch.setenv("POINTCLEAR_WEBHOOK_DEV_TARGETS", value)
        assert create_app({"TESTING": True}).config["WEBHOOK_DEV_TARGETS"] is on
    monkeypatch.setenv("POINTCLEAR_WEBHOOK_DEV_TARGETS", "ture")
    with pytest.raises(ValueError, match="WEBHOOK_DEV_TARGETS"):
        create_app({"TESTING": True})
