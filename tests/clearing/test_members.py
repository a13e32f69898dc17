"""Members: enrolment, one identity across partners, contact data at rest, member tokens."""

from __future__ import annotations

import hashlib
import os
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from app.clearing import members, partners
from app.clearing.crypto import ContactCipher, ContactUndecryptable
from app.clearing.errors import (
    InvalidMember,
    InvalidMemberToken,
    MemberAlreadyLinked,
    MemberFrozen,
    MemberNotFound,
    PartnerNotFound,
    PartnerSuspended,
)
from app.clearing.models import Member, MemberToken

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
CONTACT = {"name": "Li Wei", "email": "li.wei@example.com", "phone": "+86 138 0000 0000"}


@pytest.fixture
def cipher() -> ContactCipher:
    return ContactCipher(os.urandom(32))


def _onboard(session, partner_id, industry, roles):
    return partners.onboard_partner(session, partner_id, name=partner_id.title(),
                                    industry=industry, roles=roles, settlement_currency="CNY")


@pytest.fixture
def banka(session):
    return _onboard(session, "banka", "bank", {"issuer"})


@pytest.fixture
def skyair(session):
    return _onboard(session, "skyair", "airline", {"issuer", "redeemer"})


def _raw_contact(session, member_id):
    return session.execute(text("SELECT contact FROM clearing_members WHERE id = :id"),
                           {"id": member_id}).scalar_one()


def _refused(error, field, call, *args, **kwargs):
    with pytest.raises(error) as err:
        call(*args, **kwargs)
    assert err.value.field == field, err.value.message
    return err.value


# --- enrolment ------------------------------------------------------------------------------

def test_enrol_makes_a_new_active_member(session, banka):
    link = members.enrol(session, "banka", "C-1001")
    assert (link.partner_id, link.customer_ref) == ("banka", "C-1001")
    member = members.member_of(session, "banka", "C-1001")
    assert member.id == link.member_id and member.id.startswith("mbr_") and len(member.id) == 24
    assert (member.status, member.contact) == ("active", None)
    assert members.link_of(session, "banka", "C-1001") is link
    assert members.get_member(session, member.id) is member
    assert members.enrol(session, "banka", "C-1002").member_id != member.id


def test_contact_is_encrypted_at_rest(session, banka, cipher):
    link = members.enrol(session, "banka", "C-1", contact=CONTACT, cipher=cipher)
    session.expire_all()
    member = members.get_member(session, link.member_id)
    assert members.contact_of(member, cipher) == CONTACT
    raw = _raw_contact(session, link.member_id)
    assert raw.startswith(f"v1:{cipher.key_id}:")
    # Whole values: a fragment like "138" may occur in base64 by chance.
    assert not any(value in raw for value in CONTACT.values())
    # The ciphertext copied into another member's row does not open there.
    other = members.enrol(session, "banka", "C-2").member_id
    session.execute(text("UPDATE clearing_members SET contact = :c WHERE id = :id"),
                    {"c": raw, "id": other})
    session.expire_all()
    with pytest.raises(ContactUndecryptable):
        members.contact_of(members.get_member(session, other), cipher)


def test_partner_must_exist_and_be_active(session, banka):
    _refused(PartnerNotFound, "partner_id", members.enrol, session, "nobody", "C-1")
    partners.set_status(session, "banka", "suspended")
    _refused(PartnerSuspended, "partner_id", members.enrol, session, "banka", "C-1")


@pytest.mark.parametrize("ref", ["", "x" * 101, "a\nb", "tab\there", "\x00", 1001, None,
                                 "a/b", " c-1", "c-1 ", " "])
def test_customer_ref_is_1_to_100_printable_characters(session, banka, ref):
    _refused(InvalidMember, "customer_ref", members.enrol, session, "banka", ref)


@pytest.mark.parametrize("contact", [
    {"address": "1 Main St"}, {"name": "A", "email": "a@example.com", "dob": "1990-01-01"},
    {"name": 5}, {"email": None}, {"name": "x" * 201}, {"phone": ["1"]}, "li@example.com",
    ["name"],
])
def test_contact_is_name_email_phone_short_strings(session, banka, cipher, contact):
    _refused(InvalidMember, "contact", members.enrol, session, "banka", "C-1",
             contact=contact, cipher=cipher)


def test_limits_are_inclusive_and_contact_needs_a_cipher(session, banka, cipher):
    for ref in ("x", "y" * 100, "Ref with spaces and ünïcode"):
        assert members.enrol(session, "banka", ref).customer_ref == ref
    link = members.enrol(session, "banka", "C-1", contact={"name": "x" * 200}, cipher=cipher)
    assert members.contact_of(members.get_member(session, link.member_id), cipher) == {
        "name": "x" * 200}
    with pytest.raises(TypeError, match="ContactCipher"):
        members.enrol(session, "banka", "C-2", contact=CONTACT)


def test_a_customer_ref_is_linked_once(session, banka):
    members.enrol(session, "banka", "C-1")
    err = _refused(MemberAlreadyLinked, "customer_ref", members.enrol, session, "banka", "C-1")
    assert "C-1" in err.message


def test_losing_a_race_to_link_leaves_the_session_usable(session, banka, monkeypatch):
    members_before = session.scalar(select(func.count()).select_from(Member))
    first = members.enrol(session, "banka", "C-1")
    # As if a concurrent enrolment committed between our check and our insert.
    monkeypatch.setattr(members, "_refuse_second_link", lambda *args: None)
    _refused(MemberAlreadyLinked, "customer_ref", members.enrol, session, "banka", "C-1")
    assert session.scalar(select(func.count()).select_from(Member)) == members_before + 1
    assert members.get_member(session, first.member_id)  # and no orphan beside it
    assert members.enrol(session, "banka", "C-2").customer_ref == "C-2"


# --- one identity across partners -----------------------------------------------------------

def test_a_member_token_links_one_member_to_a_second_partner(session, banka, skyair, cipher):
    a = members.enrol(session, "banka", "C-1", contact=CONTACT, cipher=cipher)
    token, _ = members.issue_token(session, "banka", "C-1")
    b = members.enrol(session, "skyair", "FF-77", member_token=token)
    assert b.member_id == a.member_id
    assert members.member_of(session, "skyair", "FF-77").id == a.member_id
    assert [(x.partner_id, x.customer_ref) for x in members.links_of_member(
        session, a.member_id)] == [("banka", "C-1"), ("skyair", "FF-77")]
    member = members.get_member(session, a.member_id)
    assert members.contact_of(member, cipher) == CONTACT
    assert members.enrolled_by(session, a.member_id) == "banka"
    # The token was consent to one link: a third partner cannot reuse it.
    _onboard(session, "megamart", "retail", {"redeemer"})
    _refused(InvalidMemberToken, "member_token", members.enrol, session, "megamart", "mm-1",
             member_token=token)
    # Nor may a linking partner overwrite the contact data the enrolling partner keeps.
    fresh, _ = members.issue_token(session, "banka", "C-1")
    _refused(InvalidMember, "contact", members.enrol, session, "megamart", "mm-1",
             member_token=fresh, contact={"email": "new@example.com"}, cipher=cipher)
    assert members.contact_of(member, cipher) == CONTACT


def test_a_partner_links_a_member_once(session, banka, skyair):
    members.enrol(session, "banka", "C-1")
    token, _ = members.issue_token(session, "banka", "C-1")
    members.enrol(session, "skyair", "FF-77", member_token=token)
    token, _ = members.issue_token(session, "banka", "C-1")
    _refused(MemberAlreadyLinked, "customer_ref", members.enrol, session, "skyair", "FF-78",
             member_token=token)
    # The issuing partner already knows the member too.
    _refused(MemberAlreadyLinked, "customer_ref", members.enrol, session, "banka", "C-2",
             member_token=token)


@pytest.mark.parametrize("token", ["nope", "mt_", "mt_" + "A" * 43, "mt_" + "A" * 200, 42, b"mt_x"])
def test_unknown_or_malformed_tokens_are_refused(session, skyair, token):
    _refused(InvalidMemberToken, "member_token", members.enrol, session, "skyair", "FF-1",
             member_token=token)
    _refused(InvalidMemberToken, "member_token", members.member_for_token, session, token)


def test_an_expired_token_links_nothing(session, banka, skyair):
    members.enrol(session, "banka", "C-1")
    token, expires = members.issue_token(session, "banka", "C-1", now=T0)
    _refused(InvalidMemberToken, "member_token", members.enrol, session, "skyair", "FF-1",
             member_token=token, now=expires)
    assert members.enrol(session, "skyair", "FF-1", member_token=token,
                         now=expires - timedelta(seconds=1)).customer_ref == "FF-1"


# --- lookups, status, contact ---------------------------------------------------------------

def test_unknown_members_and_other_partners_links_are_not_found(session, banka, skyair):
    members.enrol(session, "banka", "C-1")
    _refused(MemberNotFound, "customer_ref", members.link_of, session, "banka", "C-2")
    _refused(MemberNotFound, "customer_ref", members.member_of, session, "skyair", "C-1")
    _refused(MemberNotFound, "member_id", members.get_member, session, "mbr_nobody")
    _refused(MemberNotFound, "member_id", members.get_member, session, None)
    _refused(MemberNotFound, "member_id", members.freeze, session, "mbr_nobody")
    _refused(MemberNotFound, "member_id", members.links_of_member, session, "mbr_nobody")


def test_freeze_and_unfreeze(session, banka, skyair):
    member_id = members.enrol(session, "banka", "C-1").member_id
    token, _ = members.issue_token(session, "banka", "C-1")
    member = members.freeze(session, member_id)
    assert members.freeze(session, member_id).status == "frozen"  # idempotent
    _refused(MemberFrozen, "member", members.require_active, member)
    # A token issued before the freeze links the member nowhere.
    _refused(MemberFrozen, "member", members.enrol, session, "skyair", "FF-1",
             member_token=token)
    assert members.require_active(members.unfreeze(session, member_id)) is member


def test_set_contact_replaces_and_removes(session, banka, cipher):
    member = members.get_member(session, members.enrol(session, "banka", "C-1").member_id)
    assert members.contact_of(member, cipher) is None
    members.set_contact(session, member, CONTACT, cipher)
    assert members.contact_of(member, cipher) == CONTACT
    assert "example.com" not in _raw_contact(session, member.id)
    _refused(InvalidMember, "contact", members.set_contact, session, member, {"x": "y"}, cipher)
    assert members.contact_of(member, cipher) == CONTACT
    members.set_contact(session, member, None, cipher)
    assert _raw_contact(session, member.id) is None


def test_rotation_reads_old_rows_and_rewrites_them_under_the_new_key(session, banka):
    key = os.urandom(32)
    cipher = ContactCipher(key)
    member = members.get_member(session, members.enrol(
        session, "banka", "C-1", contact=CONTACT, cipher=cipher).member_id)
    rotated = ContactCipher(os.urandom(32), old_keys={cipher.key_id: key})
    assert members.contact_of(member, rotated) == CONTACT
    members.set_contact(session, member, members.contact_of(member, rotated), rotated)
    assert _raw_contact(session, member.id).split(":")[1] == rotated.key_id
    with pytest.raises(ContactUndecryptable):
        members.contact_of(member, cipher)


# --- pages of links -------------------------------------------------------------------------

def test_links_of_partner_pages_by_customer_ref(session, banka, skyair):
    refs = [f"c-{i:03d}" for i in range(7)]
    for ref in random.Random(7).sample(refs, len(refs)):
        members.enrol(session, "banka", ref)
    members.enrol(session, "skyair", "c-000x")  # another partner's: never listed
    pages, after = [], None
    while page := members.links_of_partner(session, "banka", after=after, limit=3):
        pages.append([link.customer_ref for link in page])
        after = page[-1].customer_ref
    assert pages == [refs[0:3], refs[3:6], refs[6:7]]
    assert len(members.links_of_partner(session, "banka")) == 7  # default limit 50
    _refused(PartnerNotFound, "partner_id", members.links_of_partner, session, "nobody")
    for limit in (0, -1, 501, True, "5", None):
        _refused(InvalidMember, "limit", members.links_of_partner, session, "banka", limit=limit)
    _refused(InvalidMember, "after", members.links_of_partner, session, "banka", after=5)


# --- member tokens --------------------------------------------------------------------------

def test_token_lifecycle_stores_only_the_hash(session, banka):
    member_id = members.enrol(session, "banka", "C-1").member_id
    token, expires = members.issue_token(session, "banka", "C-1", ttl=timedelta(minutes=5),
                                         now=T0)
    assert token.startswith("mt_") and len(token) == 3 + 43
    assert expires == T0 + timedelta(minutes=5)
    row = members.member_for_token(session, token, now=T0 + timedelta(minutes=4))
    assert (row.member_id, row.partner_id) == (member_id, "banka")
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert members.issue_token(session, "banka", "C-1")[0] != token
    stored = session.execute(text("SELECT * FROM clearing_member_tokens "
                                  "WHERE partner_id = 'banka'")).all()
    assert len(stored) == 2 and not any(token in str(value) for row in stored for value in row)
    for at in (expires, expires + timedelta(days=1)):
        _refused(InvalidMemberToken, "member_token", members.member_for_token, session, token,
                 now=at)


def test_ttl_is_1_minute_to_1_hour(session, banka):
    members.enrol(session, "banka", "C-1")
    for ttl in (timedelta(seconds=59), timedelta(hours=1, seconds=1), timedelta(0),
                timedelta(minutes=-5), 900, None):
        _refused(InvalidMember, "ttl", members.issue_token, session, "banka", "C-1", ttl=ttl)
    for ttl in (timedelta(minutes=1), timedelta(hours=1)):
        assert members.issue_token(session, "banka", "C-1", ttl=ttl, now=T0)[1] == T0 + ttl


def test_tokens_only_for_the_partners_active_members(session, banka, skyair):
    member_id = members.enrol(session, "banka", "C-1").member_id
    _refused(MemberNotFound, "customer_ref", members.issue_token, session, "banka", "C-2")
    _refused(MemberNotFound, "customer_ref", members.issue_token, session, "skyair", "C-1")
    _refused(PartnerNotFound, "partner_id", members.issue_token, session, "nobody", "C-1")
    members.freeze(session, member_id)
    _refused(MemberFrozen, "member", members.issue_token, session, "banka", "C-1")
    members.unfreeze(session, member_id)
    partners.set_status(session, "banka", "suspended")
    _refused(PartnerSuspended, "partner_id", members.issue_token, session, "banka", "C-1")


def test_expired_tokens_are_cleaned_up(session, banka):
    members.enrol(session, "banka", "C-1")
    members.issue_token(session, "banka", "C-1", now=T0)
    new, _ = members.issue_token(session, "banka", "C-1", now=T0 + timedelta(minutes=10))
    # Other tests' committed tokens may have expired too.
    assert members.delete_expired_tokens(session, now=T0 + timedelta(minutes=15)) >= 1
    assert session.scalars(select(MemberToken.token_hash)
                           .where(MemberToken.partner_id == "banka")).all() == [
        hashlib.sha256(new.encode()).hexdigest()]
    with pytest.raises(ValueError, match="timezone"):
        members.issue_token(session, "banka", "C-1", now=datetime(2025, 3, 1, 9, 0))
