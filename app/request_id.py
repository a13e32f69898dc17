"""``X-Request-Id``: one id per request, in the response headers and in the logs.

A client may send its own (1-100 of ``A-Za-z0-9._-``), e.g. to correlate with its logs;
otherwise the server makes one. Support quotes it to find the request.
"""

from __future__ import annotations

import logging
import re
import uuid

from flask import g, request

HEADER = "X-Request-Id"
_VALID = re.compile(r"[A-Za-z0-9._-]{1,100}")
log = logging.getLogger("pointclear.requests")


def _begin() -> None:
    sent = request.headers.get(HEADER, "")
    g.request_id = sent if _VALID.fullmatch(sent) else uuid.uuid4().hex


def _end(response):
    request_id = g.get("request_id")
    if request_id:
        response.headers[HEADER] = request_id
        if response.status_code >= 500:
            log.error("request %s %s %s failed with %s", request_id, request.method,
                      request.path, response.status_code)
    return response


def init_app(app) -> None:
    app.before_request(_begin)
    app.after_request(_end)
