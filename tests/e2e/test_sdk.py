"""The integration walk-through (partner_sdk/INTEGRATION.md) through the SDK against a
real gunicorn on PostgreSQL, and the fault it exists for: the connection drops after
the server committed a redemption -- the SDK's retry gets the same answer and the
ledger holds exactly one booking."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from urllib.parse import urlparse

import pytest

from partner_sdk import Client, MemberClient, errors

from .conftest import cli
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


class Receiver(http.server.ThreadingHTTPServer):
    """A partner's webhook endpoint: keeps what it got, answers 200."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((body, dict(self.headers)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_webhooks_reach_the_partner_and_verify_with_the_sdk(pg_server):
    env = pg_server[0]
    receiver = Receiver()
    try:
        with client_for(pg_server, "megamart") as shop, client_for(pg_server, "banka") as bank:
            shop.webhooks.subscribe(f"http://127.0.0.1:{receiver.server_address[1]}/hooks",
                                    ["transaction.posted"])
            bank.points.issue("c-1", "BANKA", 100)  # MegaMart is no party: no event
            sale = shop.redemptions.redeem("mm-1", "BANKA", 100, reference="hooked")
            cli(env, "webhooks", "deliver", "--once", "--partner", "megamart")
            events = [shop.verify_webhook(body, headers) for body, headers in receiver.received]
            assert [(e.type, e.data["id"]) for e in events] == [("transaction.posted", sale.id)]
            cli(env, "webhooks", "deliver", "--once", "--partner", "megamart")
            assert len(receiver.received) == 1  # delivered once
            body, headers = receiver.received[0]
            with pytest.raises(errors.WebhookVerificationError):
                shop.verify_webhook(body.replace(b"100", b"900"), headers)
    finally:
        receiver.shutdown()
