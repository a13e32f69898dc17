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


class InvalidAgreement(ClearingError):
    """An agreement names a program and a redeemer (an active partner with the redeemer
    role, not the program's owner) or a target program; its currency is the settlement
    currency of every partner whose money it moves; rates are decimals of at most 8
    places (a fee rate in [0, 1), a ratio above 0), the spread is never negative, and
    min/max points are positive with min <= max."""

    code = "invalid_agreement"


class AgreementExists(ClearingError):
    """One agreement per program and redeemer, or per source and target program."""

    code = "agreement_exists"


class AgreementNotFound(ClearingError):
    """An agreement id names an agreement that exists."""

    code = "agreement_not_found"


class NoAgreement(ClearingError):
    """Points cross to another partner or program only under an agreement in force."""

    code = "no_agreement"


class InvalidMember(ClearingError):
    """A customer reference is 1-100 printable characters; contact data is a flat object
    of short strings (name, email, phone)."""

    code = "invalid_member"


class MemberNotFound(ClearingError):
    """An operation names a member the partner has linked (by its customer reference)."""

    code = "member_not_found"


class MemberAlreadyLinked(ClearingError):
    """A partner links one customer reference to one member, and a member once."""

    code = "member_already_linked"


class MemberFrozen(ClearingError):
    """A frozen member earns, spends and converts nothing until unfrozen."""

    code = "member_frozen"


class InvalidMemberToken(ClearingError):
    """A member token is one the platform issued, not yet expired."""

    code = "invalid_member_token"


class InvalidOperation(ClearingError):
    """An operation's input has the right shape: positive whole points within limits,
    a known kind, timestamps with a timezone."""

    code = "invalid_operation"


class NotPermitted(ClearingError):
    """A partner issues only its own program's points (or the coalition's, as an issuer),
    redeems only as a redeemer, and reverses, captures or voids only its own operations."""

    code = "not_permitted"


class OperationNotFound(ClearingError):
    """An operation id names one of the partner's own operations."""

    code = "operation_not_found"


class InsufficientPoints(ClearingError):
    """A member spends, converts or loses at most the unexpired points they hold."""

    code = "insufficient_points"


class OutsideLimits(ClearingError):
    """A conversion moves at least the agreement's minimum and at most its maximum of
    source points, and yields at least one target point."""

    code = "outside_limits"


class ImportRejected(ClearingError):
    """A bulk import books every line or none: one bad line rejects the file, and the
    refusal lists every bad line (``errors``), not just the first."""

    code = "import_rejected"


class InvalidSubscription(ClearingError):
    """A webhook subscription has an absolute https URL of at most 2,000 ASCII
    characters, with a host that is not a private, loopback or reserved address, without
    credentials or a fragment (http and private addresses only where the platform allows
    development targets), and asks for at least one known event type (or ``*``: every
    type)."""

    code = "invalid_subscription"


class SubscriptionLimit(ClearingError):
    """A partner has at most ``MAX_SUBSCRIPTIONS`` active webhook subscriptions."""

    code = "subscription_limit"


class SubscriptionNotFound(ClearingError):
    """A subscription id names one of the partner's own webhook subscriptions."""

    code = "subscription_not_found"


class SubscriptionDisabled(ClearingError):
    """Nothing is delivered, or replayed, to a disabled subscription."""

    code = "subscription_disabled"


class DeliveryNotFound(ClearingError):
    """A delivery id names a delivery of one of the partner's own subscriptions."""

    code = "delivery_not_found"


class DeliveryInProgress(ClearingError):
    """A delivery being POSTed right now (its lease has not run out) is not replayed:
    a second attempt would run beside the first. Replay it once the attempt is over."""

    code = "delivery_in_progress"
