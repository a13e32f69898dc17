"""The health endpoint and the error shape."""

from __future__ import annotations

from app import create_app
from app.db import head_revision


def test_health_once_migrated(app):
    response = app.test_client().get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "sqlite", "revision": head_revision()}


def test_health_is_503_before_migration(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "database_not_migrated"
    assert "pointclear db upgrade" in response.json["detail"]


def test_health_is_503_when_the_database_is_unreachable():
    app = create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.json["code"] == "database_unreachable"


def test_unknown_path_is_problem_json(app):
    response = app.test_client().get("/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "not_found" and response.json["status"] == 404


def test_wrong_method_is_problem_json_with_allow(app):
    response = app.test_client().post("/health")
    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]
