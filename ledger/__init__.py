"""The double-entry core of Pointclear.

Knows accounts, units, transactions, postings, holds, idempotency, balances,
verification and sealing -- and nothing of points programs, partners or HTTP.
Import the functions from their modules; the most used are re-exported here.
"""

from .accounts import close_account, freeze_account, open_account, unfreeze_account
from .balances import Balance, balance
from .batch import Booking, post_many
from .booking import (
    Entry,
    TransactionRecord,
    capture,
    credit,
    debit,
    expire_due,
    get_transaction,
    hold,
    post,
    resolution_of,
    reverse,
    void,
)
from .idempotency import IdempotencyKey

__all__ = [
    "Balance", "Booking", "Entry", "IdempotencyKey", "TransactionRecord", "balance", "capture",
    "close_account", "credit", "debit", "expire_due", "freeze_account", "get_transaction",
    "hold", "open_account", "post", "post_many", "resolution_of", "reverse", "unfreeze_account", "void",
]
