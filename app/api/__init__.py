"""The partner and member HTTP API, versioned under ``/v1``.

Partners sign every request (:mod:`.signatures`); members read with tokens a partner
obtained for them. Every error is problem+json (:mod:`app.errors`). The OpenAPI document
is at ``/v1/openapi.json`` and a readable index of it at ``/v1/docs``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from flask.json.provider import DefaultJSONProvider


class JSONProvider(DefaultJSONProvider):
    """RFC 3339 instants (Flask's default is an HTTP date), exact decimals as strings."""

    @staticmethod
    def default(o):
        if isinstance(o, datetime):
            return o.isoformat()
        if isinstance(o, (Decimal, uuid.UUID)):
            return str(o)
        return DefaultJSONProvider.default(o)


def init_app(app) -> None:
    from flask import request

    from . import (
        catalog,
        edge,
        me,
        members,
        openapi,
        operations,
        signatures,
        transactions,
        webhooks,
    )

    app.json = JSONProvider(app)
    app.register_error_handler(signatures.AuthError, signatures.auth_problem)
    app.register_error_handler(edge.MemberAuthError, edge.member_auth_problem)
    app.before_request(lambda: edge.check_path(request.view_args))
    for module in (catalog, members, operations, transactions, me, webhooks, openapi):
        app.register_blueprint(module.bp)
