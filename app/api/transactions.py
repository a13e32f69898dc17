"""``/v1/transactions``: the operations a partner booked or whose money or points are its
own, filtered by member, program, kind and time, newest first, cursor-paginated."""

from __future__ import annotations

import uuid

from flask import Blueprint, g, jsonify
from marshmallow import ValidationError
from sqlalchemy import or_, select

from app.clearing import members, operations
from app.clearing.models import Operation
from ledger import get_transaction
from ledger.types import utcnow

from . import present, schemas
from .edge import decode_cursor, page, partner_required, query, read

bp = Blueprint("transactions", __name__, url_prefix="/v1/transactions")
query_schema = schemas.TransactionQuerySchema()


def filtered(statement, args: dict):
    """Apply the kind/program/time filters and the cursor (an operation id: ids are
    UUIDv7, so they order by time) to a query of operations, newest first."""
    if "kind" in args:
        statement = statement.where(Operation.kind == args["kind"])
    if "program" in args:
        statement = statement.where(or_(Operation.program_code == args["program"],
                                        Operation.target_code == args["program"]))
    if "since" in args:
        statement = statement.where(Operation.created_at >= args["since"])
    if "until" in args:
        statement = statement.where(Operation.created_at < args["until"])
    if (cursor := decode_cursor(args.get("cursor"))) is not None:
        try:
            statement = statement.where(Operation.id < uuid.UUID(cursor))
        except ValueError as exc:
            raise ValidationError({"cursor": ["not a cursor this API returned"]}) from exc
    return statement.order_by(Operation.id.desc()).limit(args["limit"] + 1)


@bp.get("")
@partner_required
def list_transactions():
    args = query(query_schema)

    def work(session):
        statement = select(Operation).where(or_(Operation.partner_id == g.partner_id,
                                                Operation.counterparty_id == g.partner_id))
        if "customer_ref" in args:
            member = members.member_of(session, g.partner_id, args["customer_ref"])
            statement = statement.where(Operation.member_id == member.id)
        ops = list(session.scalars(filtered(statement, args)))
        items = present.operations(session, ops, g.partner_id, utcnow())
        return page(items, args["limit"], lambda item: str(item["id"]))
    return jsonify(read(work))


@bp.get("/<operation_id>")
@partner_required
def show(operation_id):
    """One operation with the ledger postings it booked."""
    def work(session):
        op = operations.get_operation(session, g.partner_id, operation_id)
        out = present.operation(session, op, g.partner_id, utcnow())
        out["postings"] = [{"account": p.account, "side": p.side, "amount": p.amount,
                            "unit": p.unit} for p in get_transaction(session, op.id).postings]
        return out
    return jsonify(read(work))
