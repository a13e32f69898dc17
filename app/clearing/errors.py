"""Every rule of the clearing domain has one exception class here, under ClearingError.

Like the ledger's errors, each carries a stable ``code`` and, where one input is at
fault, its ``field``; the API edge maps them to problem+json once.
"""

from __future__ import annotations

from ledger.errors import LedgerError


class ClearingError(LedgerError):
    """Root of every error the clearing domain raises on purpose."""

    code = "clearing_error"


class InvalidPartner(ClearingError):
    """A partner has a slug id (2-40 of a-z, 0-9, -), a name, a known industry, at least
    one role and a settlement currency we settle in."""

    code = "invalid_partner"


class PartnerExists(ClearingError):
    """A partner id is taken once."""

    code = "partner_exists"


class PartnerNotFound(ClearingError):
    """An operation names a partner that was onboarded."""

    code = "partner_not_found"


class PartnerSuspended(ClearingError):
    """A suspended partner issues, redeems and converts nothing until reactivated."""

    code = "partner_suspended"


class InvalidKey(ClearingError):
    """A partner key is a 32-byte Ed25519 public key (PEM or 64 hex digits)."""

    code = "invalid_key"


class KeyNotFound(ClearingError):
    """A key id names one of the partner's keys."""

    code = "key_not_found"


class InvalidProgram(ClearingError):
    """A program has a points code (4-16 of A-Z, 0-9, _), a name, an owner that is an
    issuer (or the platform) and an expiry of 1-120 months or none."""

    code = "invalid_program"


class ProgramExists(ClearingError):
    """A program code is taken once."""

    code = "program_exists"


class ProgramNotFound(ClearingError):
    """An operation names a program hosted here."""

    code = "program_not_found"


class InvalidRate(ClearingError):
    """A value per point is a positive decimal of at most 8 places, in a currency we
    settle in, effective from a timezone-aware instant."""

    code = "invalid_rate"


class NoRate(ClearingError):
    """A program is valued only from the first effective date of its value."""

    code = "no_rate"
