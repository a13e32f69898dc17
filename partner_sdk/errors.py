"""Every error the SDK raises, under one root, and the one table that picks the class.

Branch on the class for the kind of failure and on ``code`` for the exact rule::

    PartnerSDKError                      anything this SDK raises
    +-- APIError                         the API answered with a problem+json (or any 4xx/5xx)
    |   +-- AuthenticationError          401: the request signature was refused
    |   +-- PermissionDeniedError        403: the partner may not do this (not_permitted)
    |   +-- NotFoundError                404: no such member, operation, agreement
    |   +-- ConflictError                409: the same Idempotency-Key is still running
    |   +-- ValidationError              400/422: the input or a rule (code, field)
    |   |   +-- IdempotencyConflictError 422: the key was used for another request
    |   |   +-- InsufficientPointsError  422: not enough points (or funds)
    |   +-- RateLimitedError             429: too many requests
    |   +-- ServerError                  5xx: the platform failed
    +-- APIConnectionError               no answer: the connection failed (after retries)
    |   +-- APITimeoutError              no answer in time (after retries)
    +-- WebhookVerificationError         a webhook or a signature did not verify

:func:`error_for_status` is the only place where a status and a code become a class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class PartnerSDKError(Exception):
    """The root: every error the partner SDK raises is one of these."""


class APIError(PartnerSDKError):
    """The API refused the request or failed: an HTTP status of 400 or more.

    Attributes:
      status: the HTTP status code.
      code: the problem's stable, machine-readable ``code`` (None if the body had none).
      field: the input at fault (a body field, a query parameter or a header), if any.
      detail: the human-readable explanation.
      request_id: the ``X-Request-Id`` response header, to quote to support (None if the
        server sent none).
      body: the parsed problem+json body (a dict), or the raw text if it was not JSON.
      headers: the response headers (lower-case names).
      idempotency_key: the ``Idempotency-Key`` the request was sent with (POST), if any.
    """

    def __init__(self, message: str, *, status: int, code: str | None = None,
                 field: str | None = None, detail: str | None = None,
                 request_id: str | None = None, body: Any = None,
                 headers: Mapping[str, str] | None = None,
                 idempotency_key: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.detail = detail
        self.request_id = request_id
        self.body = body
        self.headers = dict(headers or {})
        self.idempotency_key = idempotency_key

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Every field at fault (``validation_failed``, ``import_rejected``), or []."""
        if isinstance(self.body, dict) and isinstance(self.body.get("errors"), list):
            return list(self.body["errors"])
        return []

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
                f"field={self.field!r}, request_id={self.request_id!r})")


class AuthenticationError(APIError):
    """401: the signature, key, timestamp or nonce was refused (``code`` says which)."""


class PermissionDeniedError(APIError):
    """403: the partner is authenticated but may not do this (``not_permitted``)."""


class NotFoundError(APIError):
    """404: the member, operation or agreement does not exist or is not the partner's."""


class ConflictError(APIError):
    """409: a request with the same Idempotency-Key is still running
    (``request_in_progress``); raised only once the retries are used up."""


class ValidationError(APIError):
    """400 or 422: the request is malformed or breaks a rule; ``field`` names the input
    at fault and ``errors`` lists every one for ``validation_failed``."""


class IdempotencyConflictError(ValidationError):
    """422: the Idempotency-Key was already used for a different request
    (``idempotency_key_reused``): make a new key for a new request."""


class InsufficientPointsError(ValidationError):
    """422: the member does not have the points (``insufficient_points``) or an account
    lacks the balance (``insufficient_funds``)."""


class RateLimitedError(APIError):
    """429: too many requests; raised only once the retries are used up."""


class ServerError(APIError):
    """5xx: the platform failed; raised only once the retries are used up. With an
    Idempotency-Key it is safe to retry the same call later with the same key."""


class APIConnectionError(PartnerSDKError):
    """No answer from the API: the connection could not be made or was dropped, after
    every retry. A POST may or may not have been booked: retry it with the same
    ``idempotency_key`` (kept on this error) to find out safely."""

    def __init__(self, message: str, *, idempotency_key: str | None = None) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key


class APITimeoutError(APIConnectionError):
    """The API did not answer within the client's ``timeout``, after every retry."""


class SignatureVerificationError(PartnerSDKError):
    """A signature does not verify with the key given: the bytes are not the platform's."""


class WebhookVerificationError(SignatureVerificationError):
    """A webhook is not authentic, not fresh, or not well formed: answer it with a 4xx
    and do not act on it. The message says which check failed."""


#: (status, code) -> class, for the codes that have a class of their own.
_BY_CODE: dict[tuple[int, str], type[APIError]] = {
    (422, "idempotency_key_reused"): IdempotencyConflictError,
    (422, "idempotency_conflict"): IdempotencyConflictError,
    (422, "insufficient_points"): InsufficientPointsError,
    (422, "insufficient_funds"): InsufficientPointsError,
}
#: status -> class for every other code.
_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitedError,
}


def error_class(status: int, code: str | None) -> type[APIError]:
    """The class for an answer with ``status`` and problem ``code``."""
    if code is not None and (status, code) in _BY_CODE:
        return _BY_CODE[(status, code)]
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, APIError)


def error_for_status(status: int, body: Any, headers: Mapping[str, str], *,
                     idempotency_key: str | None = None) -> APIError:
    """The error for one refused answer: ``body`` is the parsed JSON (or the text)."""
    problem = body if isinstance(body, dict) else {}
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    field = problem.get("field") if isinstance(problem.get("field"), str) else None
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) else None
    lower = {k.lower(): v for k, v in headers.items()}
    request_id = lower.get("x-request-id")
    message = f"{status} {code or 'error'}: {detail or (body if isinstance(body, str) else '')}"
    if request_id:
        message += f" (request {request_id})"
    return error_class(status, code)(
        message.strip(), status=status, code=code, field=field, detail=detail,
        request_id=request_id, body=body, headers=lower, idempotency_key=idempotency_key)
