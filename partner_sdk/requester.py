"""One API call: build the request, authenticate every attempt, retry, map errors.

The client's resources call :meth:`Requester.request`; so does ``Client.request`` for
endpoints the SDK has no method for yet. The JSON body is serialised once and those
bytes are sent (and signed) by every attempt; a POST's Idempotency-Key is made once,
before the first attempt, and sent by every retry; each attempt is signed afresh (a new
timestamp and nonce) by the ``authenticate`` hook.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from .errors import APIConnectionError, APIError, APITimeoutError, error_for_status
from .retries import (
    RETRYABLE_TRANSPORT_ERRORS,
    Backoff,
    ExponentialBackoff,
    Sleep,
    default_sleep,
    retry_after_seconds,
    retryable_status,
)

log = logging.getLogger("partner_sdk")

IDEMPOTENCY_KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
REQUEST_ID = "X-Request-Id"
Params = Mapping[str, Any]


@dataclass(frozen=True)
class APIResponse:
    """A successful (or, with ``raise_for_status=False``, any) answer.

    Attributes:
      status: the HTTP status code.
      body: the parsed JSON body; the text if it was not JSON; None if empty.
      headers: the response headers, names in lower case.
      request_id: the ``X-Request-Id`` header, if the server sent one.
      idempotency_key: the key the request carried (every POST has one).
      replayed: the server answered a retry with the first answer
        (``Idempotent-Replayed: true``): nothing new was booked.
      attempts: how many attempts it took (1 when no retry was needed).
    """

    status: int
    body: Any
    headers: Mapping[str, str] = field(repr=False)
    request_id: str | None = None
    idempotency_key: str | None = None
    replayed: bool = False
    attempts: int = 1


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON: serialised once, so the digest covers the bytes sent."""
    return jsonlib.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,200}")

def _parsed(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _clean(params: Params | None) -> dict[str, str] | None:
    """Query parameters without the unset ones; datetimes as RFC 3339."""
    if not params:
        return None
    out = {}
    for name, value in params.items():
        if value is None:
            continue
        out[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return out or None


class Requester:
    """Sends requests for one client; owns its ``httpx.Client``.

    ``authenticate(request)`` adds the credentials to each attempt just before it is sent.
    """

    def __init__(self, *, base_url: str, timeout: float | httpx.Timeout, max_retries: int,
                 authenticate: Callable[[httpx.Request], None],
                 transport: httpx.BaseTransport | None = None, backoff: Backoff | None = None,
                 sleep: Sleep | None = None, user_agent: str = "pointclear-partner-sdk") -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.max_retries = max_retries
        self._authenticate = authenticate
        self._backoff: Backoff = backoff if backoff is not None else ExponentialBackoff()
        self._sleep: Sleep = sleep if sleep is not None else default_sleep
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport,
                                  follow_redirects=False,
                                  headers={"User-Agent": user_agent,
                                           "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json: Any = None, params: Params | None = None,
                idempotency_key: str | None = None,
                raise_for_status: bool = True) -> APIResponse:
        """Send ``method path`` and return the answer, retrying as :mod:`.retries` says.

        ``json`` (a POST's body) is sent as compact JSON; a POST with none sends ``{}``.
        Raises an :class:`~partner_sdk.errors.APIError` subclass for a 4xx/5xx (unless
        ``raise_for_status`` is false), :class:`~partner_sdk.errors.APIConnectionError`
        when no answer came.
        """
        method = method.upper()
        headers: dict[str, str] = {}
        body = b""
        if method == "POST" or json is not None:
            body = encode_json({} if json is None else json)
            headers["Content-Type"] = "application/json"
        if method == "POST":
            # Made once, before the first attempt: every retry must carry the same key.
            idempotency_key = idempotency_key or uuid.uuid4().hex
        if idempotency_key is not None:
            if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
                raise ValueError("an idempotency key is 1-200 printable ASCII characters")
            headers[IDEMPOTENCY_KEY] = idempotency_key
        query = _clean(params)
        attempt = 0
        while True:
            request = self._http.build_request(method, path, params=query, content=body,
                                               headers=headers)
            self._authenticate(request)  # a fresh timestamp and nonce every attempt
            try:
                response = self._http.send(request)
            except RETRYABLE_TRANSPORT_ERRORS as exc:
                if attempt >= self.max_retries:
                    kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) \
                        else APIConnectionError
                    raise kind(f"{method} {path}: {type(exc).__name__}: {exc} (after "
                               f"{attempt + 1} attempts)",
                               idempotency_key=idempotency_key) from exc
                self._wait(attempt, None, f"{type(exc).__name__}", method, path)
                attempt += 1
                continue
            except httpx.HTTPError as exc:  # not worth retrying: a bad URL, a local bug
                raise APIConnectionError(f"{method} {path}: {exc}",
                                         idempotency_key=idempotency_key) from exc
            parsed = _parsed(response)
            status = response.status_code
            if 200 <= status < 300 and parsed is not None and not isinstance(parsed, (dict, list)):
                raise APIError(f"{method} {path}: HTTP {status} but the answer is not JSON "
                               "(a proxy or captive portal?); check base_url", status=status,
                               body=str(parsed)[:500], headers=response.headers,
                               request_id=response.headers.get(REQUEST_ID),
                               idempotency_key=idempotency_key)
            if status < 200 or 300 <= status < 400:
                # The API answers 2xx or a problem; anything else (a redirect from an
                # http->https load balancer, say) means the base_url is wrong.
                where = response.headers.get("location")
                raise APIError(f"{method} {path}: unexpected HTTP {status}; check base_url"
                               + (f" (Location: {where})" if where else ""),
                               status=status, body=parsed, headers=response.headers,
                               request_id=response.headers.get(REQUEST_ID),
                               idempotency_key=idempotency_key)
            if status >= 400:
                code = parsed.get("code") if isinstance(parsed, dict) else None
                if retryable_status(status, code) and attempt < self.max_retries:
                    self._wait(attempt, retry_after_seconds(response.headers),
                               f"{status} {code or ''}".strip(), method, path)
                    attempt += 1
                    continue
                if raise_for_status:
                    raise error_for_status(status, parsed, response.headers,
                                           idempotency_key=idempotency_key)
            lower = {k.lower(): v for k, v in response.headers.items()}
            return APIResponse(status=status, body=parsed, headers=lower,
                               request_id=lower.get(REQUEST_ID.lower()),
                               idempotency_key=idempotency_key,
                               replayed=lower.get(REPLAYED.lower(), "").lower() == "true",
                               attempts=attempt + 1)

    def _wait(self, attempt: int, retry_after: float | None, why: str, method: str,
              path: str) -> None:
        delay = max(0.0, float(self._backoff(attempt, retry_after)))
        log.info("%s %s: %s; retry %d of %d in %.2f s", method, path, why, attempt + 1,
                 self.max_retries, delay)
        self._sleep(delay)
