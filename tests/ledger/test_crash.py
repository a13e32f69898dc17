"""Crash safety: a process killed with SIGKILL in the middle of booking leaves whole books.

A child process (``crash_worker.py``) opens its own engine on the test database and books
five-posting, two-unit transactions -- issues, holds, captures, redemptions, each with an
idempotency key -- one unit of work at a time, announcing each COMMIT on stdout. The
parent reads the pipe until it has seen N commits and kills the child at once, while it is
busy with the next booking. Then, on a connection of its own:

- no transaction is partial: every one of the child's transactions has all five postings
  and balances per unit, and nothing it booked is missing its idempotency record (or the
  other way round);
- every announced transaction is there, and at most one more (committed, killed before it
  could say so);
- the running totals are exactly what the committed requests imply (computed from the
  requests themselves) and ``verify`` finds nothing wrong;
- sending the request that was in flight again, with its key, either returns the
  transaction that did commit or books it now -- never twice.

The batch variants book 500 transactions in ONE unit of work -- one ``post`` after
another, or one ``post_many`` -- and are killed before they commit (as the batch starts,
half-way, or with everything written): none of the batch may be visible afterwards, and
its accounts take bookings again.

PostgreSQL only: these tests commit for real, into accounts unique to each test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from ledger import balance, get_transaction
from ledger.models import Account, IdempotencyRecord, Posting, Transaction
from ledger.unit_of_work import run
from ledger.verify import verify
from tests.ledger import crash_worker as worker

pytestmark = pytest.mark.postgres

WORKER = Path(__file__).with_name("crash_worker.py")
ROOT = Path(__file__).resolve().parents[2]
WATCHDOG_SECONDS = 60  # a safety net for a hung child, never a synchronisation
BATCH_SIZE = 500
COMMITS_BEFORE_BATCH = 10


class Child:
    """The worker process, its stdout read line by line."""

    def __init__(self, database_url: str, prefix: str, *args: str):
        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), database_url, prefix, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            text=True, cwd=ROOT, env=env,
        )
        self.watchdog = threading.Timer(WATCHDOG_SECONDS, self.proc.kill)
        self.watchdog.start()
        self.lines: list[str] = []

    def read_until(self, done) -> None:
        """Read lines until ``done(line)``; fail if the child exits first."""
        while True:
            line = self.proc.stdout.readline()
            if not line.endswith("\n"):
                self.kill()
                pytest.fail(f"worker ended before the kill (exit {self.proc.returncode}):\n"
                            f"{self.errors()}")
            self.lines.append(line.rstrip("\n"))
            if done(self.lines[-1]):
                return

    def kill(self) -> None:
        """SIGKILL now; then read what it had printed before it died."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.watchdog.cancel()
        rest = self.proc.stdout.read()
        # A line cut short by the kill (no newline) was never announced.
        self.lines += [l for l in rest.split("\n")[:-1]]
        self.proc.stdout.close()
        self.proc.stdin.close()

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def announced(self) -> list[tuple[int, uuid.UUID]]:
        out = []
        for line in self.lines:
            if line.startswith("committed "):
                _, i, txn_id = line.split()
                out.append((int(i), uuid.UUID(txn_id)))
        return out


def _kill_when(child: Child, done) -> None:
    try:
        child.read_until(done)
    finally:
        child.kill()
    assert child.proc.returncode == -signal.SIGKILL, (
        f"worker was not killed by us: exit {child.proc.returncode}\n{child.errors()}")


def _books_of(session: Session, prefix: str, reference: str):
    """This worker's transactions (by reference) with their postings, and its records."""
    txns = dict(session.execute(
        select(Transaction.id, Transaction.status).where(Transaction.reference == reference)
    ).all())
    codes = list(worker.codes(prefix).values())
    postings = defaultdict(list)
    for txn_id, side, amount, unit in session.execute(
        select(Posting.transaction_id, Posting.side, Posting.amount, Posting.unit)
        .join(Account, Account.id == Posting.account_id)
        .where(Account.code.in_(codes))
    ):
        postings[txn_id].append((side, amount, unit))
    return txns, postings


def _assert_whole(txns, postings) -> None:
    for txn_id in txns:
        lines = postings.get(txn_id, [])
        assert len(lines) == worker.POSTINGS_PER_BOOKING, (
            f"transaction {txn_id} has {len(lines)} postings: {lines}")
        net = defaultdict(int)
        for side, amount, unit in lines:
            net[unit] += amount if side == "D" else -amount
        assert all(v == 0 for v in net.values()), f"transaction {txn_id} is off: {dict(net)}"


def _assert_totals(session: Session, prefix: str, committed: int) -> None:
    expected = worker.expected_totals(prefix, committed)
    for code, want in expected.items():
        b = balance(session, code)
        got = [b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending]
        assert got == want, f"{code} after {committed} requests: totals {got}, expected {want}"


def _assert_verified(session: Session) -> None:
    report = verify(session, check_signatures=False)
    assert report.ok, report.problems


def _resend(sessions, prefix: str, i: int, announced: dict[int, uuid.UUID]):
    """Send request ``i`` again, with its key, the way a client retries after a crash."""
    pending_id = announced.get(i - 1) if i % 4 == 2 else None

    def work(session):
        # A lock the dead backend still held would make this wait: not for ever.
        session.execute(text("SET LOCAL lock_timeout = '10s'"))
        return worker.book(session, prefix, i, pending_id)

    return run(sessions, work)


@pytest.mark.parametrize("kill_after", [5, 37, 120])
def test_kill_during_bookings_leaves_whole_books(database_url, engine, kill_after):
    prefix = f"crash:{uuid.uuid4().hex[:10]}"
    child = Child(database_url, prefix, "loop")
    _kill_when(child, lambda line: line.startswith(f"committed {kill_after - 1} "))

    announced = dict(child.announced())
    assert list(announced) == list(range(len(announced))) and len(announced) >= kill_after

    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions() as session:
        txns, postings = _books_of(session, prefix, prefix)
        _assert_whole(txns, postings)
        missing = set(announced.values()) - txns.keys()
        assert not missing, f"announced but not committed: {missing}"
        unannounced = txns.keys() - set(announced.values())
        assert len(unannounced) <= 1, f"more than the in-flight request committed: {unannounced}"
        assert all(postings.get(t) for t in txns), "a transaction without postings"
        orphans = postings.keys() - txns.keys()
        assert not orphans, f"postings on the worker's accounts of unknown transactions: {orphans}"
        committed = len(txns)

        records = dict(session.execute(
            select(IdempotencyRecord.key, IdempotencyRecord.transaction_id)
            .where(IdempotencyRecord.scope == prefix)).all())
        assert set(records.values()) == set(txns), "idempotency records and bookings differ"
        assert set(records) == {worker.key(prefix, i).key for i in range(committed)}

        _assert_totals(session, prefix, committed)
        _assert_verified(session)

    # The request that was in flight, sent again: the committed one if it did commit,
    # else booked now -- once.
    in_flight = len(announced)
    again = _resend(sessions, prefix, in_flight, announced)
    if unannounced:
        assert again.replayed and again.id in unannounced
    else:
        assert not again.replayed
    with sessions() as session:
        txns, postings = _books_of(session, prefix, prefix)
        _assert_whole(txns, postings)
        assert len(txns) == in_flight + 1
        assert get_transaction(session, again.id).postings == again.postings
        _assert_totals(session, prefix, in_flight + 1)
        _assert_verified(session)


@pytest.mark.parametrize("mode, kill_on", [
    ("batch", "batch started"), ("batch", "batch half"), ("batch", "batch written"),
    ("post_many", "batch started"), ("post_many", "batch written"),
])
def test_kill_inside_a_batch_shows_none_of_it(database_url, engine, mode, kill_on):
    prefix = f"crash:{uuid.uuid4().hex[:10]}"
    child = Child(database_url, prefix, mode, str(COMMITS_BEFORE_BATCH), str(BATCH_SIZE))
    _kill_when(child, lambda line: line == kill_on)

    announced = dict(child.announced())
    assert len(announced) == COMMITS_BEFORE_BATCH
    assert "batch committed" not in child.lines

    reference = worker.batch_reference(prefix)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    with sessions() as session:
        batch_txns = session.scalar(select(func.count()).select_from(Transaction)
                                    .where(Transaction.reference == reference))
        assert batch_txns == 0, f"{batch_txns} transactions of the killed batch are visible"
        batch_records = session.scalar(select(func.count()).select_from(IdempotencyRecord)
                                       .where(IdempotencyRecord.scope == reference))
        assert batch_records == 0, f"{batch_records} idempotency records of the batch"

        txns, postings = _books_of(session, prefix, prefix)
        _assert_whole(txns, postings)
        assert set(txns) == set(announced.values())
        assert postings.keys() == txns.keys(), "postings of the batch are visible"
        _assert_totals(session, prefix, COMMITS_BEFORE_BATCH)
        _assert_verified(session)

    # The accounts the batch had locked take bookings again.
    again = _resend(sessions, prefix, COMMITS_BEFORE_BATCH, announced)
    assert not again.replayed
    with sessions() as session:
        _assert_totals(session, prefix, COMMITS_BEFORE_BATCH + 1)
        _assert_verified(session)
