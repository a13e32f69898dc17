"""An attempt ends by its deadline whatever the endpoint does (trickles its answer,
floods it), and a claim's lease outlasts every attempt the claim allows -- so no other
worker can claim the delivery while its POST may still be running."""

from __future__ import annotations

import time
from datetime import timedelta

from app.clearing.webhook_models import WebhookDelivery
from app.webhooks import transport
from app.webhooks.deliver import LEASE_MARGIN, deliver_due, lease_for
from ledger.types import utcnow

from .endpoints import raw_server
from .test_delivery import deliver, spend

HEADERS = {"Content-Type": "application/json"}


def trickle(sock):
    """A byte every 50 ms for up to 15 s: each read is quick, the answer never ends."""
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 300:
        sock.sendall(bytes([byte]))
        time.sleep(0.05)  # a slow endpoint, not synchronisation


def flood(sock):
    """A 2xx at once, then a body that goes on and on."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    for _ in range(3000):
        sock.sendall(b"\0" * 16384)
        time.sleep(0.005)


def test_a_trickling_answer_is_cut_off_at_the_deadline():
    with raw_server(trickle) as port:
        started = time.monotonic()
        answer = transport.post(f"http://127.0.0.1:{port}/slow", b"{}", HEADERS,
                                deadline=started + 1.0, dev_targets=True)
        took = time.monotonic() - started
    assert (answer.status, answer.error) == (None, "timeout")
    assert 0.9 <= took < 2.5, took


def test_an_endless_answer_is_read_only_up_to_the_cap():
    with raw_server(flood) as port:
        started = time.monotonic()
        answer = transport.post(f"http://127.0.0.1:{port}/big", b"{}", HEADERS,
                                deadline=started + 10, dev_targets=True)
        took = time.monotonic() - started
    assert (answer.status, answer.error) == (200, None)
    assert took < 3, took  # 64 KiB, not the deadline's worth


def test_the_worker_records_a_trickling_endpoint_as_a_timeout(committed, platform_key):
    with raw_server(trickle) as port:
        committed.subscribe("megamart", f"http://127.0.0.1:{port}/slow")
        spend(committed)
        (result,) = deliver(committed, platform_key, timeout=1)
    assert (result.status, result.error, result.outcome.state) == (None, "timeout", "pending")
    assert result.duration_ms < 2500
    (delivery,) = committed.deliveries()
    assert (delivery.last_error, delivery.claim_token) == ("timeout", None)


def test_no_attempt_can_outlive_its_lease(committed, platform_key):
    """Three claims, one at a time, 5 s each: the lease covers a round more than the
    three attempts, plus the margin; an attempt that would start too late for its full
    5 s is not made, and its claim is handed back."""
    committed.subscribe("megamart", "https://hooks.megamart.example/in")
    for _ in range(3):
        spend(committed)
    now, deadlines = utcnow(), []

    def poster(url, body, headers, *, deadline, dev_targets):
        deadlines.append(deadline)
        return transport.Answer(503, "http_503", "HTTP 503 Service Unavailable")
    # The worker's clock: claimed at 0; attempts start at 0 and 12, the third at 16,
    # when 5 s no longer fit in the 20 s the lease leaves for POSTs.
    ticks = iter([0.0, 0.0, 5.0, 12.0, 14.0, 16.0])
    lease = lease_for(3, 1, 5)
    results = deliver_due(committed.sessions, platform_key, now=now, batch=3, timeout=5,
                          concurrency=1, partners=committed.partners, poster=poster,
                          monotonic=lambda: next(ticks))
    assert lease == timedelta(seconds=20) + LEASE_MARGIN
    assert deadlines == [5.0, 17.0]
    assert max(deadlines) <= (lease - LEASE_MARGIN).total_seconds()
    assert [r.outcome.state for r in results] == ["pending", "pending", "released"]
    released = results[2].claim
    with committed.sessions() as s:
        delivery = s.get(WebhookDelivery, released.delivery_id)
        assert (delivery.attempts, delivery.next_attempt_at, delivery.claim_token) == (
            0, now, None)
