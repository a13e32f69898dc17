"""Members: one platform identity linked to each partner's own customer reference.

A partner *enrols* its customer: the customer reference is linked to a new member, or,
when the customer shows a member token another partner issued them, to that member --
so one person holds one identity across the coalition. A partner links a customer
reference once and a member once.

A member's contact data is sealed at rest (:mod:`app.clearing.crypto`); the caller
passes the cipher, so this module never reads a key. A frozen member earns, spends,
converts and obtains tokens for nothing until unfrozen.

*Member tokens* are short-lived bearer tokens a partner obtains for its member: the
member reads their balances with one, and shows one to another partner to be linked
there. Only the token's SHA-256 is stored, and a token is found by that hash alone.

Functions take the session first and only add and flush; the caller commits.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.types import utcnow

from . import partners
from .crypto import ContactCipher
from .errors import (
    InvalidMember,
    InvalidMemberToken,
    MemberAlreadyLinked,
    MemberFrozen,
    MemberNotFound,
)
from .models import Member, MemberLink, MemberToken

CONTACT_FIELDS = ("name", "email", "phone")
MAX_CONTACT_VALUE = 200
MAX_CUSTOMER_REF = 100
TOKEN_PREFIX = "mt_"
MIN_TTL, MAX_TTL = timedelta(minutes=1), timedelta(hours=1)
MAX_PAGE = 500


# --- enrolment ------------------------------------------------------------------------------

def enrol(session: Session, partner_id: str, customer_ref: str, *, contact: dict | None = None,
          cipher: ContactCipher | None = None, member_token: str | None = None,
          now: datetime | None = None) -> MemberLink:
    """Link the partner's ``customer_ref`` to a member and return the link.

    Without ``member_token`` the member is new. With one (issued by another partner and
    shown by the member as consent) the link goes to that member, who must not be frozen;
    the token is used up by the link, and ``contact`` is refused: a member's contact
    data is kept by the partner that enrolled them, never overwritten by another. The
    partner must be active, and must not have linked this customer reference or this
    member before.
    """
    partners.require_active(partners.get_partner(session, partner_id))
    _check_customer_ref(customer_ref)
    contact = _checked_contact(contact, cipher)
    member = None
    if member_token is not None:
        if contact is not None:
            raise InvalidMember("contact data cannot be given when linking an existing "
                                "member", field="contact")
        token = member_for_token(session, member_token, now)
        member = require_active(get_member(session, token.member_id))
    _refuse_second_link(session, partner_id, customer_ref, member.id if member else None)
    link = _link(session, partner_id, customer_ref, member, contact, cipher)
    if member_token is not None:
        session.delete(token)  # consent to one link, not to any partner for an hour
        session.flush()
    return link


def _link(session: Session, partner_id: str, customer_ref: str, member: Member | None,
          contact: dict | None, cipher) -> MemberLink:
    """Add the link (and the new member, if ``member`` is None) in a savepoint: losing a
    race to link the same reference leaves the caller's transaction usable, with no
    orphan member, and gets the same refusal as a sequential retry."""
    try:
        with session.begin_nested():
            if member is None:
                member_id = f"mbr_{secrets.token_hex(10)}"
                member = Member(id=member_id, status="active",
                                contact=_sealed(member_id, contact, cipher))
                session.add(member)
            link = MemberLink(partner_id=partner_id, customer_ref=customer_ref,
                              member_id=member.id)
            session.add(link)
            session.flush()
    except IntegrityError as exc:
        raise MemberAlreadyLinked(f"partner {partner_id!r} already linked customer "
                                  f"{customer_ref!r} or this member",
                                  field="customer_ref") from exc
    return link


def _refuse_second_link(session: Session, partner_id: str, customer_ref: str,
                        member_id: str | None = None) -> None:
    same = MemberLink.customer_ref == customer_ref
    if member_id is not None:
        same = same | (MemberLink.member_id == member_id)
    existing = session.scalar(select(MemberLink).where(MemberLink.partner_id == partner_id, same))
    if existing is None:
        return
    if existing.customer_ref == customer_ref:
        raise MemberAlreadyLinked(f"partner {partner_id!r} already linked customer "
                                  f"{customer_ref!r}", field="customer_ref")
    raise MemberAlreadyLinked(f"partner {partner_id!r} already knows this member as "
                              f"{existing.customer_ref!r}", field="customer_ref")


def _check_customer_ref(customer_ref) -> None:
    """1-100 printable characters, no ``/`` (it is a path segment of the API), no spaces
    at either end."""
    if (not isinstance(customer_ref, str) or not 1 <= len(customer_ref) <= MAX_CUSTOMER_REF
            or not customer_ref.isprintable() or "/" in customer_ref
            or customer_ref != customer_ref.strip()):
        raise InvalidMember(f"customer_ref must be 1-{MAX_CUSTOMER_REF} printable characters, "
                            "without '/' or spaces at either end", field="customer_ref")


# --- lookups and status ---------------------------------------------------------------------

def link_of(session: Session, partner_id: str, customer_ref: str) -> MemberLink:
    """The partner's link for ``customer_ref``; a partner sees only its own links."""
    link = session.scalar(select(MemberLink).where(MemberLink.partner_id == partner_id,
                                                   MemberLink.customer_ref == customer_ref))
    if link is None:
        raise MemberNotFound(f"partner {partner_id!r} has no member {customer_ref!r}",
                             field="customer_ref")
    return link


def member_of(session: Session, partner_id: str, customer_ref: str) -> Member:
    return get_member(session, link_of(session, partner_id, customer_ref).member_id)


def get_member(session: Session, member_id: str) -> Member:
    member = session.get(Member, member_id) if isinstance(member_id, str) else None
    if member is None:
        raise MemberNotFound(f"no member {member_id!r}", field="member_id")
    return member


def require_active(member: Member) -> Member:
    if member.status != "active":
        raise MemberFrozen(f"member {member.id!r} is frozen", field="member")
    return member


def freeze(session: Session, member_id: str) -> Member:
    """Freeze a member (idempotent): they earn, spend and convert nothing until unfrozen."""
    return _set_status(session, member_id, "frozen")


def unfreeze(session: Session, member_id: str) -> Member:
    return _set_status(session, member_id, "active")


def _set_status(session: Session, member_id: str, status: str) -> Member:
    member = get_member(session, member_id)
    member.status = status
    session.flush()
    return member


def links_of_partner(session: Session, partner_id: str, *, after: str | None = None,
                     limit: int = 50) -> list[MemberLink]:
    """One page of the partner's links by customer reference, those after ``after`` (the
    last reference of the previous page). ``limit`` is 1-500."""
    partners.get_partner(session, partner_id)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidMember(f"limit must be 1-{MAX_PAGE}", field="limit")
    if after is not None and not isinstance(after, str):
        raise InvalidMember("after is the last customer_ref of the previous page", field="after")
    query = select(MemberLink).where(MemberLink.partner_id == partner_id)
    if after is not None:
        query = query.where(MemberLink.customer_ref > after)
    return list(session.scalars(query.order_by(MemberLink.customer_ref).limit(limit)))


def links_of_member(session: Session, member_id: str) -> list[MemberLink]:
    """Every partner's link to the member, by partner id."""
    get_member(session, member_id)
    return list(session.scalars(select(MemberLink).where(MemberLink.member_id == member_id)
                                .order_by(MemberLink.partner_id)))


def enrolled_by(session: Session, member_id: str) -> str | None:
    """The partner whose enrolment created the member: the keeper of its contact data."""
    return session.scalar(select(MemberLink.partner_id).where(MemberLink.member_id == member_id)
                          .order_by(MemberLink.created_at, MemberLink.id).limit(1))


# --- contact data ---------------------------------------------------------------------------

def contact_of(member: Member, cipher: ContactCipher) -> dict | None:
    return None if member.contact is None else cipher.decrypt(member.id, member.contact)


def set_contact(session: Session, member: Member, contact: dict | None,
                cipher: ContactCipher | None) -> Member:
    """Replace the member's contact data; None (or an empty dict) removes it."""
    member.contact = _sealed(member.id, _checked_contact(contact, cipher), cipher)
    session.flush()
    return member


def _checked_contact(contact, cipher) -> dict | None:
    """Contact data is a dict of only name, email and phone, each a string of at most
    200 characters; an empty dict is no contact data."""
    if contact is None or contact == {}:
        return None
    if not isinstance(contact, dict) or not set(contact) <= set(CONTACT_FIELDS):
        raise InvalidMember(f"contact may hold only {', '.join(CONTACT_FIELDS)}",
                            field="contact")
    if not all(isinstance(v, str) and len(v) <= MAX_CONTACT_VALUE for v in contact.values()):
        raise InvalidMember(f"contact values are strings of at most {MAX_CONTACT_VALUE} "
                            "characters", field="contact")
    if cipher is None:
        raise TypeError("contact data is stored only encrypted: pass a ContactCipher")
    return contact


def _sealed(member_id: str, contact: dict | None, cipher) -> str | None:
    return None if contact is None else cipher.encrypt(member_id, contact)


# --- member tokens --------------------------------------------------------------------------

def issue_token(session: Session, partner_id: str, customer_ref: str, *,
                ttl: timedelta = timedelta(minutes=15),
                now: datetime | None = None) -> tuple[str, datetime]:
    """A new token for the partner's active member, valid for ``ttl`` (1 minute to 1
    hour). Returns the token, shown once, and its expiry; only its hash is kept."""
    if not isinstance(ttl, timedelta) or not MIN_TTL <= ttl <= MAX_TTL:
        raise InvalidMember("ttl must be between 1 minute and 1 hour", field="ttl")
    partners.require_active(partners.get_partner(session, partner_id))
    member = require_active(member_of(session, partner_id, customer_ref))
    now = _now(now)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = MemberToken(token_hash=_hash(token), member_id=member.id, partner_id=partner_id,
                      expires_at=now + ttl, created_at=now)
    session.add(row)
    session.flush()
    return token, row.expires_at


def member_for_token(session: Session, token: str, now: datetime | None = None) -> MemberToken:
    """The token's row, if the platform issued the token and it has not expired.

    The lookup is by the token's SHA-256 only: the token itself is never compared, so
    timing reveals nothing of it.
    """
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise InvalidMemberToken("not a member token", field="member_token")
    row = session.get(MemberToken, _hash(token))
    if row is None:
        raise InvalidMemberToken("unknown member token", field="member_token")
    if row.expires_at <= _now(now):
        raise InvalidMemberToken("the member token has expired", field="member_token")
    return row


def delete_expired_tokens(session: Session, *, now: datetime | None = None) -> int:
    """Remove tokens that expired; returns how many. For a periodic clean-up job."""
    result = session.execute(delete(MemberToken).where(MemberToken.expires_at <= _now(now)))
    return result.rowcount


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now
