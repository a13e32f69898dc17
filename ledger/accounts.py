"""Opening, freezing and closing accounts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .errors import (
    AccountExists,
    AccountNotEmpty,
    AccountNotFound,
    InvalidAccount,
)
from .models import Account, AccountBalance
from .units import parse_unit


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What a booking needs to know of an account.

    Attributes:
      id: database id (also the lock order).
      code: readable unique code.
      unit: unit code.
      no_overdraft: debits (posted and pending) may not exceed credits.
      frozen: takes no postings for now.
      closed: takes no postings ever again.
      shards: number of running-total rows.
    """

    id: int
    code: str
    unit: str
    no_overdraft: bool
    frozen: bool
    closed: bool
    shards: int


def _info(account: Account) -> AccountInfo:
    return AccountInfo(
        account.id, account.code, account.unit, account.no_overdraft,
        account.frozen, account.closed, account.shards,
    )


def open_account(
    session: Session,
    code: str,
    unit: str,
    *,
    no_overdraft: bool = False,
    shards: int = 1,
) -> AccountInfo:
    """Open an account, or return it if it is already open with the same spec.

    Raises :class:`AccountExists` if ``code`` is taken with another unit, guard or shard
    count, so that a typo cannot silently book into the wrong unit.
    """
    parse_unit(unit)
    if not isinstance(code, str) or not (1 <= len(code) <= 200) or not code.isprintable():
        raise InvalidAccount("account code must be 1-200 printable characters", field="code")
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= 64:
        raise InvalidAccount("shards must be an integer from 1 to 64", field="shards")
    if no_overdraft and shards != 1:
        raise InvalidAccount("a no-overdraft account has exactly one shard", field="shards")

    existing = session.scalar(select(Account).where(Account.code == code))
    if existing is not None:
        if (existing.unit, existing.no_overdraft, existing.shards) != (unit, no_overdraft, shards):
            raise AccountExists(
                f"account {code!r} already exists as unit={existing.unit} "
                f"no_overdraft={existing.no_overdraft} shards={existing.shards}",
                field="code",
            )
        return _info(existing)

    try:
        # A savepoint, so that losing a race to open the same code leaves the caller's
        # transaction usable: we then return (or refuse) the account that won.
        with session.begin_nested():
            account = Account(code=code, unit=unit, no_overdraft=no_overdraft, shards=shards)
            session.add(account)
            session.flush()
            session.add_all(
                AccountBalance(account_id=account.id, shard=s, guarded=no_overdraft)
                for s in range(shards)
            )
            session.flush()
    except IntegrityError:
        return open_account(session, code, unit, no_overdraft=no_overdraft, shards=shards)
    return _info(account)


def get_account(session: Session, code: str) -> AccountInfo:
    account = session.scalar(select(Account).where(Account.code == code))
    if account is None:
        raise AccountNotFound(f"no account {code!r}", field="account")
    return _info(account)


def load_accounts(session: Session, codes, *, sql=None) -> dict[str, AccountInfo]:
    """Load the accounts named by ``codes`` in one query; raise if any is missing."""
    from .sql import Sql  # the booking hot path's statements

    codes = sorted(set(codes))
    found = {row[1]: AccountInfo(*row) for row in (sql or Sql(session)).accounts(codes)}
    missing = [c for c in codes if c not in found]
    if missing:
        raise AccountNotFound(f"no account {missing[0]!r}", field="account", missing=missing)
    return found


def _set_flag(session: Session, code: str, **values) -> AccountInfo:
    """Change frozen/closed on the account and on every shard, under the shards' locks.

    Taking the shard locks (in shard order) orders the change against in-flight
    bookings: one that already wrote a shard commits first; one that has not yet will
    see the new flag when its UPDATE re-checks the row.
    """
    info = get_account(session, code)
    _lock_shards(session, info.id)
    session.execute(update(Account).where(Account.id == info.id).values(**values))
    session.execute(update(AccountBalance).where(AccountBalance.account_id == info.id)
                    .values(**values))
    session.expire_all()
    return get_account(session, code)


def _lock_shards(session: Session, account_id: int) -> list[AccountBalance]:
    return session.scalars(
        select(AccountBalance)
        .where(AccountBalance.account_id == account_id)
        .order_by(AccountBalance.shard)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()


def freeze_account(session: Session, code: str) -> AccountInfo:
    """Stop postings to an account until :func:`unfreeze_account`."""
    return _set_flag(session, code, frozen=True)


def unfreeze_account(session: Session, code: str) -> AccountInfo:
    return _set_flag(session, code, frozen=False)


def close_account(session: Session, code: str) -> AccountInfo:
    """Close an account for good. It must be empty: zero balance, nothing pending."""
    info = get_account(session, code)
    # Lock every shard (in shard order) so no booking lands between check and close.
    shards = _lock_shards(session, info.id)
    dp = sum(s.debits_posted for s in shards)
    cp = sum(s.credits_posted for s in shards)
    dpend = sum(s.debits_pending for s in shards)
    cpend = sum(s.credits_pending for s in shards)
    if dp != cp or dpend or cpend:
        raise AccountNotEmpty(
            f"account {code!r} has balance {cp - dp} and pending debits {dpend}, "
            f"credits {cpend}",
            field="account",
        )
    return _set_flag(session, code, closed=True)


def lock_accounts(session: Session, codes) -> dict[str, AccountInfo]:
    """Lock the balance rows of guarded accounts until the transaction ends, in the
    ledger's global order (account id), and return every named account.

    For callers that must read something that depends on a balance (which of a
    member's points lots to spend) before booking against it: holding the lock from
    the read to the booking keeps a concurrent spend from reading the same state. The
    booking re-takes the same locks in the same order, so this cannot deadlock with it.
    """
    from .sql import Sql

    sql = Sql(session)
    accounts = load_accounts(session, codes, sql=sql)
    sql.lock_balances(sorted(a.id for a in accounts.values() if a.no_overdraft))
    return accounts
