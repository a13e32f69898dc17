"""Pointclear partner SDK: the client a partner's systems use to call the clearing house.

::

    from partner_sdk import Client

    with Client("banka", "key_0123456789abcdef", "banka.pem") as client:
        op = client.points.issue("c-1", "BANKA", 5000, reference="welcome bonus")
        for tx in client.transactions.list(customer_ref="c-1"):
            print(tx.kind, tx.points)

Requests are signed (:mod:`.signing`), POSTs carry one Idempotency-Key across retries
(:mod:`.requester`), failures are retried with backoff (:mod:`.retries`) and refusals
raised as one class per failure (:mod:`.errors`). Webhooks and statement signatures are
verified by :mod:`.webhooks`. The package imports nothing from the platform's own code
(``app``, ``ledger``) and keeps no module-level state. See ``partner_sdk/README.md``.
"""

from __future__ import annotations

from .client import DEFAULT_BASE_URL, Client, MemberClient
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    IdempotencyConflictError,
    InsufficientPointsError,
    NotFoundError,
    PartnerSDKError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ValidationError,
)
from .keys import (
    InvalidKeyError,
    generate_private_key_pem,
    load_private_key,
    load_public_key,
    public_key_hex,
    public_key_pem,
)
from .models import Balance, Balances, Link, MemberToken, Money, Operation, Posting
from .pagination import Page, Pager
from .requester import APIResponse
from .retries import ExponentialBackoff
from .webhooks import (
    SignatureVerificationError,
    WebhookEvent,
    WebhookVerificationError,
    verify_detached,
    verify_webhook,
)

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError", "APIError", "APIResponse", "APITimeoutError",
    "AuthenticationError", "Balance", "Balances", "Client", "ConflictError",
    "DEFAULT_BASE_URL", "ExponentialBackoff", "IdempotencyConflictError",
    "InsufficientPointsError", "InvalidKeyError", "Link", "MemberClient", "MemberToken",
    "Money", "NotFoundError", "Operation", "Page", "Pager", "PartnerSDKError",
    "PermissionDeniedError", "Posting", "RateLimitedError", "ServerError",
    "SignatureVerificationError", "ValidationError", "WebhookEvent",
    "WebhookVerificationError", "generate_private_key_pem", "load_private_key",
    "load_public_key", "public_key_hex", "public_key_pem", "verify_detached",
    "verify_webhook",
]
