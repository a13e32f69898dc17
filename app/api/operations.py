"""Operations a partner books: issue, import, redeem, authorise/capture/void, refund,
claw back, convert. Each POST is one idempotent unit of work (:func:`.edge.write`) and
answers 201 with the operation as booked."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, g

from app.clearing import conversions, imports, operations, redemptions

from . import present, schemas
from .edge import body, partner_required, write

bp = Blueprint("operations", __name__, url_prefix="/v1")
issue_schema = schemas.IssueSchema()
redeem_schema = schemas.RedeemSchema()
authorise_schema = schemas.AuthoriseSchema()
part_schema = schemas.PartSchema()
convert_schema = schemas.ConvertSchema()
import_schema = schemas.ImportSchema()


def _booked(work):
    """Write ``work(session, key) -> Operation`` and answer with the operation."""
    def unit(session, key):
        op = work(session, key)
        return present.operation(session, op, g.partner_id, op.created_at)
    return write(unit)


@bp.post("/issues")
@partner_required
def issue():
    """Credit points a member earned with the partner (a new lot, earned now)."""
    d = body(issue_schema)
    return _booked(lambda s, key: operations.issue(
        s, g.partner_id, d["customer_ref"], d["program"], d["points"],
        idempotency_key=key, reference=d.get("reference")))


@bp.post("/issues/<operation_id>/clawbacks")
@partner_required
def clawback(operation_id):
    """Take back all that is left of an issue, or ``points`` of it."""
    d = body(part_schema)
    return _booked(lambda s, key: operations.clawback(
        s, g.partner_id, operation_id, d.get("points"), idempotency_key=key))


@bp.post("/imports")
@partner_required
def import_points():
    """Move members' existing points onto the platform with their earn dates; every line
    or none, and every bad line reported."""
    d = body(import_schema)

    def unit(session, key):
        ops = imports.import_points(session, g.partner_id, d["program"], d["lines"],
                                    idempotency_key=key)
        return {"items": present.operations(session, ops, g.partner_id, ops[0].created_at)}
    return write(unit)


@bp.post("/redemptions")
@partner_required
def redeem():
    """Spend a member's points at the partner, at once."""
    d = body(redeem_schema)
    return _booked(lambda s, key: redemptions.redeem(
        s, g.partner_id, d["customer_ref"], d["program"], d["points"],
        idempotency_key=key, reference=d.get("reference")))


@bp.post("/redemptions/<operation_id>/refunds")
@partner_required
def refund(operation_id):
    """Give back all that is left of a redemption (or captured authorisation), or part."""
    d = body(part_schema)
    return _booked(lambda s, key: redemptions.refund(
        s, g.partner_id, operation_id, d.get("points"), idempotency_key=key))


@bp.post("/authorisations")
@partner_required
def authorise():
    """Reserve a member's points until captured, voided or expired."""
    d = body(authorise_schema)
    return _booked(lambda s, key: redemptions.authorise(
        s, g.partner_id, d["customer_ref"], d["program"], d["points"],
        expires_in=timedelta(seconds=d["expires_in_seconds"]), idempotency_key=key,
        reference=d.get("reference")))


@bp.post("/authorisations/<operation_id>/capture")
@partner_required
def capture(operation_id):
    """Post an authorisation for all its points or fewer; the rest is released."""
    d = body(part_schema)
    return _booked(lambda s, key: redemptions.capture(
        s, g.partner_id, operation_id, d.get("points"), idempotency_key=key))


@bp.post("/authorisations/<operation_id>/void")
@partner_required
def void(operation_id):
    """Release an authorisation."""
    body(schemas.EmptySchema())
    return _booked(lambda s, key: redemptions.void(s, g.partner_id, operation_id,
                                                   idempotency_key=key))


@bp.post("/conversions")
@partner_required
def convert():
    """Convert a member's points of one program into another under an agreement."""
    d = body(convert_schema)
    return _booked(lambda s, key: conversions.convert(
        s, g.partner_id, d["customer_ref"], d["source"], d["target"], d["points"],
        idempotency_key=key, reference=d.get("reference")))
