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
