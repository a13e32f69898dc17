"""The integration walk-through (partner_sdk/INTEGRATION.md) through the SDK against a
real gunicorn on PostgreSQL, and the fault it exists for: the connection drops after
the server committed a redemption -- the SDK's retry gets the same answer and the
ledger holds exactly one booking."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlparse

import pytest

from partner_sdk import Client, MemberClient, errors

from .proxy import DroppingProxy

pytestmark = pytest.mark.postgres


def client_for(server, partner: str, base_url: str | None = None, **options) -> Client:
    env, url, home = server
    keys = home / "demo-keys"
    return Client(partner, (keys / f"{partner}.key-id").read_text().strip(),
                  keys / f"{partner}.pem", base_url=base_url or url, **options)


def test_the_walk_through(pg_server):
    with client_for(pg_server, "banka") as bank, client_for(pg_server, "megamart") as shop, \
            client_for(pg_server, "skyair") as air:
        assert bank.partner()["id"] == "banka"
        new = shop.members.link("mm-2001")  # a new member of MegaMart's own
        token = shop.members.create_token("mm-2001", ttl_seconds=300)
        assert air.members.link("sa-2001", member_token=token).member_id == new.member_id

        issued = bank.points.issue("c-1", "BANKA", 3_000, reference="e2e")
        auth = shop.redemptions.authorise("mm-1", "BANKA", 2_000, expires_in_seconds=900)
        sale = shop.redemptions.capture(auth.id, points=1_800)
        refund = shop.redemptions.refund(sale.id, points=500)
        converted = air.conversions.convert("sa-1", "BANKA", "SKYMILES", 1_000)
        assert (sale.points, refund.points, converted.target_points) == (1_800, 500, 400)
        assert sale.money.net == 1_764 and sale.money.fee == 36

        # 5,000 seeded + 3,000 issued - 1,800 captured + 500 refunded - 1,000 converted
        assert bank.members.balances("c-1")["BANKA"].available == 5_700
        kinds = [op.kind for op in shop.transactions.list(customer_ref="mm-1", limit=1)]
        assert kinds == ["refund", "capture", "authorisation"]
        assert issued.id in {op.id for op in bank.transactions.list(kind="issue")}

        member = MemberClient(bank.members.create_token("c-1"), base_url=pg_server[1])
        assert member.balances()["SKYMILES"].available == 400

        with pytest.raises(errors.InsufficientPointsError) as refused:
            shop.redemptions.redeem("mm-1", "BANKA", 10**9)
        assert refused.value.status == 422 and refused.value.request_id
        with pytest.raises(errors.PermissionDeniedError):
            shop.points.issue("mm-1", "BANKA", 10)


def _bookings(url, client, reference):
    return [op for op in client.transactions.list(kind="redemption")
            if op.reference == reference]


def test_a_dropped_answer_is_retried_into_the_same_booking(pg_server):
    _, url, _ = pg_server
    address = urlparse(url)
    proxy = DroppingProxy((address.hostname, address.port), b"POST /v1/redemptions")
    try:
        with client_for(pg_server, "megamart", base_url=proxy.url, max_retries=3) as shop:
            sale = shop.redemptions.redeem("mm-1", "BANKA", 100, reference="dropped-once")
        assert proxy.dropped == 1
        assert proxy.seen.count(b"POST /v1/redemptions HTTP/1.1") == 2  # the retry
        with client_for(pg_server, "megamart") as direct:
            booked = _bookings(url, direct, "dropped-once")
            assert [op.id for op in booked] == [sale.id]  # exactly one booking
            postings = direct.transactions.get(sale.id).postings
            assert sum(p.amount for p in postings if p.unit == "BANKA") == 200  # 100 D + 100 C
    finally:
        proxy.close()


def test_health_and_openapi_are_served(pg_server):
    _, url, _ = pg_server
    with urllib.request.urlopen(f"{url}/v1/openapi.json", timeout=10) as r:
        assert json.load(r)["openapi"].startswith("3.1")
