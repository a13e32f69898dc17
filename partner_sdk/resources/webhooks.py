"""``client.webhooks``: subscribe an endpoint to events, read the delivery log, replay.

Answers are plain dicts (the subscription and delivery shapes of the OpenAPI document);
to check a delivery your endpoint received, use :meth:`partner_sdk.Client.verify_webhook`
or :func:`partner_sdk.verify_webhook`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..pagination import Pager
from ._base import Resource, as_dict, segment


class Webhooks(Resource):
    """``/v1/webhooks/subscriptions`` and ``/v1/webhooks/deliveries``."""

    def subscribe(self, url: str, events: Sequence[str], *,
                  idempotency_key: str | None = None) -> dict[str, Any]:
        """POST the partner's ``events`` (types such as ``transaction.posted``, or
        ``["*"]`` for all) to ``url`` (absolute http(s)) from now on."""
        body: dict[str, Any] = self._post("/v1/webhooks/subscriptions",
                                          {"url": url, "events": list(events)},
                                          idempotency_key)
        return body

    def subscriptions(self) -> Pager[dict[str, Any]]:
        """The partner's subscriptions, active and disabled."""
        return self._pager("/v1/webhooks/subscriptions", {}, as_dict)

    def disable(self, subscription_id: str, *,
                idempotency_key: str | None = None) -> dict[str, Any]:
        """Stop a subscription: no new deliveries, pending ones fail."""
        body: dict[str, Any] = self._post(
            f"/v1/webhooks/subscriptions/{segment(subscription_id)}/disable", {},
            idempotency_key)
        return body

    def deliveries(self, *, event_id: str | None = None, state: str | None = None,
                   subscription_id: str | None = None,
                   limit: int | None = None) -> Pager[dict[str, Any]]:
        """The delivery log, newest first, each with every attempt (``state``: pending,
        delivered or failed; ``limit``: page size)."""
        params = {"event_id": event_id, "state": state, "subscription_id": subscription_id,
                  "limit": limit}
        return self._pager("/v1/webhooks/deliveries", params, as_dict)

    def replay(self, delivery_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue a delivery again, due now: the same event id and body (deduplicate on
        the event id at your endpoint)."""
        body: dict[str, Any] = self._post(
            f"/v1/webhooks/deliveries/{segment(str(delivery_id))}/replay", {}, idempotency_key)
        return body
