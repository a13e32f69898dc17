"""Onboarding partners and rotating their keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.clearing import partners
from app.clearing.errors import (
    InvalidKey,
    InvalidPartner,
    KeyNotFound,
    PartnerExists,
    PartnerNotFound,
    PartnerSuspended,
)


def _bank(session, partner_id="banka"):
    return partners.onboard_partner(session, partner_id, name="Bank A", industry="bank",
                                    roles={"issuer"}, settlement_currency="CNY")


def test_onboard_and_read_back(session):
    p = _bank(session)
    assert (p.status, p.is_issuer, p.is_redeemer) == ("active", True, False)
    assert partners.get_partner(session, "banka").name == "Bank A"
    assert "banka" in [x.id for x in partners.list_partners(session)]


@pytest.mark.parametrize("field, value", [
    ("id", "Bank A"), ("id", "x"), ("name", ""), ("industry", "casino"), ("roles", set()),
    ("roles", {"issuer", "broker"}), ("settlement_currency", "XYZ"),
    ("settlement_currency", "BANKA"),
])
def test_every_input_is_checked_with_the_field_named(session, field, value):
    args = dict(partner_id="shop-1", name="Shop", industry="retail", roles={"redeemer"},
                settlement_currency="CNY")
    args["partner_id" if field == "id" else field] = value
    partner_id = args.pop("partner_id")
    with pytest.raises(InvalidPartner) as err:
        partners.onboard_partner(session, partner_id, **args)
    assert err.value.field == field


def test_ids_are_unique_and_unknown_ids_are_refused(session):
    _bank(session)
    with pytest.raises(PartnerExists):
        _bank(session)
    with pytest.raises(PartnerNotFound):
        partners.get_partner(session, "nobody")


def test_suspension(session):
    p = _bank(session)
    partners.set_status(session, "banka", "suspended")
    with pytest.raises(PartnerSuspended):
        partners.require_active(p)
    partners.set_status(session, "banka", "active")
    assert partners.require_active(p) is p


def test_keys_rotate_without_a_gap(session):
    _bank(session)
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    pem = old.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    k1 = partners.add_key(session, "banka", pem)
    k2 = partners.add_key(session, "banka", new.public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw).hex())
    assert partners.active_key(session, "banka", k1.id) is not None
    partners.revoke_key(session, "banka", k1.id)
    assert partners.active_key(session, "banka", k1.id) is None
    key = partners.active_key(session, "banka", k2.id)
    key.verify(new.sign(b"hello"), b"hello")
    assert {k.id: k.revoked_at is None for k in partners.keys_of(session, "banka")} == {
        k1.id: False, k2.id: True}


def test_keys_belong_to_one_partner(session):
    _bank(session)
    _bank(session, "bankb")
    k = partners.add_key(session, "banka", "11" * 32)
    assert partners.active_key(session, "bankb", k.id) is None
    with pytest.raises(KeyNotFound):
        partners.revoke_key(session, "bankb", k.id)


@pytest.mark.parametrize("key", ["zz", "11" * 31, "-----BEGIN PUBLIC KEY-----\nnope\n"])
def test_bad_keys(session, key):
    _bank(session)
    with pytest.raises(InvalidKey):
        partners.add_key(session, "banka", key)
