"""The API's resources as attributes of :class:`partner_sdk.Client`: ``members``,
``points``, ``redemptions``, ``conversions``, ``transactions``, ``programs``,
``agreements``, ``webhooks``. Each method is one endpoint; every POST method takes
``idempotency_key=`` (one is made for you otherwise, and reused by the retries)."""

from __future__ import annotations

from .members import Members
from .operations import Conversions, Points, Redemptions
from .reads import Agreements, Programs, Transactions
from .webhooks import Webhooks

__all__ = ["Agreements", "Conversions", "Members", "Points", "Programs", "Redemptions",
           "Transactions", "Webhooks"]
