"""Each refusal becomes its class, chosen by status and code, carrying the problem's
code, field and detail, the status and the request id."""

from __future__ import annotations

import httpx
import pytest

import partner_sdk
from partner_sdk import errors as e

from .conftest import problem

CASES = [
    (400, "idempotency_key_missing", "Idempotency-Key", e.ValidationError),
    (400, "invalid_idempotency_key", "Idempotency-Key", e.ValidationError),
    (401, "bad_signature", "Pointclear-Signature", e.AuthenticationError),
    (401, "stale_timestamp", "Pointclear-Timestamp", e.AuthenticationError),
    (403, "not_permitted", None, e.PermissionDeniedError),
    (404, "member_not_found", "customer_ref", e.NotFoundError),
    (409, "request_in_progress", "Idempotency-Key", e.ConflictError),
    (413, "request_entity_too_large", None, e.APIError),
    (422, "insufficient_points", "points", e.InsufficientPointsError),
    (422, "insufficient_funds", "points", e.InsufficientPointsError),
    (422, "idempotency_key_reused", "Idempotency-Key", e.IdempotencyConflictError),
    (422, "idempotency_conflict", None, e.IdempotencyConflictError),
    (422, "validation_failed", "points", e.ValidationError),
    (422, "program_not_found", "program", e.ValidationError),
    (429, "too_many_requests", None, e.RateLimitedError),
    (500, "internal_error", None, e.ServerError),
    (503, "unavailable", None, e.ServerError),
]


@pytest.mark.parametrize("status, code, field, cls", CASES)
def test_each_refusal_has_its_class(client, scripted, status, code, field, cls):
    answer = problem(status, code, detail=f"why {code}", field_=field,
                     headers={"X-Request-Id": "req-42"})
    scripted.then(*([answer] * 4))  # retryable ones are retried until the end
    with pytest.raises(cls) as caught:
        client.points.issue("c-1", "BANKA", 10, idempotency_key="k-1")
    err = caught.value
    assert type(err) is cls and isinstance(err, e.PartnerSDKError)
    assert (err.status, err.code, err.field, err.detail) == (status, code, field, f"why {code}")
    assert err.request_id == "req-42" and err.idempotency_key == "k-1"
    assert err.body["code"] == code
    assert code in str(err) and "req-42" in str(err)


def test_the_hierarchy_lets_callers_catch_broadly():
    assert issubclass(e.InsufficientPointsError, e.ValidationError)
    assert issubclass(e.IdempotencyConflictError, e.ValidationError)
    assert issubclass(e.APITimeoutError, e.APIConnectionError)
    for cls in (e.APIError, e.APIConnectionError, e.WebhookVerificationError):
        assert issubclass(cls, e.PartnerSDKError)
    assert issubclass(partner_sdk.InvalidKeyError, e.PartnerSDKError)


def test_without_a_request_id_header_it_is_none(client, scripted):
    scripted.then(problem(404, "member_not_found"))
    with pytest.raises(e.NotFoundError) as caught:
        client.members.get("nobody")
    assert caught.value.request_id is None


def test_validation_failed_lists_every_field(client, scripted):
    errors = [{"field": "points", "detail": "Not a valid integer."},
              {"field": "program", "detail": "Missing data for required field."}]
    scripted.then(problem(422, "validation_failed", field_="points", errors=errors))
    with pytest.raises(e.ValidationError) as caught:
        client.points.issue("c-1", "BANKA", 10)
    assert caught.value.field == "points" and caught.value.errors == errors


def test_a_non_json_error_body_is_kept_as_text(client, scripted):
    scripted.then(*[httpx.Response(502, text="<html>bad gateway</html>")] * 4)
    with pytest.raises(e.ServerError) as caught:
        client.partner()
    assert caught.value.code is None and caught.value.body == "<html>bad gateway</html>"
    assert caught.value.status == 502


def test_an_unmapped_status_is_a_plain_api_error():
    err = e.error_for_status(418, {"code": "teapot"}, {})
    assert type(err) is e.APIError and err.code == "teapot"
    assert e.error_class(422, None) is e.ValidationError
    assert e.error_class(599, "anything") is e.ServerError


def test_a_redirect_is_an_error_not_a_result(client, scripted):
    """An http->https redirect at a load balancer means base_url is wrong: say so."""
    scripted.then(httpx.Response(301, headers={"Location": "https://api.example/v1/issues"}))
    with pytest.raises(e.APIError) as err:
        client.points.issue("c-1", "BANKA", 10)
    assert err.value.status == 301 and "base_url" in str(err.value)
    assert "https://api.example/v1/issues" in str(err.value)


def test_one_webhook_error_class_whichever_way_it_is_imported():
    from partner_sdk import webhooks

    assert webhooks.WebhookVerificationError is e.WebhookVerificationError
    assert issubclass(e.WebhookVerificationError, e.SignatureVerificationError)
    assert issubclass(e.SignatureVerificationError, e.PartnerSDKError)


def test_an_html_page_with_200_is_an_error_not_a_result(client, scripted):
    scripted.then(httpx.Response(200, text="<html>captive portal</html>"))
    with pytest.raises(e.APIError, match="not JSON"):
        client.points.issue("c-1", "BANKA", 10)


def test_local_mistakes_fail_at_once(private_key):
    from partner_sdk import Client

    with pytest.raises(ValueError, match="key_id"):
        Client("megamart", "key_1\nx", private_key)
    with pytest.raises(ValueError, match="partner_id"):
        Client("Mega Mart", "key_1", private_key)
    assert Client("megamart", "key_1\n", private_key).key_id == "key_1"  # read from a file


def test_an_idempotency_key_must_be_printable_ascii(client):
    with pytest.raises(ValueError, match="printable ASCII"):
        client.points.issue("c-1", "BANKA", 10, idempotency_key="clé-1")
