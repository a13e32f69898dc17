"""Retry policy: what is retried and how often, the wait (jitter stubbed, Retry-After
honoured), and one Idempotency-Key with a fresh signature on every attempt."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from partner_sdk import (
    APIConnectionError,
    APITimeoutError,
    Client,
    ConflictError,
    ExponentialBackoff,
    RateLimitedError,
    ServerError,
)
from partner_sdk.errors import APIError
from partner_sdk.retries import retry_after_seconds

from .conftest import BASE_URL, KEY_ID, PARTNER, ok, problem
from .test_signing import check_signed

BOOKED = {"id": "0190-op", "kind": "redemption", "status": "posted", "member_id": "m",
          "program": "BANKA", "points": 20, "created_at": "2026-01-15T09:30:00+00:00"}

RETRYABLE = [
    pytest.param(lambda: httpx.ConnectError("refused"), id="connect-error"),
    pytest.param(lambda: httpx.ReadTimeout("slow"), id="read-timeout"),
    pytest.param(lambda: httpx.ConnectTimeout("slow"), id="connect-timeout"),
    pytest.param(lambda: httpx.ReadError("reset mid-answer"), id="read-error"),
    pytest.param(lambda: httpx.RemoteProtocolError("closed without answer"), id="dropped"),
    pytest.param(lambda: problem(409, "request_in_progress", headers={"Retry-After": "1"}),
                 id="409-in-progress"),
    pytest.param(lambda: problem(429, "too_many_requests"), id="429"),
    pytest.param(lambda: problem(500, "internal_error"), id="500"),
    pytest.param(lambda: httpx.Response(502, text="bad gateway"), id="502-text"),
    pytest.param(lambda: problem(503, "unavailable"), id="503"),
]
NOT_RETRYABLE = [
    (400, "idempotency_key_missing"), (401, "bad_signature"), (403, "not_permitted"),
    (404, "operation_not_found"), (409, "something_else"), (413, "request_entity_too_large"),
    (422, "insufficient_points"), (422, "validation_failed"),
]


@pytest.mark.parametrize("failure", RETRYABLE)
def test_retried_with_the_same_key_and_body_and_a_fresh_signature(
        client, scripted, waits, private_key, failure):
    scripted.then(failure(), ok(BOOKED, 201))
    op = client.redemptions.redeem("mm-1", "BANKA", 20)
    assert op.id == "0190-op"
    first, second = scripted.requests
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert len(first.headers["Idempotency-Key"]) == 32  # uuid4 hex
    assert first.content == second.content
    assert first.headers["Pointclear-Nonce"] != second.headers["Pointclear-Nonce"]
    assert first.headers["Pointclear-Signature"] != second.headers["Pointclear-Signature"]
    for sent in (first, second):
        check_signed(sent, private_key.public_key())
    assert [attempt for attempt, _ in waits] == [0]


@pytest.mark.parametrize("status, code", NOT_RETRYABLE)
def test_other_4xx_are_never_retried(client, scripted, waits, status, code):
    scripted.then(problem(status, code))
    with pytest.raises(APIError) as caught:
        client.redemptions.redeem("mm-1", "BANKA", 20)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert len(scripted.requests) == 1 and waits == []


def test_every_attempt_of_a_long_outage_keeps_one_key(client, scripted, waits):
    scripted.then(*(httpx.ConnectError("down") for _ in range(3)), ok(BOOKED, 201))
    client.redemptions.redeem("mm-1", "BANKA", 20)
    assert len({r.headers["Idempotency-Key"] for r in scripted.requests}) == 1
    assert len({r.headers["Pointclear-Nonce"] for r in scripted.requests}) == 4
    assert [attempt for attempt, _ in waits] == [0, 1, 2]


@pytest.mark.parametrize("failure, raised", [
    (lambda: problem(500, "internal_error"), ServerError),
    (lambda: problem(429, "slow_down"), RateLimitedError),
    (lambda: problem(409, "request_in_progress"), ConflictError),
    (lambda: httpx.ConnectError("down"), APIConnectionError),
    (lambda: httpx.ReadTimeout("slow"), APITimeoutError),
])
def test_after_max_retries_the_last_failure_is_raised(scripted, private_key, failure, raised):
    scripted.then(*(failure() for _ in range(3)))
    with Client(PARTNER, KEY_ID, private_key, base_url=BASE_URL, transport=scripted.transport,
                max_retries=2, backoff=lambda a, r: 0.0, sleep=lambda s: None) as c:
        with pytest.raises(raised) as caught:
            c.redemptions.redeem("mm-1", "BANKA", 20, idempotency_key="order-77")
    assert len(scripted.requests) == 3
    assert caught.value.idempotency_key == "order-77"  # to retry later, safely


def test_max_retries_zero_means_one_attempt(scripted, private_key):
    scripted.then(problem(503, "unavailable"))
    with Client(PARTNER, KEY_ID, private_key, base_url=BASE_URL, transport=scripted.transport,
                max_retries=0) as c, pytest.raises(ServerError):
        c.partner()
    assert len(scripted.requests) == 1


def test_a_transport_failure_not_worth_retrying_is_raised_at_once(client, scripted, waits):
    scripted.then(httpx.UnsupportedProtocol("ftp?"))
    with pytest.raises(APIConnectionError):
        client.partner()
    assert len(scripted.requests) == 1 and waits == []


def test_a_callers_key_is_sent_on_every_attempt(client, scripted):
    scripted.then(problem(503, "unavailable"), ok(BOOKED, 201))
    client.redemptions.redeem("mm-1", "BANKA", 20, idempotency_key="till-4-receipt-991")
    assert [r.headers["Idempotency-Key"] for r in scripted.requests] == ["till-4-receipt-991"] * 2


def test_each_call_gets_its_own_key_and_gets_carry_none(client, scripted):
    scripted.then(ok(BOOKED, 201), ok(BOOKED, 201), ok({"id": "banka"}))
    client.redemptions.redeem("mm-1", "BANKA", 20)
    client.redemptions.redeem("mm-1", "BANKA", 20)
    client.partner()
    keys = [r.headers.get("Idempotency-Key") for r in scripted.requests]
    assert keys[0] != keys[1] and keys[2] is None


def test_a_replayed_answer_is_returned_like_the_first(client, scripted):
    scripted.then(httpx.RemoteProtocolError("dropped after commit"),
                  ok(BOOKED, 201, headers={"Idempotent-Replayed": "true"}))
    answer = client.request("POST", "/v1/redemptions",
                            json={"customer_ref": "mm-1", "program": "BANKA", "points": 20})
    assert answer.status == 201 and answer.replayed and answer.attempts == 2
    assert answer.body == BOOKED


def test_retry_after_is_passed_to_the_backoff(client, scripted, waits):
    scripted.then(problem(409, "request_in_progress", headers={"Retry-After": "1"}),
                  problem(429, "slow_down", headers={"Retry-After": "7"}), ok({"id": "b"}))
    client.partner()
    assert waits == [(0, 1.0), (1, 7.0)]


def test_the_client_sleeps_what_the_backoff_says(scripted, private_key):
    slept: list[float] = []
    scripted.then(problem(503, "x"), problem(503, "x"), ok({"id": "b"}))
    with Client(PARTNER, KEY_ID, private_key, base_url=BASE_URL, transport=scripted.transport,
                backoff=lambda attempt, retry_after: 0.25 * (attempt + 1),
                sleep=slept.append) as c:
        c.partner()
    assert slept == [0.25, 0.5]


def test_default_backoff_is_capped_exponential_with_full_jitter():
    class Highest(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    highest = ExponentialBackoff(rng=Highest())
    assert [highest(n, None) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    jittered = ExponentialBackoff(rng=random.Random(4))
    delays = [jittered(3, None) for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in delays) and len(set(delays)) == 50


def test_default_backoff_honours_retry_after_up_to_a_cap():
    backoff = ExponentialBackoff(max_retry_after=60)
    assert backoff(0, 1.0) == 1.0 and backoff(5, 30.0) == 30.0
    assert backoff(0, 3600.0) == 60


def test_retry_after_parses_seconds_and_http_dates():
    now = datetime(2026, 1, 15, 9, 30, tzinfo=timezone.utc)
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": " 1.5 "}) == 1.5
    later = format_datetime(now + timedelta(seconds=20), usegmt=True)
    assert retry_after_seconds({"Retry-After": later}, now=now) == 20.0
    assert retry_after_seconds({"Retry-After": "-4"}) == 0.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None
