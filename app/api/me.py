"""``/v1/me``: the member points-balance API. A member token (obtained by a partner for
its member) reads that member's balances across all their programs and their own
history -- nothing else."""

from __future__ import annotations

from flask import Blueprint, g, jsonify
from sqlalchemy import select

from app.clearing import balances as balances_of
from app.clearing.models import Operation
from ledger.types import utcnow

from . import present, schemas
from .edge import member_required, page, query, read
from .transactions import filtered

bp = Blueprint("me", __name__, url_prefix="/v1/me")
query_schema = schemas.MemberTransactionQuerySchema()


@bp.get("/balances")
@member_required
def balances():
    """Every program the member holds: available, held, value, next expiries."""
    member_id = g.member_token.member_id

    def work(session):
        programs = balances_of.member_programs(session, member_id)
        return {"member_id": member_id,
                "balances": balances_of.balances(session, member_id, programs, utcnow())}
    return jsonify(read(work))


@bp.get("/transactions")
@member_required
def transactions():
    """The member's own operations, newest first (same filters as a partner's list)."""
    args = query(query_schema)

    def work(session):
        statement = select(Operation).where(Operation.member_id == g.member_token.member_id)
        ops = list(session.scalars(filtered(statement, args)))
        items = present.operations(session, ops, None, utcnow())
        return page(items, args["limit"], lambda item: str(item["id"]))
    return jsonify(read(work))
