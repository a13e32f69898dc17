"""Flags changed while a booking is in flight (PostgreSQL, real threads)."""

from __future__ import annotations

import threading

import pytest

import ledger.booking as booking
from ledger import balance, close_account, credit, debit, freeze_account, open_account, post
from ledger.errors import AccountClosed, AccountFrozen
from ledger.unit_of_work import run

pytestmark = pytest.mark.postgres


def _book_while(sessions, monkeypatch, entries, change):
    """Start a booking, let ``change`` commit after the booking read its accounts, go on."""
    loaded, changed = threading.Event(), threading.Event()
    real = booking.load_accounts
    first = []

    def load_then_wait(session, codes, **kw):
        found = real(session, codes, **kw)
        if not first:
            first.append(1)
            loaded.set()
            assert changed.wait(20)
        return found

    monkeypatch.setattr(booking, "load_accounts", load_then_wait)
    outcome = {}

    def book():
        try:
            outcome["txn"] = run(sessions, lambda s: post(s, entries, kind="redemption"))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=book)
    thread.start()
    assert loaded.wait(20)
    run(sessions, change)
    changed.set()
    thread.join(30)
    return outcome


def test_freezing_a_guarded_account_mid_booking_is_honoured(sessions, unique, monkeypatch):
    member, shop = f"m:{unique}", f"shop:{unique}"
    run(sessions, lambda s: [open_account(s, member, "BANKA", no_overdraft=True),
                             open_account(s, shop, "BANKA"),
                             post(s, [debit(shop, 100), credit(member, 100)], kind="issue")])
    outcome = _book_while(sessions, monkeypatch, [debit(member, 10), credit(shop, 10)],
                          lambda s: freeze_account(s, member))
    assert isinstance(outcome.get("error"), AccountFrozen)
    with sessions() as s:
        assert balance(s, member).posted == 100


def test_closing_a_sharded_account_mid_booking_is_honoured(sessions, unique, monkeypatch):
    member, shop = f"m:{unique}", f"shop:{unique}"
    run(sessions, lambda s: [open_account(s, member, "BANKA", no_overdraft=True),
                             open_account(s, shop, "BANKA", shards=4),
                             open_account(s, f"i:{unique}", "BANKA"),
                             post(s, [debit(f"i:{unique}", 100), credit(member, 100)],
                                  kind="issue")])
    outcome = _book_while(sessions, monkeypatch, [debit(member, 10), credit(shop, 10)],
                          lambda s: close_account(s, shop))
    assert isinstance(outcome.get("error"), AccountClosed), outcome
    with sessions() as s:
        assert balance(s, shop).posted == 0 and balance(s, member).posted == 100
