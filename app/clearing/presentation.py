"""How operations look from outside: JSON-ready dicts, as one partner (or the member)
sees them.

The API answers with these and the webhooks carry the same shape, so a partner parses a
webhook's ``data`` with the code that reads ``GET /v1/transactions``. Lists are
presented in a handful of queries however long they are: the related rows (links, terms
versions, authorisation outcomes) are loaded for the whole page at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.models import Transaction

from .models import AgreementTerms, MemberLink, Operation

#: What partners see of an operation and its member does not: the money between
#: partners, the agreement and its terms, the partner's own references.
PARTNER_ONLY = ("money", "agreement_id", "terms_version", "reference", "counterparty",
                "customer_ref")


def _authorisation_states(session: Session, ops: list[Operation], now: datetime) -> dict:
    ids = [op.id for op in ops if op.kind == "authorisation"]
    if not ids:
        return {}
    holds = dict(session.execute(select(Transaction.id, Transaction.expires_at)
                                 .where(Transaction.id.in_(ids))).all())
    outcomes = dict(session.execute(select(Transaction.resolves_id, Transaction.kind)
                                    .where(Transaction.resolves_id.in_(ids))).all())
    states = {}
    for hold_id, expires_at in holds.items():
        kind = outcomes.get(hold_id)
        if kind is None:
            state = "expired" if expires_at and expires_at <= now else "pending"
        else:
            state = {"void": "voided", "expiry": "expired"}.get(kind, "captured")
        states[hold_id] = (state, expires_at)
    return states


def for_viewers(session: Session, ops: list[Operation], viewers, now: datetime
                ) -> dict[str | None, list[dict]]:
    """``ops`` as each of ``viewers`` (partner ids; None: the member) sees them, with
    what they share loaded once."""
    viewers = list(dict.fromkeys(viewers))
    partners = [v for v in viewers if v is not None]
    refs: dict[tuple[str, str], str] = {}
    if partners and ops:
        refs = {(partner, member): ref for partner, member, ref in session.execute(
            select(MemberLink.partner_id, MemberLink.member_id, MemberLink.customer_ref)
            .where(MemberLink.partner_id.in_(partners),
                   MemberLink.member_id.in_({op.member_id for op in ops}))).all()}
    term_ids = {op.terms_id for op in ops if op.terms_id}
    versions = dict(session.execute(select(AgreementTerms.id, AgreementTerms.version)
                                    .where(AgreementTerms.id.in_(term_ids))).all()
                    ) if term_ids else {}
    states = _authorisation_states(session, ops, now)
    out = {}
    for viewer in viewers:
        items = [_operation(op, refs.get((viewer, op.member_id)), versions.get(op.terms_id),
                            states.get(op.id, ("posted", None))) for op in ops]
        if viewer is None:  # a member: their points, not the partners' commercial terms
            for item in items:
                for name in PARTNER_ONLY:
                    item.pop(name)
        out[viewer] = items
    return out


def operations(session: Session, ops: list[Operation], viewer: str | None,
               now: datetime) -> list[dict]:
    """``ops`` as the partner ``viewer`` (None: the member) sees them."""
    return for_viewers(session, ops, [viewer], now)[viewer]


def operation(session: Session, op: Operation, viewer: str | None, now: datetime) -> dict:
    return operations(session, [op], viewer, now)[0]


def _operation(op: Operation, customer_ref, terms_version, state) -> dict:
    money = None
    if op.currency is not None and op.gross is not None:
        fee = op.fee or 0
        # A conversion's fee is the platform's spread and its net what the target's
        # owner receives.
        money = {"currency": op.currency, "gross": op.gross, "fee": fee, "net": op.gross - fee}
    return {
        "id": op.id, "kind": op.kind, "status": state[0], "partner": op.partner_id,
        "counterparty": op.counterparty_id, "member_id": op.member_id,
        "customer_ref": customer_ref, "program": op.program_code, "points": op.points,
        "target_program": op.target_code, "target_points": op.target_points, "money": money,
        "agreement_id": op.agreement_id, "terms_version": terms_version,
        "related_id": op.related_id, "reference": op.reference, "expires_at": state[1],
        "created_at": op.created_at,
    }
