"""``/v1/members``: a partner's links to platform members, member tokens, balances."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, g, jsonify

from app.clearing import balances as balances_of
from app.clearing import members
from app.clearing.models import MemberLink
from ledger.types import utcnow

from . import schemas
from .catalog import visible_programs
from .edge import body, cipher, decode_cursor, page, partner_required, query, read, write

bp = Blueprint("members", __name__, url_prefix="/v1/members")
enrol_schema = schemas.EnrolSchema()
token_schema = schemas.TokenRequestSchema()
page_schema = schemas.PageQuerySchema()


def link_out(session, link: MemberLink) -> dict:
    """A link as its partner sees it: the contact data only to the partner that enrolled
    the member (and gave it); partners linked later see none."""
    member = members.get_member(session, link.member_id)
    keeper = members.enrolled_by(session, member.id) == link.partner_id
    return {"customer_ref": link.customer_ref, "member_id": member.id,
            "status": member.status,
            "contact": members.contact_of(member, cipher()) if keeper else None,
            "linked_at": link.created_at}


@bp.post("")
@partner_required
def enrol():
    """Link a customer to a platform member (new, or existing via a member token)."""
    data = body(enrol_schema)

    def work(session, _key):
        link = members.enrol(session, g.partner_id, data["customer_ref"],
                             contact=data.get("contact"), cipher=cipher(),
                             member_token=data.get("member_token"))
        return link_out(session, link)
    return write(work, secret=True)  # the answer holds contact data: sealed at rest


@bp.get("")
@partner_required
def list_links():
    """The partner's linked members, by customer reference (cursor pagination)."""
    args = query(page_schema)

    def work(session):
        links = members.links_of_partner(session, g.partner_id,
                                         after=decode_cursor(args.get("cursor")),
                                         limit=args["limit"] + 1)
        return page([link_out(session, link) for link in links], args["limit"],
                    lambda item: item["customer_ref"])
    return jsonify(read(work))


@bp.get("/<customer_ref>")
@partner_required
def show(customer_ref):
    return jsonify(read(lambda s: link_out(s, members.link_of(s, g.partner_id, customer_ref))))


@bp.post("/<customer_ref>/tokens")
@partner_required
def issue_token(customer_ref):
    """A short-lived token with which the member reads their own balances."""
    data = body(token_schema)

    def work(session, _key):
        token, expires_at = members.issue_token(session, g.partner_id, customer_ref,
                                                ttl=timedelta(seconds=data["ttl_seconds"]))
        return {"token": token, "expires_at": expires_at, "token_type": "Bearer"}
    return write(work, secret=True)


@bp.get("/<customer_ref>/balances")
@partner_required
def balances(customer_ref):
    """The member's balances in the programs the partner owns or has an agreement on."""
    def work(session):
        member = members.member_of(session, g.partner_id, customer_ref)
        mine = set(visible_programs(session, g.partner_id))
        programs = [p for p in balances_of.member_programs(session, member.id) if p in mine]
        return {"customer_ref": customer_ref,
                "balances": balances_of.balances(session, member.id, programs, utcnow())}
    return jsonify(read(work))

