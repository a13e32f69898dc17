"""The SDK against the real API, in process: httpx's WSGITransport hands each request to
the Flask app (no server, no socket), so the server's own signature check, idempotency
and problem answers judge what the SDK sends. The e2e suite does the same over HTTP."""

from __future__ import annotations

import time
from itertools import islice

import httpx
import pytest

from partner_sdk import (
    Client,
    IdempotencyConflictError,
    InsufficientPointsError,
    MemberClient,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    generate_private_key_pem,
    load_private_key,
    public_key_hex,
)
from partner_sdk.keys import private_key_pem
from tests.api.conftest import api, cast  # noqa: F401  (fixtures: the app and its partners)

BASE = "http://pointclear.test"


class DropFirstAnswer(httpx.BaseTransport):
    """Delivers the first POST to the app, then loses its answer, as a dropped connection
    after the server committed would."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and not self.dropped:
            self.dropped += 1
            response.read()
            raise httpx.RemoteProtocolError("server disconnected without a full answer")
        return response


def sdk(cast, name: str, transport: httpx.BaseTransport) -> Client:  # noqa: F811
    signed = cast[name]
    return Client(cast.id(name), signed.key_id, signed.private_key, base_url=BASE,
                  transport=transport, sleep=lambda seconds: None)


@pytest.fixture
def wsgi(api):  # noqa: F811
    """The app behind httpx's WSGI transport. That transport puts the decoded path in
    PATH_INFO as text; PEP 3333 wants the bytes as latin-1, as gunicorn sends them."""
    def pep3333(environ, start_response):
        environ["PATH_INFO"] = environ["PATH_INFO"].encode("utf-8").decode("latin-1")
        return api(environ, start_response)
    return httpx.WSGITransport(app=pep3333)


def test_the_walk_through_through_the_sdk(cast, wsgi):  # noqa: F811
    BANKA, SKYMILES = cast.id("BANKA"), cast.id("SKYMILES")
    with sdk(cast, "banka", wsgi) as banka, sdk(cast, "megamart", wsgi) as megamart, \
            sdk(cast, "skyair", wsgi) as skyair:
        assert banka.partner()["id"] == cast.id("banka")
        link = banka.members.link("new é-customer?", contact={"name": "Li"})
        assert link.contact == {"name": "Li"} and banka.members.get(link.customer_ref) == link

        issued = banka.points.issue("c-1", BANKA, 5000, reference="welcome")
        assert (issued.kind, issued.points, issued.customer_ref) == ("issue", 5000, "c-1")
        spent = megamart.redemptions.redeem("mm-1", BANKA, 2000)
        assert spent.money is not None and spent.money.fee == 40
        assert megamart.redemptions.refund(spent.id, 500).points == 500
        held = megamart.redemptions.authorise("mm-1", BANKA, 300, expires_in_seconds=600)
        assert held.status == "pending"
        assert megamart.redemptions.capture(held.id, 200).points == 200
        other = megamart.redemptions.authorise("mm-1", BANKA, 100)
        assert megamart.redemptions.void(other.id).kind == "void"
        converted = skyair.conversions.convert("sa-1", BANKA, SKYMILES, 1000)
        assert converted.target_points == 400

        balances = banka.members.balances("c-1")
        assert balances[BANKA].available == 5000 - 2000 + 500 - 200 - 1000
        kinds = [t.kind for t in megamart.transactions.list(customer_ref="mm-1", limit=2)]
        # Newest first, three pages of two, each fetched through next_cursor.
        assert kinds == ["void", "authorisation", "capture", "authorisation", "refund",
                         "redemption"]
        assert banka.transactions.get(issued.id).postings
        assert {p["code"] for p in banka.programs.list()} >= {BANKA, SKYMILES}
        assert list(banka.agreements.list())

        token = banka.members.create_token("c-1", ttl_seconds=300)
        with MemberClient(token, base_url=BASE, transport=wsgi) as member:
            assert member.balances()[SKYMILES].available == 400
            assert next(iter(member.transactions())).kind == "conversion"


def test_refusals_arrive_as_their_classes(cast, wsgi):  # noqa: F811
    BANKA = cast.id("BANKA")
    with sdk(cast, "banka", wsgi) as banka, sdk(cast, "megamart", wsgi) as megamart:
        with pytest.raises(InsufficientPointsError) as caught:
            megamart.redemptions.redeem("mm-1", BANKA, 10**9)
        assert caught.value.status == 422 and caught.value.code == "insufficient_points"
        assert caught.value.request_id  # the server's X-Request-Id, to quote to support
        with pytest.raises(NotFoundError):
            banka.members.balances("nobody")
        with pytest.raises(PermissionDeniedError):
            megamart.points.issue("mm-1", BANKA, 10)
        with pytest.raises(ValidationError) as caught:
            banka.points.issue("c-1", BANKA, 0)
        assert caught.value.field is not None
        banka.points.issue("c-1", BANKA, 10, idempotency_key="same-key")
        with pytest.raises(IdempotencyConflictError):
            banka.points.issue("c-1", BANKA, 11, idempotency_key="same-key")
        again = banka.request("POST", "/v1/issues", idempotency_key="same-key",
                              json={"customer_ref": "c-1", "program": BANKA, "points": 10})
        assert again.replayed


def test_a_retry_after_a_lost_answer_books_once(cast, wsgi):  # noqa: F811
    BANKA = cast.id("BANKA")
    flaky = DropFirstAnswer(wsgi)
    with sdk(cast, "banka", flaky) as banka:
        banka.points.issue("c-1", BANKA, 1000)
        op = banka.points.issue("c-1", BANKA, 7, reference="once")
    assert flaky.dropped == 1
    with sdk(cast, "banka", wsgi) as banka:
        sevens = [t for t in islice(banka.transactions.list(customer_ref="c-1"), 50)
                  if t.reference == "once"]
    assert [t.id for t in sevens] == [op.id]


def test_platform_keys_and_webhook_subscriptions(cast, wsgi, api):  # noqa: F811
    pem = generate_private_key_pem()
    with open(api.config["SIGNING_KEY"], "wb") as out:
        out.write(pem)
    with sdk(cast, "banka", wsgi) as banka:
        keys = banka.platform_keys()
        assert [public_key_hex(k) for k in keys.values()] == [
            public_key_hex(load_private_key(pem))]
        sub = banka.webhooks.subscribe("https://banka.example/hooks", ["transaction.posted"])
        assert [s["id"] for s in banka.webhooks.subscriptions()] == [sub["id"]]
        assert list(banka.webhooks.deliveries(subscription_id=sub["id"])) == []


def test_a_webhook_signed_by_the_delivery_worker_verifies(cast, wsgi, api):  # noqa: F811
    from app.webhooks.deliver import webhook_headers

    platform = load_private_key(generate_private_key_pem())
    with open(api.config["SIGNING_KEY"], "wb") as out:
        out.write(private_key_pem(platform))
    body = (b'{"id":"0190a-evt","type":"transaction.posted","created_at":'
            b'"2026-01-15T09:30:00+00:00","partner":"%s","data":{"id":"op-1"}}'
            % cast.id("banka").encode())
    headers = webhook_headers(platform, "0190a-evt", body, timestamp=int(time.time()))
    with sdk(cast, "banka", wsgi) as banka:
        event = banka.verify_webhook(body, headers)  # fetches GET /v1/platform/keys
    assert (event.id, event.type, event.data) == ("0190a-evt", "transaction.posted",
                                                  {"id": "op-1"})
