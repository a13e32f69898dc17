"""The Idempotency-Key header over HTTP (app/api/edge.py write, app/api/idempotency.py):
a retry gets the first answer byte for byte and books nothing; a reused key is refused; a
key still in use is 409; keys are per partner. Then real threads on PostgreSQL."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from app.api import idempotency
from app.api.models import RequestRecord
from ledger.types import utcnow

from .signing import SignedClient

REDEMPTIONS = "/v1/redemptions"


def post(client, path, json=None, key=None):
    return client.post(path, json=json if json is not None else {},
                       headers={"Idempotency-Key": uuid.uuid4().hex if key is None else key})


def wire_bytes(body: dict) -> bytes:
    """The exact bytes SignedClient sends for ``body``."""
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def ok(r, status=201) -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    return r.json


def kinds(client, **query) -> list:
    r = client.get("/v1/transactions", query=query or None)
    assert r.status_code == 200, r.json
    return [op["kind"] for op in r.json["items"]]


def available(cast, ref="c-1") -> int:
    r = cast["banka"].get(f"/v1/members/{ref}/balances")
    return {b["program"]: b["available"] for b in r.json["balances"]}.get(cast.id("BANKA"), 0)


def days_ago(days: int) -> str:
    return (utcnow() - timedelta(days=days)).isoformat()


def issue(cast, points=5000):
    return ok(post(cast["banka"], "/v1/issues", {"customer_ref": "c-1",
                                                 "program": cast.id("BANKA"),
                                                 "points": points}))


def redemption(cast, points=2000) -> dict:
    return {"customer_ref": "mm-1", "program": cast.id("BANKA"), "points": points}


# --- the header ---------------------------------------------------------------------------

def test_a_post_without_a_key_is_refused_and_books_nothing(cast):
    r = cast["banka"].post("/v1/issues", json={"customer_ref": "c-1",
                                               "program": cast.id("BANKA"), "points": 10})
    assert r.status_code == 400 and r.mimetype == "application/problem+json"
    assert (r.json["code"], r.json["field"]) == ("idempotency_key_missing", "Idempotency-Key")
    assert kinds(cast["banka"]) == []


@pytest.mark.parametrize("key", ["", "k" * 201, "caf\u00e9"])
def test_an_invalid_key_is_refused(cast, key):
    r = post(cast["banka"], "/v1/issues", {"customer_ref": "c-1",
                                           "program": cast.id("BANKA"), "points": 10}, key=key)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert (r.json["code"], r.json["field"]) == ("invalid_idempotency_key", "Idempotency-Key")
    assert kinds(cast["banka"]) == []


# --- replays ------------------------------------------------------------------------------

def test_a_retry_gets_the_first_answer_and_books_once(cast):
    issue(cast)
    first = post(cast["megamart"], REDEMPTIONS, redemption(cast), key="pos-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = post(cast["megamart"], REDEMPTIONS, redemption(cast), key="pos-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.mimetype == "application/json"
    assert again.get_data() == first.get_data()
    assert kinds(cast["megamart"]) == ["redemption"]
    assert available(cast) == 3000


@pytest.mark.parametrize("path, body_of", [
    ("/v1/members", lambda cast: {"customer_ref": "c-2"}),
    ("/v1/issues", lambda cast: {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                 "points": 10}),
    ("/v1/imports", lambda cast: {"program": cast.id("BANKA"), "lines": [
        {"customer_ref": "c-1", "points": 10, "earned_at": days_ago(30)},
        {"customer_ref": "c-1", "points": 20, "earned_at": days_ago(20)}]}),
])
def test_every_kind_of_post_replays_its_first_answer(cast, path, body_of):
    body = body_of(cast)
    first = post(cast["banka"], path, body, key="k-1")
    assert first.status_code == 201, first.json
    again = post(cast["banka"], path, body, key="k-1")
    assert (again.status_code, again.get_data()) == (201, first.get_data())
    assert again.headers["Idempotent-Replayed"] == "true"
    links = cast["banka"].get("/v1/members").json["items"]
    assert [link["customer_ref"] for link in links] == (
        ["c-1", "c-2"] if path == "/v1/members" else ["c-1"])
    expected = {"/v1/members": [], "/v1/issues": ["issue"],
                "/v1/imports": ["import", "import"]}[path]
    assert kinds(cast["banka"]) == expected


def test_a_refusal_is_replayed_even_after_it_would_succeed(cast):
    first = post(cast["megamart"], REDEMPTIONS, redemption(cast), key="pos-1")
    assert first.status_code == 422 and first.json["code"] == "insufficient_points"
    issue(cast)  # the member now holds enough
    again = post(cast["megamart"], REDEMPTIONS, redemption(cast), key="pos-1")
    assert again.status_code == 422
    assert again.mimetype == "application/problem+json"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_data() == first.get_data()
    assert kinds(cast["megamart"]) == [] and available(cast) == 5000
    # A new key is a new request.
    ok(post(cast["megamart"], REDEMPTIONS, redemption(cast), key="pos-2"))
    assert available(cast) == 3000


def test_a_malformed_request_uses_up_no_key(cast):
    issue(cast)
    r = post(cast["megamart"], REDEMPTIONS, {**redemption(cast), "points": "2000"}, key="k")
    assert r.status_code == 422 and r.json["code"] == "validation_failed"
    r = post(cast["megamart"], REDEMPTIONS, redemption(cast), key="k")
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert available(cast) == 3000


@pytest.mark.parametrize("change", ["points", "path", "byte"])
def test_the_same_key_for_another_request_is_refused(cast, change):
    issue(cast)
    megamart = cast["megamart"]
    first = ok(post(megamart, REDEMPTIONS, redemption(cast), key="pos-1"))
    if change == "points":
        r = post(megamart, REDEMPTIONS, redemption(cast, 2001), key="pos-1")
    elif change == "path":
        r = post(megamart, "/v1/authorisations", redemption(cast), key="pos-1")
    else:  # the same JSON, serialised differently: "the same request" is the same bytes
        r = megamart.post(REDEMPTIONS, data=json.dumps(redemption(cast)).encode(),
                          headers={"Idempotency-Key": "pos-1",
                                   "Content-Type": "application/json"})
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert (r.json["code"], r.json["field"]) == ("idempotency_key_reused", "Idempotency-Key")
    assert "Idempotent-Replayed" not in r.headers
    assert kinds(megamart) == ["redemption"] and available(cast) == 3000
    # The key still answers its own request.
    again = post(megamart, REDEMPTIONS, redemption(cast), key="pos-1")
    assert (again.status_code, again.json["id"]) == (201, first["id"])


def test_a_key_is_scoped_to_its_partner(cast):
    banka, skyair = cast["banka"], cast["skyair"]
    a = ok(post(banka, "/v1/issues", {"customer_ref": "c-1", "program": cast.id("BANKA"),
                                      "points": 10}, key="shared"))
    b = ok(post(skyair, "/v1/issues", {"customer_ref": "sa-1", "program": cast.id("SKYMILES"),
                                       "points": 20}, key="shared"))
    assert a["id"] != b["id"] and (a["points"], b["points"]) == (10, 20)
    # Even the very same request body from two partners is two requests.
    body = {"customer_ref": "mm-1", "program": cast.id("COALITION"), "points": 5}
    c = post(skyair, "/v1/issues", {**body, "customer_ref": "sa-1"}, key="same")
    d = post(cast["telco"], "/v1/issues", {**body, "customer_ref": "t-1"}, key="same")
    assert (c.status_code, d.status_code) == (201, 201) and c.json["id"] != d.json["id"]
    assert "Idempotent-Replayed" not in d.headers
    assert kinds(banka) == ["issue"] and kinds(skyair) == ["issue", "issue"]


# --- a request still running ------------------------------------------------------------

def test_a_key_whose_first_request_is_running_is_409(cast, engine):
    issue(cast)
    body = redemption(cast)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    fp = idempotency.fingerprint("POST", REDEMPTIONS, wire_bytes(body))
    begun = idempotency.begin(sessions, cast.id("megamart"), "pos-1", fp)
    assert begun.kind == idempotency.STARTED
    r = post(cast["megamart"], REDEMPTIONS, body, key="pos-1")
    assert r.status_code == 409 and r.mimetype == "application/problem+json"
    assert (r.json["code"], r.json["field"]) == ("request_in_progress", "Idempotency-Key")
    assert r.headers["Retry-After"] == "1"
    # Another request under the running key is a reuse, not a wait.
    r = post(cast["megamart"], REDEMPTIONS, redemption(cast, 1), key="pos-1")
    assert (r.status_code, r.json["code"]) == (422, "idempotency_key_reused")
    assert kinds(cast["megamart"]) == [] and available(cast) == 5000
    # The 409 was not stored: once the first request gives the key up, a retry runs.
    assert idempotency.abandon(sessions, cast.id("megamart"), "pos-1", begun.token)
    r = post(cast["megamart"], REDEMPTIONS, body, key="pos-1")
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert available(cast) == 3000


def test_a_run_whose_process_died_is_taken_over_by_a_retry(cast, engine):
    issue(cast)
    body = redemption(cast)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    fp = idempotency.fingerprint("POST", REDEMPTIONS, wire_bytes(body))
    dead = idempotency.begin(sessions, cast.id("megamart"), "pos-1", fp,
                             now=utcnow() - timedelta(minutes=5))
    first = post(cast["megamart"], REDEMPTIONS, body, key="pos-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    # The dead run's token owns nothing any more.
    assert not idempotency.abandon(sessions, cast.id("megamart"), "pos-1", dead.token)
    again = post(cast["megamart"], REDEMPTIONS, body, key="pos-1")
    assert (again.status_code, again.get_data()) == (201, first.get_data())
    assert kinds(cast["megamart"]) == ["redemption"] and available(cast) == 3000


def test_a_finished_first_request_is_replayed_as_stored(cast, engine):
    """What a retry gets is what the first request stored, not a re-run."""
    issue(cast)
    body = redemption(cast)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    fp = idempotency.fingerprint("POST", REDEMPTIONS, wire_bytes(body))
    begun = idempotency.begin(sessions, cast.id("megamart"), "pos-1", fp)
    stored = '{"stored": true}'
    idempotency.finish_separately(sessions, cast.id("megamart"), "pos-1", begun.token, 201,
                                  stored)
    r = post(cast["megamart"], REDEMPTIONS, body, key="pos-1")
    assert (r.status_code, r.get_data(as_text=True)) == (201, stored)
    assert r.headers["Idempotent-Replayed"] == "true"
    assert kinds(cast["megamart"]) == [] and available(cast) == 5000


def test_a_member_token_is_not_stored_in_clear(cast, engine):
    r = ok(post(cast["banka"], "/v1/members/c-1/tokens", {"ttl_seconds": 300}, key="t-1"))
    with sessionmaker(bind=engine)() as session:
        stored = session.scalars(select(RequestRecord.response).where(
            RequestRecord.partner_id == cast.id("banka"))).all()
    assert stored and not any(r["token"] in (text or "") for text in stored)


# --- real threads (PostgreSQL) -----------------------------------------------------------

THREADS = 8


@pytest.mark.postgres
def test_concurrent_retries_book_once(api, cast):
    issue(cast)
    body = redemption(cast)
    megamart = cast["megamart"]
    # A Flask test client is not thread-safe: one client per thread, the same partner key.
    clients = [SignedClient(api.test_client(), megamart.private_key, megamart.key_id)
               for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def attempt(client):
        start.wait(timeout=60)
        r = post(client, REDEMPTIONS, body, key="pos-race")
        return r.status_code, r.get_json()

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(attempt, clients, timeout=120))
    statuses = sorted(status for status, _ in results)
    assert set(statuses) <= {201, 409}, results
    assert 201 in statuses
    assert len({answer["id"] for status, answer in results if status == 201}) == 1
    assert all(answer["code"] == "request_in_progress"
               for status, answer in results if status == 409)
    assert kinds(megamart) == ["redemption"] and available(cast) == 3000
    # Every thread's retry now gets the one booking.
    again = post(megamart, REDEMPTIONS, body, key="pos-race")
    assert again.status_code == 201
    assert again.json["id"] == next(a["id"] for s, a in results if s == 201)
