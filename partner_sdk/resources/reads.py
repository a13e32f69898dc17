"""``client.transactions``, ``client.programs``, ``client.agreements``: what a partner
reads. Lists are :class:`~partner_sdk.pagination.Pager` s: iterate them, and pages are
fetched as the iteration reaches them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..models import Operation
from ..pagination import Pager
from ._base import Resource, as_dict, segment


class Transactions(Resource):
    """``/v1/transactions``: operations the partner booked or whose money or points are
    its own, newest first."""

    def list(self, *, customer_ref: str | None = None, program: str | None = None,
             kind: str | None = None, since: datetime | str | None = None,
             until: datetime | str | None = None, limit: int | None = None) -> Pager[Operation]:
        """Every matching operation, newest first, fetched page by page.

        ``since`` (inclusive) and ``until`` (exclusive) are aware datetimes or RFC 3339
        text; ``kind`` is an operation kind; ``limit`` the page size (1-200).
        """
        params = {"customer_ref": customer_ref, "program": program, "kind": kind,
                  "since": since, "until": until, "limit": limit}
        return self._pager("/v1/transactions", params, Operation.from_dict)

    def get(self, operation_id: str) -> Operation:
        """One operation with its ledger postings."""
        return Operation.from_dict(self._get(f"/v1/transactions/{segment(str(operation_id))}"))


class Programs(Resource):
    """``/v1/programs``: every program hosted on the platform."""

    def list(self) -> Pager[dict[str, Any]]:
        """Programs as dicts: ``code``, ``name``, ``owner``, ``expiry_months``, ``value``."""
        return self._pager("/v1/programs", {}, as_dict)


class Agreements(Resource):
    """``/v1/agreements``: the partner's agreements, with every version of their terms."""

    def list(self) -> Pager[dict[str, Any]]:
        """Agreements as dicts: ``id``, ``kind``, ``program``, ``redeemer``,
        ``target_program``, ``currency``, ``status``, ``terms``, ``current_version``."""
        return self._pager("/v1/agreements", {}, as_dict)
