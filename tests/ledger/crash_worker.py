"""The child process of ``test_crash.py``: books until it is killed with SIGKILL.

    python crash_worker.py URL PREFIX loop
    python crash_worker.py URL PREFIX batch BEFORE SIZE
    python crash_worker.py URL PREFIX post_many BEFORE SIZE

All open their accounts (codes starting with PREFIX) and then book request 0, 1, 2, ...
(see :func:`book`), each in its own unit of work, printing ``committed <i> <id>`` after
each COMMIT. ``loop`` does that forever. The others stop after BEFORE requests and book
SIZE small transactions in ONE unit of work -- ``batch`` one ``post`` at a time,
printing ``batch started``, ``batch half`` and ``batch written`` on the way;
``post_many`` in one call, printing ``batch started`` and ``batch written``. After
``batch written`` they wait for their stdin to close before they let the unit of work
COMMIT -- the parent kills them first.

The requests are a function of their number alone, so the parent can compute the books
that any number of commits must have left (:func:`expected_totals`) and send the request
that was in flight again (:func:`book`).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger import Booking, IdempotencyKey, capture, hold, open_account, post, post_many
from ledger.booking import Entry

# role -> (unit, no_overdraft, shards)
ROLES = {
    "issued": ("BANKA", False, 4),
    "m0": ("BANKA", True, 1),
    "m1": ("BANKA", True, 1),
    "m2": ("BANKA", True, 1),
    "shop": ("BANKA", False, 1),
    "bank": ("CNY", False, 1),
    "partner": ("CNY", True, 1),
    "fees": ("CNY", False, 1),
}
POSTINGS_PER_BOOKING = 5


def codes(prefix: str) -> dict[str, str]:
    return {role: f"{prefix}:{role}" for role in ROLES}


def open_accounts(session, prefix: str) -> None:
    for role, code in codes(prefix).items():
        unit, guarded, shards = ROLES[role]
        open_account(session, code, unit, no_overdraft=guarded, shards=shards)


def lines(i: int) -> list[tuple[str, str, int]]:
    """The (role, side, amount) lines of request ``i`` (a capture: of its hold, i - 1).

    A cycle of four: issue points to a member and CNY to the partner; hold a redemption;
    capture it; redeem at once. Each books five postings in two units, and no guarded
    account is ever short.
    """
    member = f"m{(i // 4) % 3}"
    phase = i % 4
    if phase == 0:
        return [("issued", "D", 100), (member, "C", 100),
                ("bank", "D", 700), ("partner", "C", 690), ("fees", "C", 10)]
    if phase in (1, 2):
        return [(member, "D", 30), ("shop", "C", 30),
                ("bank", "D", 210), ("partner", "C", 200), ("fees", "C", 10)]
    return [(member, "D", 40), ("issued", "C", 40),
            ("partner", "D", 280), ("bank", "C", 270), ("fees", "C", 10)]


def key(prefix: str, i: int) -> IdempotencyKey:
    return IdempotencyKey(prefix, f"request-{i}")


def book(session, prefix: str, i: int, pending_id=None):
    """Send request ``i``; a capture (i % 4 == 2) needs the id of hold i - 1."""
    c = codes(prefix)
    phase = i % 4
    if phase == 2:
        return capture(session, pending_id, idempotency=key(prefix, i))
    entries = [Entry(c[role], side, amount) for role, side, amount in lines(i)]
    if phase == 1:
        return hold(session, entries, kind="redemption", reference=prefix,
                    idempotency=key(prefix, i))
    return post(session, entries, kind="issue" if phase == 0 else "redemption",
                reference=prefix, idempotency=key(prefix, i))


def expected_totals(prefix: str, committed: int) -> dict[str, list[int]]:
    """Per account code: [debits posted, credits posted, debits pending, credits pending]
    after requests 0 .. committed - 1."""
    totals = {role: [0, 0, 0, 0] for role in ROLES}
    for i in range(committed):
        phase = i % 4
        for role, side, amount in lines(i):
            column = 0 if side == "D" else 1
            if phase == 1:
                totals[role][2 + column] += amount
            else:
                totals[role][column] += amount
                if phase == 2:
                    totals[role][2 + column] -= amount
    c = codes(prefix)
    return {c[role]: t for role, t in totals.items()}


def batch_reference(prefix: str) -> str:
    return f"{prefix}:batch"


def batch_item(prefix: str, j: int) -> Booking:
    c = codes(prefix)
    member = c[f"m{j % 3}"]
    return Booking((Entry(c["issued"], "D", 1), Entry(member, "C", 1),
                    Entry(c["bank"], "D", 3), Entry(c["partner"], "C", 2),
                    Entry(c["fees"], "C", 1)),
                   kind="batch", reference=batch_reference(prefix),
                   idempotency=IdempotencyKey(batch_reference(prefix), f"item-{j}"))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    from sqlalchemy.orm import sessionmaker

    from app.db import make_engine
    from ledger.unit_of_work import run

    url, prefix, mode = argv[1], argv[2], argv[3]
    engine = make_engine(url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    run(sessions, lambda s: open_accounts(s, prefix))
    say("ready")

    before = None if mode == "loop" else int(argv[4])
    pending_id = None
    i = 0
    while before is None or i < before:
        record = run(sessions, lambda s, i=i, pending_id=pending_id: book(s, prefix, i, pending_id))
        if i % 4 == 1:
            pending_id = record.id
        say(f"committed {i} {record.id}")
        i += 1

    size = int(argv[5])

    def batch(session):
        say("batch started")
        if mode == "post_many":
            post_many(session, [batch_item(prefix, j) for j in range(size)])
        else:
            for j in range(size):
                b = batch_item(prefix, j)
                post(session, b.entries, kind=b.kind, reference=b.reference,
                     idempotency=b.idempotency)
                if j + 1 == size // 2:
                    say("batch half")
        say("batch written")
        sys.stdin.readline()  # the parent kills us here, before the COMMIT

    run(sessions, batch)
    say("batch committed")


if __name__ == "__main__":
    main(sys.argv)
