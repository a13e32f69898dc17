"""End to end: the README's way of running the service, against a real gunicorn.

Migrate, create keys, seed the demo, serve, and drive it with `pointclear demo call`
(signed requests over real HTTP) -- on its own SQLite file, whichever database the rest
of the suite uses, because the demo's partner ids are fixed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from .conftest import cli, serve


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e")
    with serve(home, f"sqlite:///{home / 'pointclear.db'}") as running:
        yield running


def call(server, *args, check=True):
    env, url = server
    result = cli(env, "demo", "call", *args, "--url", url, check=check)
    status_line, _, body = result.stdout.partition("\n")
    return int(status_line.split()[1]), json.loads(body)


def test_seeding_twice_changes_nothing(server):
    env, _ = server
    assert "already present" in cli(env, "demo", "seed").stdout


def test_a_signed_redemption_over_real_http(server):
    status, partner = call(server, "banka", "GET", "/v1/partner")
    assert (status, partner["id"], partner["roles"]) == (200, "banka", ["issuer"])
    body = json.dumps({"customer_ref": "mm-1", "program": "BANKA", "points": 2000})
    status, spent = call(server, "megamart", "POST", "/v1/redemptions", body,
                         "--idempotency-key", "till-7-receipt-1")
    assert status == 201 and spent["money"] == {"currency": "CNY", "gross": 2000, "fee": 40,
                                                "net": 1960}
    status, again = call(server, "megamart", "POST", "/v1/redemptions", body,
                         "--idempotency-key", "till-7-receipt-1")
    assert (status, again["id"]) == (201, spent["id"])
    status, balances = call(server, "banka", "GET", "/v1/members/c-1/balances")
    assert {b["program"]: b["available"] for b in balances["balances"]}["BANKA"] == 3000


def test_refusals_are_problem_json_over_real_http(server):
    body = json.dumps({"customer_ref": "mm-1", "program": "BANKA", "points": 0})
    status, problem = call(server, "megamart", "POST", "/v1/redemptions", body, check=False)
    assert (status, problem["code"], problem["field"]) == (422, "invalid_amount", "points")
    env, url = server
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(f"{url}/v1/partner", timeout=5)
    assert unsigned.value.code == 401
    assert unsigned.value.headers["Content-Type"] == "application/problem+json"
