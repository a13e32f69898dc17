"""The unit of work: commit, keep refusals, retry what the database asks us to retry."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from app.db import make_engine, upgrade
from ledger import IdempotencyKey, balance, credit, debit, open_account, post
from ledger.errors import InsufficientFunds
from ledger.unit_of_work import is_retryable, run

ROOT = Path(__file__).resolve().parents[2]


class _Orig(Exception):
    def __init__(self, sqlstate):
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate, retry", [("40001", True), ("40P01", True), ("23505", False)])
def test_which_failures_are_retried(sqlstate, retry):
    assert is_retryable(OperationalError("stmt", {}, _Orig(sqlstate))) is retry


def test_sqlite_busy_is_retried():
    import sqlite3

    assert is_retryable(OperationalError("stmt", {}, sqlite3.OperationalError("database is locked")))


@pytest.fixture
def file_sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'uow.db'}")
    with engine.begin() as connection:
        upgrade(connection=connection)
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


def _accounts(sessions, funded=0):
    def work(s):
        open_account(s, "m", "BANKA", no_overdraft=True)
        open_account(s, "p", "BANKA", shards=4)
        if funded:
            post(s, [debit("p", funded), credit("m", funded)], kind="issue")
    run(sessions, work)


def test_retries_a_serialisation_failure_then_commits_once(file_sessions):
    _accounts(file_sessions)
    attempts = []

    def work(s):
        attempts.append(1)
        txn = post(s, [debit("p", 5), credit("m", 5)], kind="issue",
                   idempotency=IdempotencyKey("t", "k1"))
        if len(attempts) < 3:
            raise OperationalError("COMMIT", {}, _Orig("40001"))
        return txn

    run(file_sessions, work, sleep=lambda attempt: None)
    assert len(attempts) == 3
    with file_sessions() as s:
        assert balance(s, "m").posted == 5


def test_other_database_errors_are_not_retried(file_sessions):
    calls = []

    def work(s):
        calls.append(1)
        raise IntegrityError("INSERT", {}, _Orig("23505"))

    with pytest.raises(IntegrityError):
        run(file_sessions, work, sleep=lambda attempt: None)
    assert len(calls) == 1


def test_a_refusal_is_committed_so_the_retry_sees_it(file_sessions):
    _accounts(file_sessions, funded=10)
    spend = [debit("m", 50), credit("p", 50)]
    key = IdempotencyKey("shop", "s1")
    with pytest.raises(InsufficientFunds):
        run(file_sessions, lambda s: post(s, spend, kind="redemption", idempotency=key))
    run(file_sessions, lambda s: post(s, [debit("p", 100), credit("m", 100)], kind="issue"))
    with pytest.raises(InsufficientFunds) as err:
        run(file_sessions, lambda s: post(s, spend, kind="redemption", idempotency=key))
    assert err.value.replayed


def test_sqlite_writers_in_threads_never_see_database_is_locked(file_sessions):
    _accounts(file_sessions)
    errors, barrier = [], threading.Barrier(8)

    def writer(n):
        barrier.wait()
        for i in range(25):
            try:
                run(file_sessions, lambda s: post(s, [debit("p", 1), credit("m", 1)], kind="issue"))
            except Exception as exc:  # noqa: BLE001 - any error fails the test below
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with file_sessions() as s:
        assert balance(s, "m").posted == 200


WRITER = """
import sys
from sqlalchemy.orm import sessionmaker
from app.db import make_engine
from ledger import credit, debit, post
from ledger.unit_of_work import run
sessions = sessionmaker(bind=make_engine(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    run(sessions, lambda s: post(s, [debit("p", 1), credit("m", 1)], kind="issue"))
"""


def test_sqlite_writers_in_separate_processes(tmp_path, file_sessions):
    # Like several gunicorn workers on the embedded database.
    _accounts(file_sessions)
    url = str(file_sessions.kw["bind"].url)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, "40"], cwd=ROOT,
                              stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with file_sessions() as s:
        assert balance(s, "m").posted == 120


def test_a_refusal_undoes_the_whole_unit_of_work_but_keeps_its_record(file_sessions):
    # Points and money of one operation are booked by two calls; the money leg is
    # refused, so the points leg must not survive either.
    _accounts(file_sessions, funded=100)
    run(file_sessions, lambda s: open_account(s, "bank", "CNY", no_overdraft=True)
        and open_account(s, "shop", "CNY"))
    key = IdempotencyKey("op", "redeem-1")

    def redeem(s):
        post(s, [debit("m", 50), credit("p", 50)], kind="redemption")
        post(s, [debit("bank", 500), credit("shop", 500)], kind="redemption", idempotency=key)

    with pytest.raises(InsufficientFunds):
        run(file_sessions, redeem)
    with file_sessions() as s:
        assert balance(s, "m").posted == 100
    with pytest.raises(InsufficientFunds) as err:
        run(file_sessions, lambda s: post(s, [debit("bank", 500), credit("shop", 500)],
                                          kind="redemption", idempotency=key))
    assert err.value.replayed


class _LostAck(Exception):
    sqlstate = None


def _commit_then_lose_the_ack(monkeypatch):
    """Make the first COMMIT happen and then report a dropped connection."""
    from sqlalchemy.orm import Session

    real, calls = Session.commit, []

    def commit(self):
        real(self)
        if not calls:
            calls.append(1)
            raise OperationalError("COMMIT", {}, _LostAck("server closed the connection"),
                                   connection_invalidated=True)

    monkeypatch.setattr(Session, "commit", commit)


def test_a_lost_commit_acknowledgement_is_not_retried_blindly(file_sessions, monkeypatch):
    _accounts(file_sessions)
    _commit_then_lose_the_ack(monkeypatch)
    with pytest.raises(OperationalError):
        run(file_sessions, lambda s: post(s, [debit("p", 5), credit("m", 5)], kind="issue"),
            sleep=lambda attempt: None)
    with file_sessions() as s:
        assert balance(s, "m").posted == 5  # booked once; the caller was told it is unsure


def test_idempotent_work_is_retried_after_a_lost_acknowledgement(file_sessions, monkeypatch):
    _accounts(file_sessions)
    _commit_then_lose_the_ack(monkeypatch)
    txn = run(file_sessions, lambda s: post(s, [debit("p", 5), credit("m", 5)], kind="issue",
                                            idempotency=IdempotencyKey("t", "ack-1")),
              idempotent=True, sleep=lambda attempt: None)
    assert txn.replayed
    with file_sessions() as s:
        assert balance(s, "m").posted == 5


def test_a_long_sqlite_read_does_not_stop_writers(tmp_path):
    """A read-only session (a report, verify) holds no write lock while it reads."""
    from sqlalchemy import text

    from app.db import read_only_sessions

    engine = make_engine(f"sqlite:///{tmp_path / 'ro.db'}")
    with engine.begin() as connection:
        upgrade(connection=connection)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    _accounts(sessions)
    reader = read_only_sessions(engine)()
    reader.execute(text("SELECT count(*) FROM ledger_postings")).scalar()  # transaction open
    done = threading.Event()

    def write():
        run(sessions, lambda s: post(s, [debit("p", 1), credit("m", 1)], kind="issue"))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    finished_while_reading = done.wait(10)
    reader.close()
    writer.join(40)
    engine.dispose()
    assert finished_while_reading
