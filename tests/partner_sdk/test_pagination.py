"""Lists page themselves: cursors followed lazily, one request per page reached."""

from __future__ import annotations

from itertools import islice

from partner_sdk import Operation

from .conftest import ok


def op(n: int) -> dict:
    return {"id": f"op-{n}", "kind": "issue", "status": "posted", "member_id": "m-1",
            "program": "BANKA", "points": n, "created_at": "2026-01-15T09:30:00+00:00"}


def three_pages(scripted):
    scripted.then(ok({"items": [op(1), op(2)], "next_cursor": "c2"}),
                  ok({"items": [op(3), op(4)], "next_cursor": "c3"}),
                  ok({"items": [op(5)], "next_cursor": None}))


def test_every_item_of_three_pages_in_order(client, scripted):
    three_pages(scripted)
    items = list(client.transactions.list(program="BANKA", limit=2))
    assert [t.points for t in items] == [1, 2, 3, 4, 5]
    assert all(isinstance(t, Operation) for t in items)
    queries = [dict(r.url.params) for r in scripted.requests]
    assert queries == [{"program": "BANKA", "limit": "2"},
                       {"program": "BANKA", "limit": "2", "cursor": "c2"},
                       {"program": "BANKA", "limit": "2", "cursor": "c3"}]


def test_pages_are_fetched_only_when_reached(client, scripted):
    three_pages(scripted)
    pager = client.transactions.list(limit=2)
    assert scripted.requests == []  # nothing fetched until iterated
    iterator = iter(pager)
    assert next(iterator).points == 1 and len(scripted.requests) == 1
    assert next(iterator).points == 2 and len(scripted.requests) == 1
    assert next(iterator).points == 3 and len(scripted.requests) == 2
    assert [t.points for t in islice(pager, 0)] == [] and len(scripted.requests) == 2


def test_stopping_early_fetches_no_more(client, scripted):
    three_pages(scripted)
    assert [t.id for t in islice(client.transactions.list(), 3)] == ["op-1", "op-2", "op-3"]
    assert len(scripted.requests) == 2


def test_pages_can_be_walked_one_by_one(client, scripted):
    three_pages(scripted)
    pages = list(client.transactions.list().pages())
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [p.next_cursor for p in pages] == ["c2", "c3", None]


def test_members_list_pages_too(client, scripted):
    link = {"customer_ref": "a", "member_id": "m", "status": "active", "contact": None,
            "linked_at": "2026-01-15T09:30:00+00:00"}
    scripted.then(ok({"items": [link], "next_cursor": "YQ"}),
                  ok({"items": [{**link, "customer_ref": "b"}], "next_cursor": None}))
    assert [m.customer_ref for m in client.members.list()] == ["a", "b"]
    assert scripted.requests[1].url.params["cursor"] == "YQ"


def test_an_empty_list_is_one_request(client, scripted):
    scripted.then(ok({"items": [], "next_cursor": None}))
    assert list(client.programs.list()) == [] and len(scripted.requests) == 1
