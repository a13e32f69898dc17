"""Factories for ledger fixtures: accounts funded the way real ones would be."""

from __future__ import annotations

import itertools

from ledger import credit, debit, open_account, post

_seq = itertools.count(1)


def code(prefix: str = "acct") -> str:
    return f"{prefix}:{next(_seq)}"


def funded_member(session, amount: int, *, unit: str = "BANKA", issuer: str | None = None,
                  prefix: str = "member") -> tuple[str, str]:
    """Open a guarded member account and an issuance account, and issue ``amount``.

    Returns (member code, issuance code).
    """
    member = code(f"{prefix}")
    issuer = issuer or code(f"program:{unit}:issued")
    open_account(session, member, unit, no_overdraft=True)
    open_account(session, issuer, unit)
    if amount:
        post(session, [debit(issuer, amount), credit(member, amount)], kind="issue")
    return member, issuer


def megamart_purchase(session, balance: int = 5_000):
    """DESIGN.md's "M spends 2,000 at MegaMart" (points and money legs), on fresh accounts.

    Returns (transaction, accounts by role: member, redeemed, bank, shop, fees).
    """
    from ledger import open_account

    member, _ = funded_member(session, balance)
    redeemed, bank, shop, fees = (code(p) for p in ("redeemed", "bank", "shop", "fees"))
    open_account(session, redeemed, "BANKA")
    for c in (bank, shop, fees):
        open_account(session, c, "CNY")
    txn = post(session, [
        debit(member, 2_000), credit(redeemed, 2_000),
        debit(bank, 2_000), credit(shop, 1_960), credit(fees, 40),
    ], kind="redemption")
    return txn, dict(member=member, redeemed=redeemed, bank=bank, shop=shop, fees=fees)
