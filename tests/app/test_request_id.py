"""Every response carries an X-Request-Id: the client's own if it sent a sane one."""

from __future__ import annotations


def test_the_server_makes_one(app):
    r = app.test_client().get("/health")
    assert len(r.headers["X-Request-Id"]) == 32


def test_a_clients_own_id_is_kept_and_a_bad_one_replaced(app):
    client = app.test_client()
    assert client.get("/health", headers={"X-Request-Id": "pos-7.till-3_42"}).headers[
        "X-Request-Id"] == "pos-7.till-3_42"
    replaced = client.get("/v1/partner", headers={"X-Request-Id": "bad id;x"})
    assert replaced.status_code == 401 and replaced.headers["X-Request-Id"] != "bad id;x"
