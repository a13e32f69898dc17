"""Direct redemptions three ways -- plain SQL, the clearing domain, the signed HTTP API.

Run on demand (``make bench`` runs it after ledger_post.py), never by the test suite. It
DROPS and recreates the database named by PG_BENCH_URL (default
postgresql://postgres@127.0.0.1:5432/pointclear_bench; the name must contain "bench"),
migrates it with ``app.db.upgrade`` and books DESIGN.md's cast through the domain:
BankA owns program BANKA (0.01 CNY a point), MegaMart redeems BANKA under a redemption
agreement (0.01 CNY a point, 2 % clearing fee), and --members members, each enrolled at
BankA and linked at MegaMart, are issued --funding points (one lot each). Then it
measures MegaMart redeeming --points points of a member, one redemption per database
transaction, at each of --threads, three ways:

(a) plain SQL, the baseline: psycopg only (no SQLAlchemy, no ledger/ or app/ code), one
    connection per thread, what a redemption must write and nothing it could read first:
    the ledger idempotency record (ON CONFLICT DO NOTHING RETURNING), the transaction, its
    postings in one multi-row INSERT, the member's guarded balance row by one conditional
    UPDATE (the guard in its WHERE), the sharded unguarded rows (program:BANKA:redeemed,
    both positions, platform:fees) by executemany on a random shard in account order, the
    clearing_operations row and the lot move. Statement shapes from bench/plain_sql.py;
(b) the domain: ``app.clearing.redemptions.redeem`` through ``ledger.unit_of_work.run``
    with an idempotency key, on ``app.db.make_engine`` with a pool of as many connections
    as threads;
(c) HTTP in-process: a signed ``POST /v1/redemptions`` with an ``Idempotency-Key``
    through the Flask test client (one per thread) of ``create_app``: signature check,
    nonce store, Idempotency-Key store, the same domain call, the response. Requests are
    signed before a slice starts (a partner signs on its own machine).

Each thread redeems for its own members. A side's figure is the median of --slices
slices of --ops/--slices redemptions, run interleaved ABBA (a b c, c b a, ...), and is
printed with its ratio to (a) from the same run: on a shared machine only ratios mean
much. Then one line says where (c)'s time goes against (b) (a single-thread sample with
the signature check, Idempotency-Key steps, domain call and response timed apart), the
books are verified (``ledger.verify``, and every member's lots against its balance), and
the last line is one JSON object with every figure. ``--profile`` also runs pyinstrument
over a small single-thread sample and prints its report.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# bench/ is on sys.path as this script's directory. The baseline uses only these and psycopg.
from plain_sql import (
    _POSTING_VALUES,
    ADD_TO_TOTALS,
    INSERT_IDEMPOTENCY,
    INSERT_POSTING,
    INSERT_TRANSACTION,
    _in_transaction,
    uuid7,
)

URL = os.environ.get("PG_BENCH_URL", "postgresql://postgres@127.0.0.1:5432/pointclear_bench")
ISSUER, REDEEMER, PROGRAM, CURRENCY = "banka", "megamart", "BANKA", "CNY"
VALUE_PER_POINT, FEE_RATE = Decimal("0.01"), Decimal("0.02")
SIDES = ("plain", "domain", "http")
LABELS = {"plain": "(a) plain SQL", "domain": "(b) domain redeem",
          "http": "(c) HTTP POST /v1/redemptions"}
WARM_UP_PER_THREAD = 10
_SEQ = itertools.count()


def new_key(side: str) -> str:
    return f"{side}-{next(_SEQ)}"


@dataclass(frozen=True, slots=True)
class Member:
    ref: str  # MegaMart's customer reference
    member_id: str
    account_id: int  # member:{id}:BANKA, guarded
    lot_id: int  # the one lot the funding opened


# --- (a) the baseline: psycopg only --------------------------------------------------------------

GUARDED_DEBIT = (
    "UPDATE ledger_balances SET debits_posted = debits_posted + %s::BIGINT "
    "WHERE account_id = %s::BIGINT AND shard = 0 AND NOT (frozen OR closed) "
    "AND credits_posted - debits_posted - debits_pending >= %s::BIGINT")
INSERT_OPERATION = (
    "INSERT INTO clearing_operations (id, kind, partner_id, counterparty_id, member_id, "
    "program_code, points, currency, gross, fee, agreement_id, terms_id, created_at) VALUES "
    "(%s::UUID, %s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::VARCHAR, %s::BIGINT, "
    "%s::VARCHAR, %s::BIGINT, %s::BIGINT, %s::VARCHAR, %s::INTEGER, %s::TIMESTAMPTZ)")
INSERT_LOT_MOVE = (
    "INSERT INTO clearing_lot_moves (lot_id, transaction_id, kind, points) "
    "VALUES (%s::BIGINT, %s::UUID, %s::VARCHAR, %s::BIGINT)")
INSERT_POSTINGS = {n: INSERT_POSTING + ", " * (n > 1) + ", ".join([_POSTING_VALUES] * (n - 1))
                   for n in range(1, 6)}


@dataclass(frozen=True, slots=True)
class PlainAccount:
    id: int
    code: str
    unit: str
    shards: int


@dataclass(frozen=True, slots=True)
class PlainCast:
    """What the baseline knows up front: the accounts and the agreement's terms."""

    redeemed: PlainAccount
    payer: PlainAccount  # the program owner's position
    redeemer: PlainAccount
    fees: PlainAccount
    agreement_id: str
    terms_id: int
    value_per_point: Decimal
    fee_rate: Decimal

    @classmethod
    def load(cls, conn) -> PlainCast:
        codes = [f"program:{PROGRAM}:redeemed", f"partner:{ISSUER}:position:{CURRENCY}",
                 f"partner:{REDEEMER}:position:{CURRENCY}", f"platform:fees:{CURRENCY}"]
        rows = conn.execute("SELECT id, code, unit, shards FROM ledger_accounts "
                            "WHERE code = ANY(%s::VARCHAR[])", (codes,)).fetchall()
        accounts = {r[1]: PlainAccount(*r) for r in rows}
        agreement_id, terms_id, value, fee = conn.execute(
            "SELECT a.id, t.id, t.value_per_point, t.fee_rate FROM clearing_agreements a "
            "JOIN clearing_agreement_terms t ON t.agreement_id = a.id "
            "WHERE a.kind = 'redemption' AND a.program_code = %s AND a.redeemer_id = %s "
            "ORDER BY t.version DESC LIMIT 1", (PROGRAM, REDEEMER)).fetchone()
        conn.commit()
        return cls(*(accounts[c] for c in codes), agreement_id, terms_id, Decimal(value),
                   Decimal(fee))


def _half_up(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_UP))


def _plain_fingerprint(member: Member, points: int) -> str:
    body = json.dumps({"operation": "redemption", "partner": REDEEMER, "member": member.member_id,
                       "program": PROGRAM, "points": points}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def plain_redeem(conn, cast: PlainCast, member: Member, points: int, key: str) -> None:
    """One redemption in its own transaction: the rows it must write, nothing read first."""
    def body(cur):
        txn_id, now = uuid7(), datetime.now(UTC)
        gross = _half_up(points * cast.value_per_point * 100)  # fen
        fee = _half_up(gross * cast.fee_rate)
        # The guard first: it locks the member's row, as the domain's lock_points does.
        cur.execute(GUARDED_DEBIT, (points, member.account_id, points))
        if cur.rowcount != 1:
            raise RuntimeError(f"member {member.member_id} has fewer than {points} points")
        cur.execute(INSERT_IDEMPOTENCY, (REDEEMER, key, _plain_fingerprint(member, points),
                                         txn_id, now))
        if cur.fetchone() is None:
            raise RuntimeError(f"idempotency key {key} already used")
        cur.execute(INSERT_TRANSACTION, (txn_id, "redemption", "posted", None, None, now, None,
                                         None, None))
        lines = [(member.account_id, "D", points, PROGRAM),
                 (cast.redeemed.id, "C", points, PROGRAM),
                 (cast.payer.id, "D", gross, CURRENCY),
                 (cast.redeemer.id, "C", gross - fee, CURRENCY),
                 (cast.fees.id, "C", fee, CURRENCY)]
        lines = [line for line in lines if line[2]]  # a zero fee books no line
        params = []
        for n, (account_id, side, amount, unit) in enumerate(lines):
            params += (txn_id, n, account_id, side, amount, unit)
        cur.execute(INSERT_POSTINGS[len(lines)], params)
        totals = []
        for account_id, side, amount, _ in lines[1:]:
            acc = next(a for a in (cast.redeemed, cast.payer, cast.redeemer, cast.fees)
                       if a.id == account_id)
            shard = secrets.randbelow(acc.shards) if acc.shards > 1 else 0
            totals.append((amount if side == "D" else 0, amount if side == "C" else 0, 0, 0,
                           acc.id, shard))
        cur.executemany(ADD_TO_TOTALS, sorted(totals, key=lambda t: (t[4], t[5])))
        cur.execute(INSERT_OPERATION, (txn_id, "redemption", REDEEMER, ISSUER, member.member_id,
                                       PROGRAM, points, CURRENCY, gross, fee, cast.agreement_id,
                                       cast.terms_id, now))
        cur.execute(INSERT_LOT_MOVE, (member.lot_id, txn_id, "spend", -points))

    _in_transaction(conn, body)


# --- setup: the cast, through the domain ---------------------------------------------------------

def code_state() -> dict:
    """Which code was measured: the commit and the files changed since, in the layers used."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], check=False, cwd=ROOT, capture_output=True,
                                  text=True, timeout=10).stdout.rstrip()
        except OSError:
            return ""

    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("ledger/*.py"), *ROOT.glob("app/**/*.py")]):
        digest.update(path.read_bytes())
    dirty = git("status", "--porcelain", "--", "ledger", "app", "migrations").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "code_sha256": digest.hexdigest()[:12],
            "uncommitted": [line[3:] for line in dirty]}


def seed(sessions, members: int, funding: int, public_key_hex: str) -> str:
    """Book the cast; return MegaMart's key id."""
    from app.clearing import agreements, operations, partners, programs
    from app.clearing import members as clearing_members
    from ledger import unit_of_work
    from ledger.types import utcnow

    since = utcnow() - timedelta(minutes=5)

    def cast(s):
        partners.onboard_partner(s, ISSUER, name="Bank A", industry="bank", roles={"issuer"},
                                 settlement_currency=CURRENCY)
        partners.onboard_partner(s, REDEEMER, name="MegaMart", industry="retail",
                                 roles={"redeemer"}, settlement_currency=CURRENCY)
        programs.create_program(s, PROGRAM, name="Bank A Points", owner_id=ISSUER,
                                expiry_months=24)
        programs.set_value(s, PROGRAM, VALUE_PER_POINT, currency=CURRENCY, effective_from=since)
        agreements.create_redemption(s, PROGRAM, REDEEMER, value_per_point=VALUE_PER_POINT,
                                     fee_rate=FEE_RATE, effective_from=since)
        return partners.add_key(s, REDEEMER, public_key_hex).id

    def enrol(s, i):
        clearing_members.enrol(s, ISSUER, f"c-{i}")
        token, _ = clearing_members.issue_token(s, ISSUER, f"c-{i}")
        clearing_members.enrol(s, REDEEMER, f"mm-{i}", member_token=token)
        operations.issue(s, ISSUER, f"c-{i}", PROGRAM, funding, idempotency_key=f"seed-{i}",
                         reference="bench funding")

    key_id = unit_of_work.run(sessions, cast)
    for start in range(0, members, 100):
        unit_of_work.run(sessions, lambda s, start=start: [
            enrol(s, i) for i in range(start, min(start + 100, members))])
    return key_id


def load_members(conn) -> list[Member]:
    rows = conn.execute(
        "SELECT k.customer_ref, k.member_id, a.id, l.id FROM clearing_member_links k "
        "JOIN ledger_accounts a ON a.code = 'member:' || k.member_id || ':' || %s "
        "JOIN clearing_lots l ON l.member_id = k.member_id AND l.program_code = %s "
        "WHERE k.partner_id = %s", (PROGRAM, PROGRAM, REDEEMER)).fetchall()
    conn.commit()
    return sorted((Member(*r) for r in rows), key=lambda m: int(m.ref.split("-")[1]))


# --- measuring --------------------------------------------------------------------------------

@dataclass
class Slice:
    ops: int
    seconds: float
    cpu: float  # this process's CPU seconds, all threads

    @property
    def rate(self) -> float:
        return self.ops / self.seconds


def run_slice(work: list[list]) -> Slice:
    """Thread i runs the steps ``work[i]`` (prepared beforehand), all starting together;
    the time runs until the last thread has finished."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(work) + 1)

    def body(steps):
        barrier.wait()
        try:
            for step in steps:
                step()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    workers = [threading.Thread(target=body, args=(steps,), daemon=True) for steps in work]
    for w in workers:
        w.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    barrier.wait()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return Slice(sum(map(len, work)), time.perf_counter() - t0, time.process_time() - cpu0)


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (i < n % parts) for i in range(parts)]


class Bench:
    """The three sides, their connections, clients and per-thread member cycles."""

    def __init__(self, url: str, members: list[Member], cast: PlainCast, app, signer,
                 key_id: str, threads: list[int], points: int):
        from ledger_post import conninfo
        from sqlalchemy.orm import sessionmaker

        from app.db import make_engine

        self.members, self.cast, self.app, self.points = members, cast, app, points
        self.signer, self.key_id = signer, key_id
        self.conns = [psycopg.connect(conninfo(url)) for _ in range(max(threads))]
        # As many pooled connections as threads, as bench/ledger_post.py does.
        self.engines = {n: make_engine(url, pool_size=n, max_overflow=0) for n in set(threads)}
        self.sessions = {n: sessionmaker(bind=e, expire_on_commit=False)
                         for n, e in self.engines.items()}
        self.clients = [app.test_client() for _ in range(max(threads))]
        self.cycles: dict = {}

    def close(self):
        for conn in self.conns:
            conn.close()
        for engine in self.engines.values():
            engine.dispose()
        self.app.extensions["pointclear.engine"].dispose()

    def _next_member(self, side: str, threads: int, i: int) -> Member:
        key = (side, threads, i)
        if key not in self.cycles:
            self.cycles[key] = itertools.cycle(self.members[i::threads])
        return next(self.cycles[key])

    def step(self, side: str, threads: int, i: int):
        """One prepared redemption for thread ``i`` of ``threads``: a zero-arg callable."""
        member, key, points = self._next_member(side, threads, i), new_key(side), self.points
        if side == "plain":
            conn, cast = self.conns[i], self.cast
            return lambda: plain_redeem(conn, cast, member, points, key)
        if side == "domain":
            sessions = self.sessions[threads]
            return lambda: domain_redeem(sessions, member.ref, points, key)
        body, headers = signed_request(self.signer, self.key_id, member.ref, points, key)
        client = self.clients[i]
        return lambda: http_redeem(client, body, headers)

    def work(self, side: str, threads: int, ops: int) -> list[list]:
        return [[self.step(side, threads, i) for _ in range(n)]
                for i, n in enumerate(split(ops, threads))]

    def slice(self, side: str, threads: int, ops: int) -> Slice:
        return run_slice(self.work(side, threads, ops))


def domain_redeem(sessions, ref: str, points: int, key: str) -> None:
    from app.clearing import redemptions
    from ledger import unit_of_work

    unit_of_work.run(sessions, lambda s: redemptions.redeem(
        s, REDEEMER, ref, PROGRAM, points, idempotency_key=key), idempotent=True)


def signed_request(signer, key_id: str, ref: str, points: int, key: str):
    """The body and headers of one POST /v1/redemptions, signed as a partner signs."""
    from app.api import signatures

    body = json.dumps({"customer_ref": ref, "program": PROGRAM, "points": points},
                      separators=(",", ":")).encode()
    timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(16)
    digest = signatures.content_digest(body)
    message = signatures.canonical_message("POST", "/v1/redemptions", "", timestamp, nonce,
                                           digest)
    return body, {"Content-Type": "application/json", "Idempotency-Key": key,
                  "Pointclear-Key-Id": key_id, "Pointclear-Timestamp": timestamp,
                  "Pointclear-Nonce": nonce, "Content-Digest": digest,
                  "Pointclear-Signature": base64.b64encode(signer.sign(message)).decode()}


def http_redeem(client, body: bytes, headers: dict) -> None:
    response = client.post("/v1/redemptions", data=body, headers=headers)
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/redemptions: HTTP {response.status_code} "
                           f"{response.get_data(as_text=True)[:300]}")


# --- where (c)'s time goes ----------------------------------------------------------------------

class StepTimer:
    """Wrap module attributes so each call's wall time adds to a named total of the
    side being timed (``self.side``)."""

    def __init__(self):
        self.side = ""
        self.totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._undo: list = []

    def wrap(self, module, name: str, label: str) -> None:
        original = getattr(module, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[self.side][label] += time.perf_counter() - t0

        setattr(module, name, timed)
        self._undo.append((module, name, original))

    def restore(self) -> None:
        for module, name, original in reversed(self._undo):
            setattr(module, name, original)
        self._undo.clear()


def breakdown(bench: Bench, sample: int) -> dict:
    """Time the steps of (b) and (c) apart: ``sample`` redemptions each, one thread,
    alternating b c b c ... so that noise falls on both alike. It runs after the figures:
    the wrappers cost a little and must not touch them.

    Wall milliseconds per redemption. (c) = signature check + Idempotency-Key claim +
    its unit of work (the domain call, the response, the key's finish, commit) + the
    rest (Flask and werkzeug's test client, routing, the body schema, the request
    fingerprint). (b) = the domain call + its unit of work's session and commit.
    """
    from app.api import edge, idempotency, present, signatures
    from app.clearing import redemptions

    timer = StepTimer()
    for module, name, label in (
            (signatures, "authenticate", "signature"), (signatures, "_load_key", "key_lookup"),
            (signatures, "_remember_nonce", "nonce"), (signatures, "_maybe_purge", "purge"),
            (idempotency, "begin", "claim"), (idempotency, "finish", "finish"),
            (edge, "run", "unit"), (redemptions, "redeem", "redeem"),
            (present, "operation", "present")):
        timer.wrap(module, name, label)
    try:
        steps = {side: bench.work(side, 1, sample)[0] for side in ("domain", "http")}
        for pair in zip(steps["domain"], steps["http"]):
            for side, step in zip(("domain", "http"), pair):
                timer.side = side
                t0 = time.perf_counter()
                step()
                timer.totals[side]["total"] += time.perf_counter() - t0
    finally:
        timer.restore()
    out = {side: {k: round(v / sample * 1e3, 3) for k, v in totals.items()}
           for side, totals in timer.totals.items()}
    b, c = out["domain"], out["http"]
    b["commit_and_session"] = round(b["total"] - b["redeem"], 3)
    c["unit_commit_and_session"] = round(c["unit"] - c["redeem"] - c["present"] - c["finish"], 3)
    c["headers_digest_verify"] = round(
        c["signature"] - c["key_lookup"] - c["nonce"] - c.get("purge", 0), 3)
    c["flask_rest"] = round(c["total"] - c["signature"] - c["claim"] - c["unit"], 3)
    return out


def breakdown_line(bd: dict, sample: int) -> str:
    b, c = bd["domain"], bd["http"]
    extra = c["total"] - b["total"]
    parts = [("signature check", c["signature"],
              (f"key lookup {c['key_lookup']:.2f}, nonce txn {c['nonce']:.2f}, "
               f"headers+digest+Ed25519 {c['headers_digest_verify']:.2f}")),
             ("Idempotency-Key claim txn", c["claim"], None),
             ("key finish", c["finish"], None),
             ("response", c["present"], None),
             ("Flask+test client+schema", c["flask_rest"], None),
             ("domain+commit in (c) minus (b)",
              c["redeem"] + c["unit_commit_and_session"] - b["total"], None)]
    parts.sort(key=lambda p: -p[1])
    text = "; ".join(f"{name} {ms:.2f}" + (f" ({detail})" if detail else "")
                     for name, ms, detail in parts)
    return (f"where (c)'s time goes, 1 thread, ms per redemption (sample of {sample}): "
            f"(c) {c['total']:.2f} vs (b) {b['total']:.2f} (redeem {b['redeem']:.2f} + "
            f"commit/session {b['commit_and_session']:.2f}); (c)'s extra {extra:.2f}: {text}")


def profile(bench: Bench, side: str, sample: int) -> None:
    """pyinstrument over ``sample`` single-thread redemptions of one side, to stdout."""
    from pyinstrument import Profiler

    steps = bench.work(side, 1, sample)[0]
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for step in steps:
        step()
    profiler.stop()
    print(f"\n--- pyinstrument: {sample} redemptions, {LABELS[side]}, 1 thread ---")
    print(profiler.output_text(unicode=True, color=False))


# --- checks and reporting ----------------------------------------------------------------------

def check_books(sessions, members: list[Member]) -> dict:
    """ledger.verify over both sides' rows; every member's lots against its balance."""
    from app.clearing import lots
    from ledger.balances import balance
    from ledger.verify import verify

    t0 = time.perf_counter()
    with sessions() as s:
        report = verify(s, check_signatures=False)
        wrong = [m.member_id for m in members if not lots.check_agrees(
            s, m.member_id, PROGRAM, balance(s, f"member:{m.member_id}:{PROGRAM}").available)]
    result = {"ok": report.ok and not wrong, "lots_disagree": len(wrong),
              "seconds": round(time.perf_counter() - t0, 2), **report.counts}
    print(f"books verified: {'ok' if report.ok else report.problems[:3]}; lots agree with "
          f"balances for {len(members) - len(wrong)} of {len(members)} members "
          f"({', '.join(f'{k} {v}' for k, v in report.counts.items())}; {result['seconds']} s)")
    if not result["ok"]:
        raise SystemExit("the books do not verify: the figures above are not to be trusted")
    return result


def print_table(results: dict, args, info: dict) -> None:
    print()
    print(f"redemptions of {args.points} points at {REDEEMER} ({info['postings']} postings "
          f"each) -- {info['server']}, {info['cores']} cores; {args.members} members; median "
          f"of {args.slices} ABBA-interleaved slices of {args.ops // args.slices}")
    print(f"{'':<40}{'ops/s':>9}{'vs (a)':>8}  slices (ops/s)")
    for n, sides in results.items():
        base = sides["plain"]["rate"]
        for side in SIDES:
            r = sides[side]
            label = f"{LABELS[side]}, {n} thread" + "s" * (n > 1)
            print(f"{label:<40}{r['rate']:>9.1f}{r['rate'] / base:>8.2f}  "
                  + " ".join(f"{x:.0f}" for x in r["slices"]), flush=True)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter,
                     argparse.ArgumentDefaultsHelpFormatter):
    pass


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="Environment: PG_BENCH_URL (the database to DROP and recreate; its name "
               "must contain 'bench'), BENCH_VERIFY=0 skips the verification. Defaults "
               "take about a minute on a 2-core machine.",
        formatter_class=_HelpFormatter)
    parser.add_argument("--members", type=int, default=200, help="members to redeem for")
    parser.add_argument("--funding", type=int, default=10_000,
                        help="points issued to each member first (one lot)")
    parser.add_argument("--points", type=int, default=50,
                        help="points per redemption (at 0.01 CNY and 2%% fee, fewer than 25 "
                             "round the fee to 0 fen: no fee line, 4 postings)")
    parser.add_argument("--ops", type=int, default=480,
                        help="redemptions per side and thread count, over all slices")
    parser.add_argument("--threads", default="1,4", help="comma-separated thread counts")
    parser.add_argument("--slices", type=int, default=6,
                        help="slices per side, run interleaved a b c, c b a, ...")
    parser.add_argument("--sample", type=int, default=100,
                        help="single-thread redemptions per side for the time breakdown")
    parser.add_argument("--profile", nargs="?", const="http", choices=("http", "domain"),
                        help="also profile SIDE (default http) with pyinstrument over "
                             "--sample single-thread redemptions and print the report")
    args = parser.parse_args()
    args.threads = sorted({int(t) for t in args.threads.split(",")})
    if (min(args.members, args.funding, args.points, args.ops, args.slices, args.sample,
            *args.threads) < 1 or args.ops < args.slices or max(args.threads) > args.members):
        parser.error("every count must be positive, --ops >= --slices, threads <= members")
    # The most any one member is asked for: each (side, thread count) cycles over its
    # thread's members; one thread also runs the warm-up, sample and profile.
    worst = 0
    for n in args.threads:
        per_thread = args.ops + WARM_UP_PER_THREAD * n
        if n == 1:
            per_thread += args.sample * (2 if args.profile else 1)
        worst += len(SIDES) * math.ceil(math.ceil(per_thread / n) / (args.members // n))
    if worst * args.points > args.funding:
        parser.error(f"a member may be asked for {worst * args.points} points, more than "
                     f"--funding {args.funding}: raise --funding or --members, or lower --ops")
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from ledger_post import analyze, conninfo, recreate_database
    from sqlalchemy.orm import sessionmaker

    from app import create_app
    from app.clearing.crypto import create_data_key
    from app.db import make_engine, upgrade

    recreate_database(URL)
    upgrade(URL)
    setup_engine = make_engine(URL)
    sessions = sessionmaker(bind=setup_engine, expire_on_commit=False)
    signer = Ed25519PrivateKey.generate()
    raw = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = seed(sessions, args.members, args.funding, raw.hex())
    with psycopg.connect(conninfo(URL)) as conn:
        members, cast = load_members(conn), PlainCast.load(conn)
        analyze(conn)
        version = conn.execute("SHOW server_version").fetchone()[0]
    gross = _half_up(args.points * cast.value_per_point * 100)
    info = {"server": f"PostgreSQL {version.split()[0]}", "cores": os.cpu_count(),
            "postings": 5 if _half_up(gross * cast.fee_rate) else 4, "code": code_state(),
            "setup_seconds": round(time.perf_counter() - started, 1)}
    dirty = info["code"]["uncommitted"]
    print(f"setup: {len(members)} members with {args.funding} {PROGRAM} points each in "
          f"{info['setup_seconds']} s; code at {info['code']['commit']}"
          + (f" + uncommitted {dirty}" if dirty else ""), flush=True)

    with tempfile.TemporaryDirectory(prefix="pointclear-bench-") as tmp:
        create_data_key(Path(tmp) / "data-key")
        app = create_app({"DATABASE_URL": URL, "SIGNING_KEY": str(Path(tmp) / "signing-key.pem"),
                          "DATA_KEY": str(Path(tmp) / "data-key")})
        bench = Bench(URL, members, cast, app, signer, key_id, args.threads, args.points)
        try:
            for n in args.threads:  # connections opened, statements prepared, caches warm
                for side in SIDES:
                    bench.slice(side, n, WARM_UP_PER_THREAD * n)
            analyze(bench.conns[0])
            slices: dict = {n: defaultdict(list) for n in args.threads}
            per_slice = split(args.ops, args.slices)
            for n in args.threads:
                for k in range(args.slices):
                    for side in (SIDES if k % 2 == 0 else SIDES[::-1]):
                        slices[n][side].append(bench.slice(side, n, per_slice[k]))
                base = statistics.median(s.rate for s in slices[n]["plain"])
                print(f"  {n} thread(s): " + ", ".join(
                    f"{side} {statistics.median(s.rate for s in slices[n][side]):.1f}/s "
                    f"({statistics.median(s.rate for s in slices[n][side]) / base:.2f})"
                    for side in SIDES), flush=True)
            results = {n: {side: {
                "rate": round(statistics.median(s.rate for s in runs), 1),
                "slices": [round(s.rate, 1) for s in runs],
                "ops": sum(s.ops for s in runs),
                "seconds": round(sum(s.seconds for s in runs), 2),
                "cpu_ms_per_op": round(sum(s.cpu for s in runs) / sum(s.ops for s in runs)
                                       * 1e3, 2)} for side, runs in by_side.items()}
                for n, by_side in slices.items()}
            for sides in results.values():
                for side in SIDES:
                    sides[side]["ratio"] = round(sides[side]["rate"] / sides["plain"]["rate"], 3)
            bd = breakdown(bench, args.sample)
            print_table(results, args, info)
            print(breakdown_line(bd, args.sample), flush=True)
            if args.profile:
                profile(bench, args.profile, args.sample)
            check = None
            if os.environ.get("BENCH_VERIFY", "1") != "0":
                check = check_books(sessions, members)
        finally:
            bench.close()
            setup_engine.dispose()
    summary = {"date": date.today().isoformat(), **info, "members": args.members,
               "funding": args.funding, "points": args.points, "ops": args.ops,
               "slices": args.slices, "threads": args.threads,
               "statistic": "median of ABBA-interleaved slices",
               "figures": {str(n): r for n, r in results.items()},
               "breakdown_ms_per_op": bd, "verify": check,
               "total_seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
