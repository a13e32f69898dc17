"""Cursor pagination of the list endpoints: pages of ``limit`` items following
``next_cursor``, newest first for operations and by customer reference for members, with
no item twice or missing, filters holding across pages, and a null cursor at the end."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest


def post(client, path, json=None, key=None):
    return client.post(path, json=json if json is not None else {},
                       headers={"Idempotency-Key": key or uuid.uuid4().hex})


def ok(r, status=201) -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    return r.json


def issue(cast, points, ref="c-1", program="BANKA", partner="banka") -> dict:
    return ok(post(cast[partner], "/v1/issues", {"customer_ref": ref,
                                                 "program": cast.id(program),
                                                 "points": points}))


def pages(get, path, **query) -> list[list[dict]]:
    """Every page of a list, following next_cursor until it is null."""
    out, cursor = [], None
    while True:
        args = {**query, **({"cursor": cursor} if cursor else {})}
        body = ok(get(path, args), 200)
        assert set(body) == {"items", "next_cursor"}
        out.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
        assert isinstance(cursor, str) and cursor
        assert len(out) < 50, "the cursor does not advance"


def partner_pages(client, path="/v1/transactions", **query):
    return pages(lambda p, q: client.get(p, query=q), path, **query)


def flat(page_list) -> list:
    return [item for page in page_list for item in page]


@pytest.fixture
def seven(cast) -> list[dict]:
    """Seven issues of 1..7 points, oldest first."""
    return [issue(cast, points) for points in range(1, 8)]


def test_seven_operations_page_as_three_three_one(cast, seven):
    got = partner_pages(cast["banka"], limit=3)
    assert [[op["points"] for op in page] for page in got] == [[7, 6, 5], [4, 3, 2], [1]]
    assert [op["id"] for op in flat(got)] == [op["id"] for op in reversed(seven)]
    created = [datetime.fromisoformat(op["created_at"]) for op in flat(got)]
    assert created == sorted(created, reverse=True)


def test_a_last_full_page_ends_with_a_null_cursor(cast, seven):
    got = partner_pages(cast["banka"], limit=7)
    assert [len(page) for page in got] == [7]
    got = partner_pages(cast["banka"], limit=1)
    assert [len(page) for page in got] == [1] * 7
    assert len({op["id"] for op in flat(got)}) == 7


def test_the_default_page_holds_fifty(cast, seven):
    body = ok(cast["banka"].get("/v1/transactions"), 200)
    assert (len(body["items"]), body["next_cursor"]) == (7, None)


def test_a_cursor_survives_new_operations(cast, seven):
    """Operations booked while a client pages do not shift the pages it has yet to read."""
    banka = cast["banka"]
    first = ok(banka.get("/v1/transactions", query={"limit": 3}), 200)
    issue(cast, 100)
    rest = partner_pages(banka, limit=3, cursor=first["next_cursor"])
    assert [op["points"] for op in flat(rest)] == [4, 3, 2, 1]


def test_kind_filter_pages_with_the_cursor(cast, seven):
    megamart = cast["megamart"]
    spent = [ok(post(megamart, "/v1/redemptions", {"customer_ref": "mm-1",
                                                   "program": cast.id("BANKA"),
                                                   "points": p})) for p in (1, 2, 3)]
    got = partner_pages(cast["banka"], kind="issue", limit=2)
    assert [[op["points"] for op in page] for page in got] == [[7, 6], [5, 4], [3, 2], [1]]
    got = partner_pages(cast["banka"], kind="redemption", limit=2)
    assert [op["id"] for op in flat(got)] == [op["id"] for op in reversed(spent)]
    assert [len(page) for page in got] == [2, 1]


def test_program_filter_pages_with_the_cursor(cast, seven):
    coalition = [issue(cast, p, ref="sa-1", program="COALITION", partner="skyair")
                 for p in (10, 20, 30)]
    mileage = [issue(cast, p, ref="sa-1", program="SKYMILES", partner="skyair")
               for p in (40, 50)]
    skyair = cast["skyair"]
    got = partner_pages(skyair, program=cast.id("COALITION"), limit=2)
    assert [[op["points"] for op in page] for page in got] == [[30, 20], [10]]
    got = partner_pages(skyair, program=cast.id("SKYMILES"), limit=1)
    assert [op["id"] for op in flat(got)] == [op["id"] for op in reversed(mileage)]
    assert {op["id"] for op in flat(partner_pages(skyair, limit=2))} == {
        op["id"] for op in coalition + mileage}


def test_since_and_until_page_with_the_cursor(cast, seven):
    since, until = seven[1]["created_at"], seven[5]["created_at"]
    got = partner_pages(cast["banka"], since=since, until=until, limit=2)
    # since is inclusive and until exclusive: the issues of 2, 3, 4 and 5 points.
    assert [[op["points"] for op in page] for page in got] == [[5, 4], [3, 2]]
    got = partner_pages(cast["banka"], since=seven[6]["created_at"])
    assert [op["points"] for op in flat(got)] == [7]
    got = partner_pages(cast["banka"], until=seven[0]["created_at"])
    assert flat(got) == []


def test_customer_ref_filter_pages_with_the_cursor(cast):
    banka = cast["banka"]
    ok(post(banka, "/v1/members", {"customer_ref": "c-2"}))
    mine, theirs = [], []
    for points in range(1, 6):  # interleaved: c-1, c-2, c-1, c-2, ...
        mine.append(issue(cast, points))
        theirs.append(issue(cast, 100 + points, ref="c-2"))
    got = partner_pages(banka, customer_ref="c-1", limit=2)
    assert [[op["points"] for op in page] for page in got] == [[5, 4], [3, 2], [1]]
    assert {op["customer_ref"] for op in flat(got)} == {"c-1"}
    got = partner_pages(banka, customer_ref="c-2", kind="issue", limit=4)
    assert [op["id"] for op in flat(got)] == [op["id"] for op in reversed(theirs)]
    assert [len(page) for page in got] == [4, 1]


def test_a_member_pages_through_their_own_operations(cast, seven):
    token = ok(post(cast["banka"], "/v1/members/c-1/tokens", {"ttl_seconds": 300}))["token"]
    client = cast["banka"].client

    def get(path, query):
        return client.get(path, query_string=query,
                          headers={"Authorization": f"Bearer {token}"})
    got = pages(get, "/v1/me/transactions", limit=3)
    assert [[op["points"] for op in page] for page in got] == [[7, 6, 5], [4, 3, 2], [1]]
    got = pages(get, "/v1/me/transactions", limit=2, since=seven[3]["created_at"])
    assert [[op["points"] for op in page] for page in got] == [[7, 6], [5, 4]]


def test_members_page_by_customer_ref(cast):
    banka = cast["banka"]
    for ref in ("c-4", "c-2", "c-6", "c-3", "c-5"):
        ok(post(banka, "/v1/members", {"customer_ref": ref}))
    got = partner_pages(banka, "/v1/members", limit=4)
    assert [[m["customer_ref"] for m in page] for page in got] == [
        ["c-1", "c-2", "c-3", "c-4"], ["c-5", "c-6"]]
    got = partner_pages(banka, "/v1/members", limit=3)
    assert [[m["customer_ref"] for m in page] for page in got] == [
        ["c-1", "c-2", "c-3"], ["c-4", "c-5", "c-6"]]
    got = partner_pages(banka, "/v1/members", limit=1)
    assert [m["customer_ref"] for m in flat(got)] == [f"c-{i}" for i in range(1, 7)]
    assert len({m["member_id"] for m in flat(got)}) == 6


def test_members_pages_hold_only_the_partners_links(cast):
    megamart = cast["megamart"]
    ok(post(megamart, "/v1/members", {"customer_ref": "mm-2"}))
    ok(post(cast["banka"], "/v1/members", {"customer_ref": "c-2"}))
    got = partner_pages(megamart, "/v1/members", limit=1)
    assert [m["customer_ref"] for m in flat(got)] == ["mm-1", "mm-2"]
