"""The HTTP Idempotency-Key store: every outcome on SQLite and PostgreSQL, each test in one
outer transaction rolled back at the end (every session the store opens joins it through
a savepoint); then real-thread races on PostgreSQL, committed under unique partner ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api import idempotency as idem
from app.api.idempotency import IN_PROGRESS, MISMATCH, REPLAY, STARTED, LostOwnership
from app.api.models import RequestRecord
from app.clearing.partners import onboard_partner
from ledger.accounts import open_account
from ledger.models import Account
from ledger.unit_of_work import run
from tests.concurrency import race

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=59)
STALE = T0 + timedelta(seconds=60)
FP = idem.fingerprint("POST", "/v1/redemptions", b'{"points": 2000}')
OTHER_FP = idem.fingerprint("POST", "/v1/redemptions", b'{"points": 2001}')
BODY = '{"id": "t-1", "note": "caf\u00e9\\n"}\n'


@pytest.fixture
def tx_sessions(engine):
    """A sessions factory whose every session joins one transaction, rolled back after."""
    connection = engine.connect()
    outer = connection.begin()
    yield lambda: Session(bind=connection, join_transaction_mode="create_savepoint",
                          expire_on_commit=False)
    outer.rollback()
    connection.close()


def _partner(sessions, unique, tag="a") -> str:
    partner_id = f"p-{tag}-{unique}"
    run(sessions, lambda s: onboard_partner(s, partner_id, name="P", industry="retail",
                                            roles={"redeemer"}, settlement_currency="CNY"))
    return partner_id


def _record(sessions, partner_id, key) -> RequestRecord | None:
    with sessions() as s:
        return s.get(RequestRecord, (partner_id, key))


def _finish(sessions, partner_id, key, token, status=201, body=BODY, now=T0):
    run(sessions, lambda s: idem.finish(s, partner_id, key, token, status, body, now=now))


# --- fingerprints and keys ------------------------------------------------------------------

def test_fingerprint_covers_method_path_and_raw_body():
    assert len(FP) == 64 and FP == idem.fingerprint("POST", "/v1/redemptions",
                                                    b'{"points": 2000}')
    assert len({FP, OTHER_FP, idem.fingerprint("PUT", "/v1/redemptions", b'{"points": 2000}'),
                idem.fingerprint("POST", "/v1/holds", b'{"points": 2000}'),
                idem.fingerprint("POST", "/v1/redemptions", b'{"points":2000}')}) == 5
    # Where the path ends and the body begins is part of what is hashed.
    assert idem.fingerprint("POST", "/a\x00x", b"y") != idem.fingerprint("POST", "/a", b"x\x00y")


@pytest.mark.parametrize("key, valid", [
    ("k", True), ("k" * 200, True), (" ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", True),
    ("", False), ("k" * 201, False), ("line\nbreak", False), ("caf\u00e9", False),
    ("\x7f", False), (None, False), (42, False),
])
def test_keys_are_1_to_200_printable_ascii_characters(tx_sessions, unique, key, valid):
    partner = _partner(tx_sessions, unique)
    if valid:
        assert idem.begin(tx_sessions, partner, key, FP, now=T0).kind == STARTED
    else:
        with pytest.raises(idem.InvalidIdempotencyKey):
            idem.begin(tx_sessions, partner, key, FP, now=T0)


# --- begin -----------------------------------------------------------------------------------

def test_a_new_key_starts_and_the_same_request_meanwhile_is_in_progress(tx_sessions, unique):
    partner = _partner(tx_sessions, unique)
    first = idem.begin(tx_sessions, partner, "k1", FP, now=T0)
    assert first.kind == STARTED and len(first.token) == 32
    assert idem.begin(tx_sessions, partner, "k1", FP, now=LATER).kind == IN_PROGRESS
    record = _record(tx_sessions, partner, "k1")
    assert (record.state, record.token, record.fingerprint, record.started_at) == (
        "running", first.token, FP, T0)


@pytest.mark.parametrize("finished", [False, True])
def test_a_different_request_under_the_key_is_a_mismatch(tx_sessions, unique, finished):
    partner = _partner(tx_sessions, unique)
    first = idem.begin(tx_sessions, partner, "k1", FP, now=T0)
    if finished:
        _finish(tx_sessions, partner, "k1", first.token)
    # Even once the run is stale: a different request never takes a key over.
    for now in (LATER, STALE + timedelta(days=1)):
        assert idem.begin(tx_sessions, partner, "k1", OTHER_FP, now=now).kind == MISMATCH
    assert _record(tx_sessions, partner, "k1").token == first.token


def test_a_finished_request_replays_its_exact_status_and_body(tx_sessions, unique):
    partner = _partner(tx_sessions, unique)
    first = idem.begin(tx_sessions, partner, "k1", FP, now=T0)
    _finish(tx_sessions, partner, "k1", first.token, 201, BODY, now=LATER)
    record = _record(tx_sessions, partner, "k1")
    assert (record.state, record.finished_at) == ("done", LATER)
    # Long after, and past any stale_after: a done record is never taken over.
    again = idem.begin(tx_sessions, partner, "k1", FP, now=STALE + timedelta(days=30))
    assert again == idem.Begin(REPLAY, status_code=201, response=BODY)


def test_keys_belong_to_one_partner_and_the_partner_must_exist(tx_sessions, unique):
    a, b = _partner(tx_sessions, unique, "a"), _partner(tx_sessions, unique, "b")
    assert idem.begin(tx_sessions, a, "k1", FP, now=T0).kind == STARTED
    assert idem.begin(tx_sessions, b, "k1", OTHER_FP, now=T0).kind == STARTED
    with pytest.raises(IntegrityError):
        idem.begin(tx_sessions, f"nobody-{unique}", "k1", FP, now=T0)


# --- stale runs and ownership --------------------------------------------------------------

def test_a_run_is_stale_from_stale_after_and_is_taken_over(tx_sessions, unique):
    partner = _partner(tx_sessions, unique)
    first = idem.begin(tx_sessions, partner, "k1", FP, now=T0)
    assert idem.begin(tx_sessions, partner, "k1", FP, now=LATER).kind == IN_PROGRESS
    second = idem.begin(tx_sessions, partner, "k1", FP, now=STALE)
    assert second.kind == STARTED and second.token != first.token
    record = _record(tx_sessions, partner, "k1")
    assert (record.state, record.token, record.started_at) == ("running", second.token, STALE)
    # The new run is fresh again; a custom stale_after is honoured.
    fresh = STALE + timedelta(seconds=59)
    assert idem.begin(tx_sessions, partner, "k1", FP, now=fresh).kind == IN_PROGRESS
    third = idem.begin(tx_sessions, partner, "k1", FP, now=STALE + timedelta(seconds=5),
                       stale_after=timedelta(seconds=5))
    assert third.kind == STARTED and third.token not in (first.token, second.token)


def test_the_old_owner_cannot_finish_after_a_takeover(tx_sessions, unique):
    partner = _partner(tx_sessions, unique)
    first = idem.begin(tx_sessions, partner, "k1", FP, now=T0)
    second = idem.begin(tx_sessions, partner, "k1", FP, now=STALE)
    for store in (_finish, idem.finish_separately):
        with pytest.raises(LostOwnership):
            store(tx_sessions, partner, "k1", first.token, 422, "first")
    assert _record(tx_sessions, partner, "k1").state == "running"
    _finish(tx_sessions, partner, "k1", second.token, 201, "second")
    with pytest.raises(LostOwnership):  # a finished run cannot be finished again
        _finish(tx_sessions, partner, "k1", second.token, 201, "again")
    assert idem.begin(tx_sessions, partner, "k1", FP, now=STALE).response == "second"


def test_a_refusal_is_stored_on_its_own_and_replayed(tx_sessions, unique):
    partner = _partner(tx_sessions, unique)
    first = idem.begin(tx_sessions, partner, "k1", FP, now=T0)
    problem = '{"code": "insufficient_points", "status": 422}'
    idem.finish_separately(tx_sessions, partner, "k1", first.token, 422, problem, now=LATER)
    assert idem.begin(tx_sessions, partner, "k1", FP, now=LATER) == idem.Begin(
        REPLAY, status_code=422, response=problem)


@pytest.mark.parametrize("status", [500, 502, 503, 401, 409, 429])
def test_answers_a_retry_must_not_get_again_are_never_stored(tx_sessions, unique, status):
    assert not idem.is_storable(status)
    assert all(idem.is_storable(s) for s in (200, 201, 400, 403, 404, 422))
    partner = _partner(tx_sessions, unique)
    first = idem.begin(tx_sessions, partner, "k1", FP, now=T0)
    for store in (_finish, idem.finish_separately):
        with pytest.raises(ValueError):
            store(tx_sessions, partner, "k1", first.token, status, "no")
    assert _record(tx_sessions, partner, "k1").state == "running"


def test_abandon_lets_a_retry_run_again_but_only_for_the_owner(tx_sessions, unique):
    partner = _partner(tx_sessions, unique)
    first = idem.begin(tx_sessions, partner, "k1", FP, now=T0)
    assert not idem.abandon(tx_sessions, partner, "k1", "0" * 32)
    assert idem.begin(tx_sessions, partner, "k1", FP, now=LATER).kind == IN_PROGRESS
    assert idem.abandon(tx_sessions, partner, "k1", first.token)
    retry = idem.begin(tx_sessions, partner, "k1", FP, now=LATER)
    assert retry.kind == STARTED and retry.token != first.token
    # A taken-over or finished run is not the old owner's to abandon.
    assert not idem.abandon(tx_sessions, partner, "k1", first.token)
    _finish(tx_sessions, partner, "k1", retry.token)
    assert not idem.abandon(tx_sessions, partner, "k1", retry.token)
    assert _record(tx_sessions, partner, "k1").state == "done"


# --- real threads on PostgreSQL ------------------------------------------------------------


def _begin_together(sessions, partner, key, now, n=8):
    def worker(_i, barrier):
        barrier.wait()
        return idem.begin(sessions, partner, key, FP, now=now)
    return race(n, worker)


@pytest.mark.postgres
def test_concurrent_first_requests_start_exactly_once(sessions, unique):
    partner = _partner(sessions, unique)
    outcomes = _begin_together(sessions, partner, "k1", T0)
    started = [o for o in outcomes if o.kind == STARTED]
    assert sorted(o.kind for o in outcomes) == [IN_PROGRESS] * 7 + [STARTED]
    assert _record(sessions, partner, "k1").token == started[0].token


@pytest.mark.postgres
def test_concurrent_takeovers_of_a_stale_run_have_one_winner(sessions, unique):
    partner = _partner(sessions, unique)
    dead = idem.begin(sessions, partner, "k1", FP, now=T0)
    outcomes = _begin_together(sessions, partner, "k1", STALE)
    assert sorted(o.kind for o in outcomes) == [IN_PROGRESS] * 7 + [STARTED]
    winner, = (o.token for o in outcomes if o.kind == STARTED)
    record = _record(sessions, partner, "k1")
    assert (record.token, record.started_at) == (winner, STALE) and winner != dead.token


@pytest.mark.postgres
def test_an_owner_taken_over_mid_work_loses_and_books_nothing(sessions, unique):
    partner = _partner(sessions, unique)
    booked = f"work:{unique}"  # what the slow first run books; it must never commit

    def worker(i, barrier):
        if i == 0:  # the first run, slow: still in its work transaction
            mine = idem.begin(sessions, partner, "k1", FP, now=T0)

            def work(s):
                open_account(s, booked, "CNY")
                s.flush()
                barrier.wait()  # 1: the work is under way
                barrier.wait()  # 2: a retry has taken over
                idem.finish(s, partner, "k1", mine.token, 201, "first", now=STALE)

            with pytest.raises(LostOwnership):
                run(sessions, work)  # rolls the work back; never retries it
            return mine
        barrier.wait()
        retry = idem.begin(sessions, partner, "k1", FP, now=STALE)
        barrier.wait()
        return retry

    first, retry = race(2, worker)
    assert retry.kind == STARTED and retry.token != first.token
    with sessions() as s:
        assert s.scalar(select(Account).where(Account.code == booked)) is None
    _finish(sessions, partner, "k1", retry.token, 201, "retry")
    assert idem.begin(sessions, partner, "k1", FP, now=STALE).response == "retry"


@pytest.mark.postgres
def test_a_takeover_racing_the_owners_commit_cannot_steal_a_finished_run(sessions, unique):
    partner = _partner(sessions, unique)
    mine = idem.begin(sessions, partner, "k1", FP, now=T0)

    def worker(i, barrier):
        if i == 1:  # its takeover UPDATE waits for the owner's commit, or runs after it
            barrier.wait()
            return idem.begin(sessions, partner, "k1", FP, now=STALE)
        with sessions() as s:
            idem.finish(s, partner, "k1", mine.token, 201, BODY, now=STALE)
            barrier.wait()  # the row is locked by the uncommitted finish
            s.commit()

    _, retry = race(2, worker)
    assert retry.kind in (IN_PROGRESS, REPLAY)
    record = _record(sessions, partner, "k1")
    assert (record.state, record.token, record.response) == ("done", mine.token, BODY)


@pytest.mark.postgres
def test_concurrent_retries_of_a_finished_request_all_replay_it(sessions, unique):
    partner = _partner(sessions, unique)
    _finish(sessions, partner, "k1", idem.begin(sessions, partner, "k1", FP, now=T0).token)
    outcomes = _begin_together(sessions, partner, "k1", STALE + timedelta(days=1))
    assert outcomes == [idem.Begin(REPLAY, status_code=201, response=BODY)] * 8
