"""The clients: :class:`Client` for a partner's signed API calls, :class:`MemberClient`
for the member API a member token opens.

Everything is per instance -- keys, HTTP connections, the backoff's random generator,
the cached platform keys -- so two clients in one process never share state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import PartnerSDKError
from .keys import PrivateKeyLike, load_private_key, load_public_key
from .models import Balances, MemberToken, Operation
from .pagination import Pager
from .requester import APIResponse, Params, Requester
from .resources import (
    Agreements,
    Conversions,
    Members,
    Points,
    Programs,
    Redemptions,
    Transactions,
    Webhooks,
)
from .retries import Backoff, Sleep
from .signing import sign_request
from .webhooks import (
    DEFAULT_TOLERANCE,
    WEBHOOK_KEY_ID,
    WebhookEvent,
    WebhookVerificationError,
    verify_webhook,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 3
USER_AGENT = "pointclear-partner-sdk/0.1"
#: A webhook naming an unknown key refreshes the platform keys at most this often.
KEY_REFRESH_SECONDS = 300.0


_PARTNER_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,39}")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _checked(name: str, value: object, pattern: re.Pattern[str]) -> str:
    """A local mistake (a typo, a newline read from a file) fails here, not as a
    confusing error from the network later."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{name} {value!r} is not a Pointclear {name.replace('_', ' ')}")
    return value


class Client:
    """A partner's client: every request signed with the partner's Ed25519 key.

    ``private_key``: an ``Ed25519PrivateKey``, PEM bytes or text, or the path of a PEM
    file. ``key_id``: the id the platform gave the registered public key. ``timeout``:
    seconds per attempt. ``max_retries``: further attempts after the first (see
    :mod:`partner_sdk.retries`). ``transport``: an ``httpx`` transport (tests pass
    ``httpx.MockTransport``). ``backoff(attempt, retry_after) -> seconds`` and
    ``sleep(seconds)`` replace the retry wait.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, partner_id: str, key_id: str, private_key: PrivateKeyLike, *,
                 base_url: str = DEFAULT_BASE_URL,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES,
                 transport: httpx.BaseTransport | None = None, backoff: Backoff | None = None,
                 sleep: Sleep | None = None) -> None:
        self.partner_id = _checked("partner_id", partner_id, _PARTNER_ID)
        self.key_id = _checked("key_id", key_id.strip() if isinstance(key_id, str) else key_id,
                               _KEY_ID)
        self._private_key = load_private_key(private_key)
        self._requester = Requester(base_url=base_url, timeout=timeout,
                                    max_retries=max_retries, authenticate=self._sign,
                                    transport=transport, backoff=backoff, sleep=sleep,
                                    user_agent=f"{USER_AGENT} partner/{partner_id}")
        self._platform_keys: dict[str, Ed25519PublicKey] = {}
        self._keys_fetched_at = float("-inf")
        self.members = Members(self._requester)
        self.points = Points(self._requester)
        self.redemptions = Redemptions(self._requester)
        self.conversions = Conversions(self._requester)
        self.transactions = Transactions(self._requester)
        self.programs = Programs(self._requester)
        self.agreements = Agreements(self._requester)
        self.webhooks = Webhooks(self._requester)

    def _sign(self, request: httpx.Request) -> None:
        """Sign one attempt over the target exactly as httpx will send it."""
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        request.headers.update(sign_request(self._private_key, self.key_id, request.method,
                                            path, query, request.content))

    def request(self, method: str, path: str, *, json: Any = None, params: Params | None = None,
                idempotency_key: str | None = None,
                raise_for_status: bool = True) -> APIResponse:
        """Any endpoint, signed, with the same idempotency and retries as the resources.
        ``path`` starts with ``/v1/``; percent-encode path parameters yourself."""
        return self._requester.request(method, path, json=json, params=params,
                                       idempotency_key=idempotency_key,
                                       raise_for_status=raise_for_status)

    def partner(self) -> dict[str, Any]:
        """The calling partner as the platform knows it (id, roles, status, key_id...)."""
        body: dict[str, Any] = self.request("GET", "/v1/partner").body
        return body

    def _may_refresh_keys(self) -> bool:
        now = time.monotonic()
        if now - self._keys_fetched_at < KEY_REFRESH_SECONDS and self._platform_keys:
            return False
        self._keys_fetched_at = now
        return True

    def platform_keys(self) -> dict[str, Ed25519PublicKey]:
        """The platform's public keys by key id (``GET /v1/platform/keys``): what webhooks
        and statements are verified with."""
        body = self.request("GET", "/v1/platform/keys").body
        keys = {item["key_id"]: load_public_key(item["public_key"])
                for item in body.get("items", ())
                if item.get("algorithm", "ed25519").lower() == "ed25519"}
        self._platform_keys = dict(keys)
        return keys

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *,
                       tolerance: int = DEFAULT_TOLERANCE, now: float | None = None
                       ) -> WebhookEvent:
        """:func:`partner_sdk.verify_webhook` with the platform's keys, fetched on first use
        and again when a webhook names a key not seen yet (a rotation). Also checks that
        the event is addressed to this partner."""
        named = {k.lower(): v for k, v in headers.items()}.get(WEBHOOK_KEY_ID.lower(), "")
        named = named.strip()
        if named and named not in self._platform_keys and self._may_refresh_keys():
            # Anyone can POST to a webhook endpoint: refresh at most every few minutes,
            # and a failed fetch is a webhook we cannot verify, not a crash.
            try:
                self.platform_keys()
            except PartnerSDKError as exc:
                raise WebhookVerificationError(
                    f"the platform keys could not be fetched to verify key {named!r}: "
                    f"{exc}") from exc
        event = verify_webhook(body, headers, self._platform_keys, tolerance=tolerance, now=now)
        if event.partner != self.partner_id:
            raise WebhookVerificationError(f"the event is addressed to partner "
                                           f"{event.partner!r}, not {self.partner_id!r}")
        return event

    def close(self) -> None:
        """Close the HTTP connections."""
        self._requester.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(partner_id={self.partner_id!r}, key_id={self.key_id!r})"


class MemberClient:
    """The member API (``/v1/me``), opened by a member token a partner made
    (``client.members.create_token``): Bearer authentication, no request signing.
    Same retries as :class:`Client` (these are reads)."""

    def __init__(self, token: str | MemberToken, *, base_url: str = DEFAULT_BASE_URL,
                 timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES,
                 transport: httpx.BaseTransport | None = None, backoff: Backoff | None = None,
                 sleep: Sleep | None = None) -> None:
        self._token = token.token if isinstance(token, MemberToken) else token
        self._requester = Requester(base_url=base_url, timeout=timeout,
                                    max_retries=max_retries, authenticate=self._bearer,
                                    transport=transport, backoff=backoff, sleep=sleep,
                                    user_agent=f"{USER_AGENT} member")

    def _bearer(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {self._token}"

    def balances(self) -> Balances:
        """The member's balances in every program they hold."""
        return Balances.from_dict(self._requester.request("GET", "/v1/me/balances").body)

    def transactions(self, *, program: str | None = None, kind: str | None = None,
                     since: Any = None, until: Any = None,
                     limit: int | None = None) -> Pager[Operation]:
        """The member's own operations, newest first, page by page (points only: no
        partner terms or money)."""
        params = {"program": program, "kind": kind, "since": since, "until": until,
                  "limit": limit}
        return Pager(lambda p: self._requester.request("GET", "/v1/me/transactions",
                                                       params=p).body,
                     params, Operation.from_dict)

    def close(self) -> None:
        self._requester.close()

    def __enter__(self) -> MemberClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "MemberClient(token='...')"


__all__ = ["Client", "MemberClient", "DEFAULT_BASE_URL"]
