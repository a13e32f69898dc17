"""``/v1/partner``, ``/v1/programs``, ``/v1/agreements``: what the partner works with."""

from __future__ import annotations

from flask import Blueprint, g, jsonify
from sqlalchemy import select

from app.clearing import agreements, partners, programs
from app.clearing.errors import NoRate
from app.clearing.models import Agreement, Program
from ledger.types import utcnow

from .edge import partner_required, read

bp = Blueprint("catalog", __name__, url_prefix="/v1")


def visible_programs(session, partner_id: str) -> list[str]:
    """Programs the partner owns, or is party to an agreement on (either side)."""
    owned = set(session.scalars(select(Program.code).where(Program.owner_id == partner_id)))
    for agreement in agreements.list_agreements(session, partner_id=partner_id):
        owned.add(agreement.program_code)
        if agreement.target_code:
            owned.add(agreement.target_code)
    return sorted(owned)


@bp.get("/partner")
@partner_required
def whoami():
    """The calling partner, as the platform knows it."""
    def work(session):
        p = partners.get_partner(session, g.partner_id)
        roles = [r for r, on in (("issuer", p.is_issuer), ("redeemer", p.is_redeemer)) if on]
        return {"id": p.id, "name": p.name, "industry": p.industry, "roles": roles,
                "settlement_currency": p.settlement_currency, "status": p.status,
                "key_id": g.key_id}
    return jsonify(read(work))


def _program_out(session, program: Program, now) -> dict:
    try:
        value = programs.value_at(session, program.code, now)
        value_out = {"value_per_point": str(value.value_per_point), "currency": value.currency,
                     "effective_from": value.effective_from}
    except NoRate:
        value_out = None
    return {"code": program.code, "name": program.name, "owner": program.owner_id,
            "expiry_months": program.expiry_months, "value": value_out}


@bp.get("/programs")
@partner_required
def list_programs():
    """Every program hosted here (a partner needs them to propose agreements)."""
    def work(session):
        now = utcnow()
        return {"items": [_program_out(session, p, now)
                          for p in programs.list_programs(session)], "next_cursor": None}
    return jsonify(read(work))


def _agreement_out(session, agreement: Agreement, now) -> dict:
    terms = agreements.terms_history(session, agreement.id)
    current = [t for t in terms if t.effective_from <= now]
    return {"id": agreement.id, "kind": agreement.kind, "program": agreement.program_code,
            "redeemer": agreement.redeemer_id, "target_program": agreement.target_code,
            "currency": agreement.currency, "status": agreement.status,
            "terms": [_terms_out(t) for t in terms],
            "current_version": current[-1].version if current else None}


def _terms_out(terms) -> dict:
    rates = ("value_per_point", "fee_rate", "ratio", "target_value_per_point")
    out = {"version": terms.version, "effective_from": terms.effective_from,
           "min_points": terms.min_points, "max_points": terms.max_points}
    out.update({r: (str(getattr(terms, r)) if getattr(terms, r) is not None else None)
                for r in rates})
    return out


@bp.get("/agreements")
@partner_required
def list_agreements():
    """The agreements the partner is party to, with every version of their terms."""
    def work(session):
        now = utcnow()
        return {"items": [_agreement_out(session, a, now) for a in
                          agreements.list_agreements(session, partner_id=g.partner_id)],
                "next_cursor": None}
    return jsonify(read(work))
