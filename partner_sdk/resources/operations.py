"""``client.points``, ``client.redemptions``, ``client.conversions``: the operations a
partner books. Each returns the :class:`~partner_sdk.models.Operation` as booked; a
retry of the same call (same ``idempotency_key``) returns the same operation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..models import Operation
from ._base import Resource, compact, segment


class Points(Resource):
    """Issuing points (issuer partners): ``/v1/issues``, ``/v1/imports``."""

    def issue(self, customer_ref: str, program: str, points: int, *,
              reference: str | None = None, idempotency_key: str | None = None) -> Operation:
        """Credit ``points`` of ``program`` the member earned with the partner (a new lot)."""
        body = compact(customer_ref=customer_ref, program=program, points=points,
                       reference=reference)
        return Operation.from_dict(self._post("/v1/issues", body, idempotency_key))

    def import_points(self, program: str, lines: Iterable[Mapping[str, Any]], *,
                      idempotency_key: str | None = None) -> list[Operation]:
        """Move members' existing points onto the platform with their earn dates.

        Each line: ``customer_ref``, ``points``, ``earned_at`` (a datetime or RFC 3339
        text) and an optional ``reference``. Every line is booked or none: a bad line
        raises :class:`~partner_sdk.errors.ValidationError` whose ``errors`` lists each
        (malformed fields first; once they are right, every line that breaks a rule).
        Every ``customer_ref`` must be linked first (``members.link``). At most 10,000
        lines per call; a large import takes a while (tens of seconds for 10,000 lines),
        so give the client a ``timeout`` of a minute or two, or send smaller batches.
        """
        body = {"program": program, "lines": [compact(**dict(line)) for line in lines]}
        data = self._post("/v1/imports", body, idempotency_key)
        return [Operation.from_dict(item) for item in data["items"]]

    def clawback(self, operation_id: str, points: int | None = None, *,
                 idempotency_key: str | None = None) -> Operation:
        """Take back all that is left of an issue, or ``points`` of it."""
        return Operation.from_dict(self._post(
            f"/v1/issues/{segment(str(operation_id))}/clawbacks", compact(points=points),
            idempotency_key))


class Redemptions(Resource):
    """Spending points (redeemer partners): redeem at once, or authorise then capture or
    void (a POS); refund either."""

    def redeem(self, customer_ref: str, program: str, points: int, *,
               reference: str | None = None, idempotency_key: str | None = None) -> Operation:
        """Spend ``points`` of the member's ``program`` at the partner, at once."""
        body = compact(customer_ref=customer_ref, program=program, points=points,
                       reference=reference)
        return Operation.from_dict(self._post("/v1/redemptions", body, idempotency_key))

    def refund(self, operation_id: str, points: int | None = None, *,
               idempotency_key: str | None = None) -> Operation:
        """Give back all that is left of a redemption (or a captured authorisation: its
        id or the capture's), or ``points`` of it."""
        return Operation.from_dict(self._post(
            f"/v1/redemptions/{segment(str(operation_id))}/refunds", compact(points=points),
            idempotency_key))

    def authorise(self, customer_ref: str, program: str, points: int, *,
                  expires_in_seconds: int | None = None, reference: str | None = None,
                  idempotency_key: str | None = None) -> Operation:
        """Reserve ``points`` until captured, voided or expired (``expires_in_seconds``:
        default 7 days, at most 30)."""
        body = compact(customer_ref=customer_ref, program=program, points=points,
                       expires_in_seconds=expires_in_seconds, reference=reference)
        return Operation.from_dict(self._post("/v1/authorisations", body, idempotency_key))

    def capture(self, operation_id: str, points: int | None = None, *,
                idempotency_key: str | None = None) -> Operation:
        """Post an authorisation for all its points, or fewer (the rest is released)."""
        return Operation.from_dict(self._post(
            f"/v1/authorisations/{segment(str(operation_id))}/capture", compact(points=points),
            idempotency_key))

    def void(self, operation_id: str, *, idempotency_key: str | None = None) -> Operation:
        """Release an authorisation."""
        return Operation.from_dict(self._post(
            f"/v1/authorisations/{segment(str(operation_id))}/void", {}, idempotency_key))


class Conversions(Resource):
    """Converting points between programs under a conversion agreement."""

    def convert(self, customer_ref: str, source: str, target: str, points: int, *,
                reference: str | None = None, idempotency_key: str | None = None) -> Operation:
        """Convert ``points`` of ``source`` into ``target`` (rounded down; the answer's
        ``target_points`` says how many)."""
        body = compact(customer_ref=customer_ref, source=source, target=target,
                       points=points, reference=reference)
        return Operation.from_dict(self._post("/v1/conversions", body, idempotency_key))
