"""``client.members``: link customers to platform members, read links and balances,
make member tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..models import Balances, Link, MemberToken
from ..pagination import Pager
from ._base import Resource, compact, segment


class Members(Resource):
    """``/v1/members``."""

    def link(self, customer_ref: str, *, contact: Mapping[str, str] | None = None,
             member_token: str | MemberToken | None = None,
             idempotency_key: str | None = None) -> Link:
        """Link the partner's customer ``customer_ref`` to a platform member.

        Without ``member_token`` a new member is enrolled (``contact``: optional ``name``,
        ``email``, ``phone``, kept encrypted and shown only to this partner). With a
        token another partner made for an existing member, that member is linked (the
        token is used up; no contact may be given then).
        """
        token = member_token.token if isinstance(member_token, MemberToken) else member_token
        body = compact(customer_ref=customer_ref,
                       contact=dict(contact) if contact is not None else None,
                       member_token=token)
        return Link.from_dict(self._post("/v1/members", body, idempotency_key))

    def get(self, customer_ref: str) -> Link:
        """One link, by the partner's customer reference."""
        return Link.from_dict(self._get(f"/v1/members/{segment(customer_ref)}"))

    def list(self, *, limit: int | None = None) -> Pager[Link]:
        """Every link of the partner, by ``customer_ref``, fetched page by page
        (``limit``: page size, 1-200)."""
        return self._pager("/v1/members", {"limit": limit}, Link.from_dict)

    def balances(self, customer_ref: str) -> Balances:
        """The member's balances in the programs the partner owns or has an agreement on."""
        return Balances.from_dict(self._get(f"/v1/members/{segment(customer_ref)}/balances"))

    def create_token(self, customer_ref: str, *, ttl_seconds: int = 900,
                     idempotency_key: str | None = None) -> MemberToken:
        """A member token (``ttl_seconds`` 60-3600) for the member API
        (:class:`partner_sdk.MemberClient`) or for linking the member at another partner."""
        body: dict[str, Any] = {"ttl_seconds": ttl_seconds}
        data = self._post(f"/v1/members/{segment(customer_ref)}/tokens", body, idempotency_key)
        return MemberToken.from_dict(data)
