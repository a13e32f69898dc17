"""The ledger accounts the clearing domain books to, and their names.

| account | unit | what it is |
| --- | --- | --- |
| ``member:{member}:{PROGRAM}`` | points | a member's points; no overdraft |
| ``program:{PROGRAM}:issued/redeemed/converted/expired`` | points | the program's books |
| ``partner:{partner}:position:{CUR}`` | money | what the partner is owed (credit) or owes |
| ``platform:fees:{CUR}`` / ``platform:spread:{CUR}`` | money | the platform's revenue |
| ``platform:coalition:{CUR}`` | money | the platform's liability for coalition points |

Every money account is sharded and unguarded: positions go negative by design, and a
busy partner's position must not become one hot row that serialises its traffic.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ledger.accounts import open_account

MONEY_SHARDS = 16
PLATFORM_ROLES = ("fees", "spread", "coalition")


def member_points(member_id: str, program: str) -> str:
    return f"member:{member_id}:{program}"


def position(partner_id: str, currency: str) -> str:
    return f"partner:{partner_id}:position:{currency}"


def platform(role: str, currency: str) -> str:
    return f"platform:{role}:{currency}"


def liability(program, currency: str) -> str:
    """Who answers for a program's points in money: its owner's position, or for the
    coalition's points the platform's coalition account."""
    if program.owner_id is None:
        return platform("coalition", currency)
    return position(program.owner_id, currency)


def open_member_points(session: Session, member_id: str, program: str) -> str:
    code = member_points(member_id, program)
    open_account(session, code, program, no_overdraft=True)
    return code


def open_money_accounts(session: Session, partner_id: str, currency: str) -> None:
    """Open the partner's position and the platform's accounts in ``currency``."""
    open_account(session, position(partner_id, currency), currency, shards=MONEY_SHARDS)
    for role in PLATFORM_ROLES:
        open_account(session, platform(role, currency), currency, shards=MONEY_SHARDS)
