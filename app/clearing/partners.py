"""Onboarding partners and managing their signing keys."""

from __future__ import annotations

import re
import secrets

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.types import utcnow
from ledger.units import is_currency

from .accounts import open_money_accounts
from .errors import (
    InvalidKey,
    InvalidPartner,
    KeyNotFound,
    PartnerExists,
    PartnerNotFound,
    PartnerSuspended,
)
from .models import INDUSTRIES, Partner, PartnerKey

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
ROLES = ("issuer", "redeemer")


def onboard_partner(session: Session, partner_id: str, *, name: str, industry: str,
                    roles, settlement_currency: str) -> Partner:
    """Create a partner, active at once. Every input is checked, the field named."""
    if not isinstance(partner_id, str) or not _SLUG.match(partner_id):
        raise InvalidPartner("partner id must be 2-40 of a-z, 0-9 and -, starting with a "
                             "letter or digit", field="id")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200:
        raise InvalidPartner("name must be 1-200 characters", field="name")
    if industry not in INDUSTRIES:
        raise InvalidPartner(f"industry must be one of {', '.join(INDUSTRIES)}", field="industry")
    roles = set(roles or ())
    if not roles or not roles <= set(ROLES):
        raise InvalidPartner("roles must be issuer, redeemer or both", field="roles")
    if not is_currency(settlement_currency):
        raise InvalidPartner(f"{settlement_currency!r} is not a currency we settle in",
                             field="settlement_currency")
    if session.get(Partner, partner_id) is not None:
        raise PartnerExists(f"partner {partner_id!r} exists", field="id")
    partner = Partner(id=partner_id, name=name.strip(), industry=industry,
                      is_issuer="issuer" in roles, is_redeemer="redeemer" in roles,
                      settlement_currency=settlement_currency, status="active")
    session.add(partner)
    session.flush()
    open_money_accounts(session, partner.id, settlement_currency)
    return partner


def get_partner(session: Session, partner_id: str) -> Partner:
    partner = session.get(Partner, partner_id)
    if partner is None:
        raise PartnerNotFound(f"no partner {partner_id!r}", field="partner_id")
    return partner


def require_active(partner: Partner) -> Partner:
    if partner.status != "active":
        raise PartnerSuspended(f"partner {partner.id!r} is suspended", field="partner_id")
    return partner


def list_partners(session: Session) -> list[Partner]:
    return list(session.scalars(select(Partner).order_by(Partner.id)))


def set_status(session: Session, partner_id: str, status: str) -> Partner:
    """Suspend (``"suspended"``) or reactivate (``"active"``) a partner."""
    if status not in ("active", "suspended"):
        raise InvalidPartner("status must be active or suspended", field="status")
    partner = get_partner(session, partner_id)
    partner.status = status
    session.flush()
    return partner


def _raw_public_key(public_key) -> bytes:
    data = public_key.encode() if isinstance(public_key, str) else bytes(public_key)
    if b"BEGIN PUBLIC KEY" in data:
        try:
            key = load_pem_public_key(data)
        except ValueError as exc:
            raise InvalidKey("not a PEM public key", field="public_key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidKey("the key is not an Ed25519 key", field="public_key")
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        raw = bytes.fromhex(data.decode().strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidKey("give a PEM public key or 64 hex digits", field="public_key") from exc
    if len(raw) != 32:
        raise InvalidKey("an Ed25519 public key is 32 bytes", field="public_key")
    Ed25519PublicKey.from_public_bytes(raw)
    return raw


def add_key(session: Session, partner_id: str, public_key) -> PartnerKey:
    """Register a public key for the partner; it signs requests from now until revoked."""
    partner = get_partner(session, partner_id)
    key = PartnerKey(id=f"key_{secrets.token_hex(8)}", partner_id=partner.id,
                     public_key=_raw_public_key(public_key).hex())
    session.add(key)
    session.flush()
    return key


def revoke_key(session: Session, partner_id: str, key_id: str) -> PartnerKey:
    """Revoke a key for good; requests it signs are refused from now on."""
    key = session.get(PartnerKey, key_id)
    if key is None or key.partner_id != partner_id:
        raise KeyNotFound(f"partner {partner_id!r} has no key {key_id!r}", field="key_id")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def active_key(session: Session, partner_id: str, key_id: str) -> Ed25519PublicKey | None:
    """The partner's key ``key_id`` if it exists and is not revoked, else None."""
    key = session.get(PartnerKey, key_id)
    if key is None or key.partner_id != partner_id or key.revoked_at is not None:
        return None
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.public_key))


def keys_of(session: Session, partner_id: str) -> list[PartnerKey]:
    get_partner(session, partner_id)
    return list(session.scalars(select(PartnerKey).where(PartnerKey.partner_id == partner_id)
                                .order_by(PartnerKey.created_at, PartnerKey.id)))
