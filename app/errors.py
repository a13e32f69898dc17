"""One error shape for every error the HTTP API returns: RFC 9457 problem+json.

``{"type", "title", "status", "detail", "code"}`` plus ``field`` when one input field is
at fault. ``code`` is stable and machine-readable; clients branch on it, not on text.
"""

from __future__ import annotations

import logging

from flask import Response, json
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ledger.errors import LedgerError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def problem(status: int, code: str, detail: str, *, title: str | None = None,
            field: str | None = None, **extra) -> Response:
    body = {
        "type": f"https://pointclear.example/problems/{code}",
        "title": title or code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if field:
        body["field"] = field
    body.update(extra)
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)


def _http_error(exc: HTTPException) -> Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    response = problem(exc.code or 500, code, exc.description or exc.name, title=exc.name)
    if exc.code == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error")
    return problem(500, "internal_error", "The server failed; this is a bug and has been logged.")


# Rule broken -> HTTP status. Everything not listed is a 422 (the request was
# understood but breaks a rule of the ledger).
LEDGER_STATUS = {
    "account_not_found": 404,
    "transaction_not_found": 404,
    "member_not_found": 404,
    "agreement_not_found": 404,
    "operation_not_found": 404,
    "subscription_not_found": 404,
    "delivery_not_found": 404,
    "not_permitted": 403,
    "delivery_in_progress": 409,
    # The IETF Idempotency-Key draft: a key reused with another request is 422.
    "idempotency_conflict": 422,
}


def problem_for(exc: LedgerError) -> Response:
    """The problem+json answer to a refusal of the ledger or the clearing domain."""
    extra = {}
    if exc.code == "import_rejected":
        extra["errors"] = exc.details.get("errors", [])
    return problem(LEDGER_STATUS.get(exc.code, 422), exc.code, exc.message, field=exc.field,
                   **extra)


def _validation_error(exc: ValidationError) -> Response:
    errors = list(_flatten(exc.messages))
    first_field, first_detail = errors[0] if errors else (None, "invalid input")
    return problem(422, "validation_failed", f"{first_field}: {first_detail}",
                   field=first_field, errors=[{"field": f, "detail": d} for f, d in errors])


def _flatten(messages, prefix=""):
    """marshmallow's nested messages as (dotted field, message) pairs."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = "" if key == "_schema" else str(key)
            yield from _flatten(value, f"{prefix}.{name}".strip(".") if name else prefix)
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        for message in messages:
            yield prefix or None, message
    else:
        for message in messages if isinstance(messages, list) else [messages]:
            yield from _flatten(message, prefix)


def init_app(app) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(LedgerError, problem_for)
    app.register_error_handler(ValidationError, _validation_error)
    app.register_error_handler(Exception, _unexpected)
