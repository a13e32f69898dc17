"""Where webhooks may go (SSRF): outside development only https URLs whose host resolves
to public addresses; every attempt resolves and vets the host again and connects to the
address it vetted, with the Host header, SNI and certificate check on the name; a
partner sees a category, never the details."""

from __future__ import annotations

import time
import uuid

import pytest

from app.clearing import webhooks
from app.clearing.errors import InvalidSubscription
from app.clearing.webhook_urls import check_url, public_address
from app.webhooks import transport
from app.webhooks.deliver import deliver_due
from ledger.types import utcnow

from .test_delivery import spend

HEADERS = {"Content-Type": "application/json", "Pointclear-Webhook-Id": "evt-1"}


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x",
    "https://169.254.169.254/latest/meta-data/", "https://[::1]/x", "https://[fd00::1]/x",
    "https://[::ffff:127.0.0.1]/x", "https://[::ffff:a00:1]/x", "https://0.0.0.0/x",
    "https://100.64.0.1/x", "https://224.0.0.1/x", "https://2130706433/x",
    "https://0x7f.1/x", "https://127.1/x", "https://localhost/x", "https://api.localhost./x"])
def test_outside_development_only_https_to_public_hosts_is_accepted(url):
    with pytest.raises(InvalidSubscription) as refused:
        check_url(url)
    assert refused.value.field == "url"
    check_url(url.replace("https://", "http://"), dev_targets=True)  # the demo's receivers


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/pointclear?token=x", "https://8.8.8.8/x",
    "https://[2001:4860:4860::8888]:8443/x", "https://[::ffff:8.8.8.8]/x"])
def test_public_https_urls_are_accepted(url):
    assert check_url(url) == url


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("::ffff:8.8.8.8", True),
    ("10.0.0.1", False), ("192.168.1.1", False), ("127.0.0.1", False), ("::1", False),
    ("::ffff:10.0.0.1", False), ("::ffff:127.0.0.1", False), ("169.254.169.254", False),
    ("fe80::1", False), ("100.64.0.1", False), ("0.0.0.0", False), ("239.1.1.1", False),
    ("not an address", False)])
def test_public_addresses(address, public):
    assert public_address(address) is public


def test_the_api_refuses_private_targets_outside_development(api, cast):
    api.config["WEBHOOK_DEV_TARGETS"] = False
    client = cast["banka"]

    def subscribe(url):
        return client.post("/v1/webhooks/subscriptions", json={"url": url, "events": ["*"]},
                           headers={"Idempotency-Key": uuid.uuid4().hex})
    for url in ("http://127.0.0.1:9000/hooks", "https://10.0.0.7/hooks",
                "https://[::ffff:192.168.0.1]/"):
        r = subscribe(url)
        assert (r.status_code, r.json["code"], r.json["field"]) == (
            422, "invalid_subscription", "url"), url
    sub = subscribe("https://hooks.banka.example/in")
    assert sub.status_code == 201
    r = client.post(f"/v1/webhooks/subscriptions/{sub.json['id']}/url",
                    json={"url": "https://169.254.169.254/"},
                    headers={"Idempotency-Key": uuid.uuid4().hex})
    assert (r.status_code, r.json["code"]) == (422, "invalid_subscription")


def _round(committed, platform_key, **options):
    return deliver_due(committed.sessions, platform_key, now=utcnow(),
                       partners=committed.partners, concurrency=1, timeout=5, **options)


def test_a_host_that_resolves_to_a_private_address_is_refused_at_delivery(
        committed, receiver, platform_key, dns):
    port = receiver.url.rsplit(":", 1)[1]
    committed.subscribe("megamart", f"https://hooks.partner.test:{port}/in")
    committed.subscribe("megamart", f"https://mixed.partner.test:{port}/in")
    committed.subscribe("megamart", f"{receiver.url}/plain")  # http: refused in production
    dns.answers["hooks.partner.test"] = [["127.0.0.1"]]  # public when subscribed, not now
    dns.answers["mixed.partner.test"] = [["8.8.8.8", "::ffff:10.0.0.1"]]
    spend(committed)
    results = _round(committed, platform_key, dev_targets=False)
    assert sorted((r.status, r.error, r.outcome.state) for r in results) == [
        (None, "refused_address", "pending")] * 3
    assert receiver.requests == []
    details = sorted(r.detail for r in results)
    assert any("127.0.0.1" in d for d in details) and any("10.0.0.1" in d for d in details)
    for delivery in committed.deliveries():
        assert delivery.last_error == "refused_address"  # what the partner's log shows


def test_the_post_goes_to_the_address_vetted_not_to_a_second_lookup(
        committed, receiver, platform_key, dns):
    port = receiver.url.rsplit(":", 1)[1]
    committed.subscribe("megamart", f"http://hooks.partner.test:{port}/in")
    # A rebinding name server: the vetted answer first, anything else after it.
    dns.answers["hooks.partner.test"] = [["127.0.0.1"]]
    spend(committed)
    (result,) = _round(committed, platform_key, dev_targets=True)
    assert (result.status, result.outcome.state) == (204, "delivered")
    assert dns.lookups["hooks.partner.test"] == 1
    (got,) = receiver.requests
    assert got.headers["Host"] == f"hooks.partner.test:{port}"


def test_tls_checks_the_host_name_on_the_vetted_address(tls_receiver, dns):
    port = tls_receiver.url.rsplit(":", 1)[1]
    dns.answers["hooks.partner.test"] = [["127.0.0.1"], ["127.0.0.1"]]
    dns.answers["other.partner.test"] = [["127.0.0.1"]]

    def post(host):
        return transport.post(f"https://{host}:{port}/in?k=1", b"{}", HEADERS,
                              deadline=time.monotonic() + 5, dev_targets=True,
                              context=tls_receiver.client_context)
    answer = post("hooks.partner.test")
    assert (answer.status, answer.error) == (204, None)
    assert tls_receiver.server_names == ["hooks.partner.test"]
    (got,) = tls_receiver.requests
    assert (got.path, got.headers["Host"]) == ("/in?k=1", f"hooks.partner.test:{port}")
    wrong = post("other.partner.test")  # same address, a certificate for another name
    assert (wrong.status, wrong.error) == (None, "tls_error")
    assert "certificate" in wrong.detail.lower()
    untrusted = transport.post(f"https://hooks.partner.test:{port}/in", b"{}", HEADERS,
                               deadline=time.monotonic() + 5, dev_targets=True)
    assert untrusted.error == "tls_error"  # the system's trust store does not know the CA
    assert len(tls_receiver.requests) == 1


def test_the_scheme_is_checked_at_delivery_too(receiver):
    answer = transport.post(f"{receiver.url}/x", b"{}", HEADERS,
                            deadline=time.monotonic() + 5, dev_targets=False)
    assert (answer.status, answer.error) == (None, "refused_address")
    assert receiver.requests == []


def test_the_delivery_log_shows_categories_only(committed, platform_key, dns):
    committed.subscribe("megamart", "http://nowhere.partner.test/in")
    dns.answers["nowhere.partner.test"] = []  # does not resolve
    spend(committed)
    (result,) = _round(committed, platform_key, dev_targets=True)
    assert result.error == "connection_failed" and "not known" in result.detail
    (delivery,) = committed.deliveries()
    assert delivery.last_error == "connection_failed"


def test_a_changed_url_is_vetted_like_a_new_one(committed):
    sub = committed.subscribe("megamart", "https://hooks.megamart.example/a")
    with pytest.raises(InvalidSubscription):
        committed.run(lambda s: webhooks.change_url(s, committed.id("megamart"), sub.id,
                                                    "https://192.168.0.10/a"))
