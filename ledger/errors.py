"""Every rule the ledger enforces has one exception class here.

All derive from :class:`LedgerError`. Each carries a stable ``code`` (used by the API
edge for problem+json and stored with idempotent refusals) and, where it applies, the
``field`` of the request that broke the rule. The docstring of each class is the rule.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    code = "ledger_error"
    #: True when raised again from a stored idempotency record, not met just now.
    replayed = False
    #: (key, fingerprint, time) while the refusal's idempotency record is still to keep.
    refusal = None

    def __init__(self, message: str, *, field: str | None = None, **details):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict:
        data = {"code": self.code, "message": self.message}
        if self.field:
            data["field"] = self.field
        if self.details:
            data["details"] = self.details
        return data


class InvalidAmount(LedgerError):
    """An amount is an ``int`` greater than zero and at most ``MAX_AMOUNT``."""

    code = "invalid_amount"


class InvalidUnit(LedgerError):
    """A unit is an ISO 4217 currency code or a points program code."""

    code = "invalid_unit"


class Unbalanced(LedgerError):
    """In every transaction, per unit, debits equal credits."""

    code = "unbalanced"


class TooFewPostings(LedgerError):
    """A transaction has at least two postings."""

    code = "too_few_postings"


class InvalidPosting(LedgerError):
    """A posting names an account, a side ('D' or 'C') and an amount."""

    code = "invalid_posting"


class AccountNotFound(LedgerError):
    """A posting may only touch an account that was opened."""

    code = "account_not_found"


class AccountExists(LedgerError):
    """An account code is unique; opening it twice with a different spec is refused."""

    code = "account_exists"


class InvalidAccount(LedgerError):
    """An account code is 1-200 printable characters; a guarded account has one shard."""

    code = "invalid_account"


class AccountFrozen(LedgerError):
    """A frozen account takes no new postings until it is unfrozen."""

    code = "account_frozen"


class AccountClosed(LedgerError):
    """A closed account takes no postings, ever."""

    code = "account_closed"


class AccountNotEmpty(LedgerError):
    """Only an account with a zero balance and nothing pending can be closed."""

    code = "account_not_empty"


class InsufficientFunds(LedgerError):
    """On a no-overdraft account, debits (posted and pending) never exceed credits."""

    code = "insufficient_funds"


class TransactionNotFound(LedgerError):
    """An operation on a transaction needs a transaction that exists."""

    code = "transaction_not_found"


class NotPending(LedgerError):
    """Only a pending transaction can be posted, voided or expired, and only once."""

    code = "not_pending"


class PendingExpired(LedgerError):
    """A pending transaction past its expiry can no longer be posted."""

    code = "pending_expired"


class CaptureExceedsPending(LedgerError):
    """Posting a pending transaction never moves more than it reserved, per account and side."""

    code = "capture_exceeds_pending"


class NotReversible(LedgerError):
    """Only a posted transaction can be reversed (a pending one is voided instead)."""

    code = "not_reversible"


class ReversalExceedsOriginal(LedgerError):
    """All reversals of a transaction together never exceed what it moved, per line."""

    code = "reversal_exceeds_original"


class IdempotencyConflict(LedgerError):
    """An idempotency key, within its scope, names exactly one request."""

    code = "idempotency_conflict"


class InvalidIdempotencyKey(LedgerError):
    """An idempotency key has a scope of 1-100 and a key of 1-200 characters."""

    code = "invalid_idempotency_key"


class HoldNotExpired(LedgerError):
    """A pending transaction is voided as expired only once its expiry has passed."""

    code = "hold_not_expired"


class InvalidMetadata(LedgerError):
    """Metadata is a JSON object of strings, numbers, booleans, nulls, lists and objects."""

    code = "invalid_metadata"


class SealBroken(LedgerError):
    """Sealed blocks form an unbroken, correctly signed hash chain."""

    code = "seal_broken"


class ConcurrentChange(Exception):
    """An account changed (frozen, closed) between the checks and the writes of a booking.

    Not a refusal: the session holds partial writes and must be rolled back; the unit
    of work does so and runs the work again, which then meets the clean refusal.
    """
