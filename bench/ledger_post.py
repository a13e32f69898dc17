"""Ledger write path beside the same work in plain SQL, on PostgreSQL.

Run on demand (``make bench``), never by the test suite. It DROPS and recreates the
database named by PG_BENCH_URL (default postgresql://postgres@127.0.0.1:5432/pointclear_bench;
the name must contain "bench"), migrates it with ``app.db.upgrade``, opens 2000 guarded
member accounts funded generously and the system accounts, and then measures, in one run:

- single postings: one redemption (debit a member, credit ``program:BENCHPTS:redeemed``,
  16 shards) per database transaction, at 1, 4 and 16 threads, each thread on its own
  members. Ledger: ``unit_of_work.run`` around ``ledger.post`` with an idempotency key, on
  ``app.db.make_engine`` with a pool of as many connections as threads. Plain SQL
  (``bench/plain_sql.py``): psycopg, one connection per thread, the same statements;
- batches: 1000 redemptions per database transaction, one thread. Ledger:
  ``ledger.post_many`` in one unit of work. Plain SQL: the same statements set-wise (look
  up the keys, one SELECT of the accounts, one ordered lock of the guarded rows, one
  INSERT ... SELECT FROM unnest(arrays) per table, the totals summed per account shard). A third figure, plain SQL
  issuing the per-redemption statements 1000 times in one transaction, is a reference:
  it separates the cost of round trips from the cost of Python;
- the hot row: 16 ledger threads crediting a system account of 1 shard vs 16 shards.

Noise: the machine is shared, so each measurement is cut into SLICES slices per side,
run interleaved in ABBA order (L P P L L P ...), and a side's figure is the median of its
slices. Ratios compare slices taken seconds apart; absolute figures mean little.
At the end ``ledger.verify`` checks the books, rows of both sides included.

The last line of output is one JSON object with every figure.

Options: ``--profile ledger|plain`` sets up, then runs only the single-thread loop of one
side, in the main thread, for BENCH_PROFILE_SECONDS (run it under ``py-spy record``), or
profiles it in-process with ``--pyinstrument``. Environment: BENCH_SLICE_SECONDS (2),
BENCH_SLICES (6), BENCH_VERIFY=0 skips the verification.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

import ledger  # noqa: E402
from app.db import make_engine, normalise_url, upgrade  # noqa: E402
from ledger import unit_of_work  # noqa: E402
from ledger.idempotency import IdempotencyKey  # noqa: E402
from ledger.verify import verify  # noqa: E402
from plain_sql import SCOPE, plain_batch, plain_batch_statements, plain_single  # noqa: E402

URL = os.environ.get("PG_BENCH_URL", "postgresql://postgres@127.0.0.1:5432/pointclear_bench")
SLICE_SECONDS = float(os.environ.get("BENCH_SLICE_SECONDS", "2"))
SLICES = int(os.environ.get("BENCH_SLICES", "6"))
PROFILE_SECONDS = float(os.environ.get("BENCH_PROFILE_SECONDS", "10"))
THREADS = (1, 4, 16)
HOT_THREADS = 16
MEMBERS = 2000
BATCH = 1000
TARGET = 0.7
UNIT = "BENCHPTS"
ISSUED = f"program:{UNIT}:issued"
REDEEMED = f"program:{UNIT}:redeemed"  # 16 shards
HOT = f"program:{UNIT}:redeemed-1shard"  # 1 shard: the hot-row demonstration
FUNDING = 10**11  # per member; a redemption takes 1-100
MEMBER_CODES = [f"member:{i}:{UNIT}" for i in range(MEMBERS)]
_SEQ = itertools.count()


def new_key(tag: str) -> str:
    return f"{tag}-{next(_SEQ)}"


# --- the database ---------------------------------------------------------------------------

def conninfo(url: str) -> str:
    """The URL as psycopg wants it (no ``+psycopg`` driver suffix)."""
    return make_url(normalise_url(url)).set(drivername="postgresql").render_as_string(
        hide_password=False)


def recreate_database(url: str) -> None:
    parsed = make_url(normalise_url(url))
    if "bench" not in (parsed.database or ""):
        sys.exit(f"refusing to drop {parsed.database!r}: a bench database's name has 'bench'")
    with psycopg.connect(conninfo(str(parsed.set(database="postgres"))), autocommit=True) as c:
        name = sql.Identifier(parsed.database)
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        c.execute(sql.SQL("CREATE DATABASE {}").format(name))


def open_books(sessions) -> None:
    def accounts(s):
        ledger.open_account(s, ISSUED, UNIT, shards=16)
        ledger.open_account(s, REDEEMED, UNIT, shards=16)
        ledger.open_account(s, HOT, UNIT, shards=1)
        for code in MEMBER_CODES:
            ledger.open_account(s, code, UNIT, no_overdraft=True)

    def fund(s):
        # One ordinary two-line transaction per member, not one 2001-line transaction:
        # the planner statistics taken next must look like a real ledger's. (With one
        # transaction id in ledger_postings, the deferred balance trigger's lookup by
        # transaction_id gets a sequential-scan generic plan: 25 s per 1000-posting batch
        # instead of 0.3 s, measured.)
        for code in MEMBER_CODES:
            ledger.post(s, [ledger.debit(ISSUED, FUNDING), ledger.credit(code, FUNDING)],
                        kind="issue")

    unit_of_work.run(sessions, accounts)
    unit_of_work.run(sessions, fund)


# --- the ledger side ----------------------------------------------------------------------------

def ledger_post(s, member: str, system: str, amount: int, key: str):
    return ledger.post(s, [ledger.debit(member, amount), ledger.credit(system, amount)],
                       kind="redemption", idempotency=IdempotencyKey(SCOPE, key))


def ledger_single(sessions, member, system, amount, key) -> int:
    unit_of_work.run(sessions, lambda s: ledger_post(s, member, system, amount, key))
    return 1


def ledger_batch(sessions, members, system, amounts, keys) -> int:
    bookings = [ledger.Booking([ledger.debit(member, amount), ledger.credit(system, amount)],
                               "redemption", IdempotencyKey(SCOPE, key))
                for member, amount, key in zip(members, amounts, keys)]
    unit_of_work.run(sessions, lambda s: ledger.post_many(s, bookings))
    return len(members)


# --- measuring ----------------------------------------------------------------------------------

@dataclass
class Run:
    postings: int
    seconds: float
    cpu: float  # this process's CPU seconds, all threads

    @property
    def rate(self) -> float:
        return self.postings / self.seconds


def measure(threads: int, seconds: float, step_for) -> Run:
    """Each of ``threads`` threads runs ``step_for(i)()`` until ``seconds`` have passed.

    A step books some postings and returns how many; every thread does at least one. The
    time runs from the start until the last thread has finished its last step.
    """
    steps = [step_for(i) for i in range(threads)]
    counts = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]

    def body(i):
        barrier.wait()
        try:
            while True:
                counts[i] += steps[i]()
                if time.perf_counter() >= deadline[0]:
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    workers = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline[0] = t0 + seconds
    barrier.wait()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return Run(sum(counts), time.perf_counter() - t0, time.process_time() - cpu0)


class Bench:
    """Engines, connections and the step functions of every measurement."""

    def __init__(self, url: str):
        # As many pooled connections as threads: the same number of server backends as
        # the plain-SQL side (a larger FIFO pool would rotate over idle backends).
        self.engines = {n: make_engine(url, pool_size=n, max_overflow=0)
                        for n in sorted({1, *THREADS, HOT_THREADS})}
        self.sessions = {n: sessionmaker(bind=e, expire_on_commit=False)
                         for n, e in self.engines.items()}
        self.conns = [psycopg.connect(conninfo(url)) for _ in range(max(THREADS))]
        self.batch_no = 0

    def close(self):
        for conn in self.conns:
            conn.close()
        for engine in self.engines.values():
            engine.dispose()

    def single(self, side: str, threads: int, system: str = REDEEMED):
        """step_for(i): one redemption per step; thread i cycles over its own members."""
        def step_for(i):
            members, rng, tag = MEMBER_CODES[i::threads], random.Random(), f"{side}{threads}.{i}"
            k = rng.randrange(len(members))
            cycle = itertools.cycle(members[k:] + members[:k])
            if side == "ledger":
                sessions = self.sessions[threads]
                return lambda: ledger_single(sessions, next(cycle), system,
                                             rng.randint(1, 100), new_key(tag))
            conn = self.conns[i]
            return lambda: plain_single(conn, next(cycle), system, rng.randint(1, 100),
                                        new_key(tag))
        return step_for

    def batch(self, side: str):
        """step_for(0): one batch of BATCH redemptions of distinct members per step."""
        book = {"ledger": lambda *a: ledger_batch(self.sessions[1], *a),
                "plain": lambda *a: plain_batch(self.conns[0], *a),
                "plain_stmt": lambda *a: plain_batch_statements(self.conns[0], *a)}[side]

        def step():
            start = (self.batch_no * BATCH) % MEMBERS
            self.batch_no += 1
            members = (MEMBER_CODES * 2)[start:start + BATCH]
            amounts = [random.randint(1, 100) for _ in members]
            return book(members, REDEEMED, amounts, [new_key(f"b{side}") for _ in members])
        return lambda i: step

    def warm_up(self):
        """Open every connection and let psycopg prepare the statements on each."""
        for n in THREADS:
            for side in ("ledger", "plain"):
                measure(n, 0.4, self.single(side, n))
        for side in ("ledger", "plain", "plain_stmt"):
            measure(1, 0, self.batch(side))
        analyze(self.conns[0])  # fresh statistics, as autovacuum would keep them


@dataclass
class Figure:
    name: str
    label: str
    sides: dict  # side -> callable returning a Run
    slices: dict = field(default_factory=dict)  # side -> [Run]

    def median(self, side) -> float:
        return statistics.median(r.rate for r in self.slices[side])

    def cpu_us(self, side) -> float:
        runs = self.slices[side]
        return sum(r.cpu for r in runs) / sum(r.postings for r in runs) * 1e6


def figures(bench: Bench) -> list[Figure]:
    out = [Figure(f"single_{n}", f"single postings, {n} thread" + "s" * (n > 1),
                  {side: (lambda n=n, side=side: measure(n, SLICE_SECONDS, bench.single(side, n)))
                   for side in ("ledger", "plain")}) for n in THREADS]
    out.append(Figure("batch", f"batch of {BATCH}, 1 thread",
                      {side: (lambda side=side: measure(1, 0, bench.batch(side)))
                       for side in ("ledger", "plain", "plain_stmt")}))
    out.append(Figure("hot_row", f"hot row, {HOT_THREADS} threads, ledger",
                      {f"shards_{k}": (lambda system=system: measure(
                          HOT_THREADS, SLICE_SECONDS, bench.single("ledger", HOT_THREADS, system)))
                       for k, system in ((1, HOT), (16, REDEEMED))}))
    return out


def run_all(bench: Bench) -> list[Figure]:
    """Every figure, its sides' slices interleaved ABBA so noise falls on all alike."""
    figs = figures(bench)
    for fig in figs:
        sides = list(fig.sides)
        for k in range(SLICES):
            for side in (sides if k % 2 == 0 else sides[::-1]):
                fig.slices.setdefault(side, []).append(fig.sides[side]())
        for side in sides:
            rates = " ".join(f"{r.rate:.0f}" for r in fig.slices[side])
            print(f"  {fig.name:<10} {side:<10} median {fig.median(side):7.1f}/s  "
                  f"slices {rates}  ({fig.cpu_us(side):.0f} us client CPU/posting)", flush=True)
    return figs


# --- reporting ------------------------------------------------------------------------------------

def summarise(figs: list[Figure], info: dict) -> dict:
    out = {"date": date.today().isoformat(), **info, "slice_seconds": SLICE_SECONDS,
           "slices": SLICES, "members": MEMBERS, "batch_size": BATCH, "threads": list(THREADS),
           "hot_row_threads": HOT_THREADS, "statistic": "median of ABBA-interleaved slices",
           "targets": {"single_4": TARGET, "batch": TARGET}, "figures": {}}
    for fig in figs:
        entry = {side: {"rate": round(fig.median(side), 1),
                        "best": round(max(r.rate for r in runs), 1),
                        "slices": [round(r.rate, 1) for r in runs],
                        "postings": sum(r.postings for r in runs),
                        "seconds": round(sum(r.seconds for r in runs), 2),
                        "cpu_us_per_posting": round(fig.cpu_us(side), 1)}
                 for side, runs in fig.slices.items()}
        if fig.name.startswith("single_"):
            entry["threads"] = int(fig.name.split("_")[1])
        if "plain" in entry:
            entry["ratio"] = round(entry["ledger"]["rate"] / entry["plain"]["rate"], 3)
        if "plain_stmt" in entry:
            entry["ratio_vs_plain_stmt"] = round(
                entry["ledger"]["rate"] / entry["plain_stmt"]["rate"], 3)
        if fig.name == "hot_row":
            entry["threads"] = HOT_THREADS
            entry["ratio_16_over_1"] = round(
                entry["shards_16"]["rate"] / entry["shards_1"]["rate"], 3)
        out["figures"][fig.name] = entry
    f = out["figures"]
    out["pass"] = {"single_4": f["single_4"]["ratio"] >= TARGET,
                   "batch": f["batch"]["ratio"] >= TARGET}
    return out


def print_table(s: dict) -> None:
    f = s["figures"]

    def verdict(ratio):
        return f"  >= {TARGET:.2f} " + ("PASS" if ratio >= TARGET else "FAIL")

    def row(label, a, b, ratio, note=""):
        print(f"{label:<38}{a:>10.1f}{b:>13.1f}{ratio:>8.2f}{note}")

    print()
    print(f"ledger.post vs plain SQL -- {s['server']}, {s['cores']} cores; median of {SLICES} "
          f"interleaved slices ({SLICE_SECONDS:g} s, or one batch, each)")
    print(f"{'postings/second':<38}{'ledger':>10}{'plain SQL':>13}{'ratio':>8}  target")
    for n in THREADS:
        g = f[f"single_{n}"]
        row(f"single postings, {n} thread" + "s" * (n > 1), g["ledger"]["rate"],
            g["plain"]["rate"], g["ratio"], verdict(g["ratio"]) if n == 4 else "")
    g = f["batch"]
    row(f"batch of {BATCH}, 1 thread", g["ledger"]["rate"], g["plain"]["rate"], g["ratio"],
        verdict(g["ratio"]))
    row("  reference: plain SQL, stmt per posting", g["ledger"]["rate"],
        g["plain_stmt"]["rate"], g["ratio_vs_plain_stmt"], "  (not a target)")
    h = f["hot_row"]
    print(f"{f'hot row, {HOT_THREADS} threads, ledger':<38}{'1 shard':>10}{'16 shards':>13}"
          f"{'16/1':>8}")
    row("", h["shards_1"]["rate"], h["shards_16"]["rate"], h["ratio_16_over_1"])
    cpu = {name: {side: f"{v['cpu_us_per_posting']:.0f} us" for side, v in f[name].items()
                  if isinstance(v, dict)} for name in ("single_1", "batch")}
    print(f"client CPU per posting: single, 1 thread: ledger {cpu['single_1']['ledger']}, "
          f"plain {cpu['single_1']['plain']}; batch: ledger {cpu['batch']['ledger']}, "
          f"plain {cpu['batch']['plain']}, plain stmt {cpu['batch']['plain_stmt']}")


def check_books(sessions) -> dict:
    t0 = time.perf_counter()
    with sessions() as s:
        report = verify(s, check_signatures=False)
    result = {"ok": report.ok, "seconds": round(time.perf_counter() - t0, 2), **report.counts}
    print(f"books verified: {'ok' if report.ok else report.problems[:3]} "
          f"({', '.join(f'{k} {v}' for k, v in report.counts.items())}; {result['seconds']} s)")
    if not report.ok:
        raise SystemExit("the books do not verify: the figures above are not to be trusted")
    return result


def code_state() -> dict:
    """Which ledger was measured: the commit, files changed since, a hash of the code."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip()
        except OSError:
            return ""

    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("ledger/*.py"), ROOT / "app/db.py"]):
        digest.update(path.read_bytes())
    dirty = git("status", "--porcelain", "--", "ledger", "app", "migrations").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "code_sha256": digest.hexdigest()[:12],
            "uncommitted": [line[3:] for line in dirty]}


def analyze(conn) -> None:
    conn.execute("ANALYZE")
    conn.commit()


def setup(url: str) -> tuple[Bench, dict]:
    t0 = time.perf_counter()
    recreate_database(url)
    upgrade(url)
    bench = Bench(url)
    open_books(bench.sessions[1])
    analyze(bench.conns[0])
    version = bench.conns[0].execute("SHOW server_version").fetchone()[0]
    bench.conns[0].commit()
    info = {"server": f"PostgreSQL {version.split()[0]}", "cores": os.cpu_count(),
            "setup_seconds": round(time.perf_counter() - t0, 2), "code": code_state()}
    dirty = info["code"]["uncommitted"]
    print(f"setup: {MEMBERS} funded members and 3 system accounts in {info['setup_seconds']} s; "
          f"ledger at {info['code']['commit']}" + (f" + uncommitted {dirty}" if dirty else ""),
          flush=True)
    return bench, info


def profile(bench: Bench, side: str, with_pyinstrument: bool) -> None:
    """The single-thread loop of one side, in the main thread so profilers see it."""
    measure(1, 0.5, bench.single(side, 1))
    step = bench.single(side, 1)(0)
    profiler = None
    if with_pyinstrument:
        from pyinstrument import Profiler
        profiler = Profiler(interval=0.0005)
        profiler.start()
    count, cpu0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() < t0 + PROFILE_SECONDS:
        count += step()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False))
    print(f"{side}: {count / elapsed:.1f} postings/s, {cpu / count * 1e6:.0f} us client CPU each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=("ledger", "plain"),
                        help="only run the single-thread loop of one side (for profilers)")
    parser.add_argument("--pyinstrument", action="store_true",
                        help="with --profile: profile the loop with pyinstrument")
    args = parser.parse_args()
    started = time.perf_counter()
    bench, info = setup(URL)
    try:
        if args.profile:
            profile(bench, args.profile, args.pyinstrument)
            return
        bench.warm_up()
        summary = summarise(run_all(bench), info)
        print_table(summary)
        if os.environ.get("BENCH_VERIFY", "1") != "0":
            summary["verify"] = check_books(bench.sessions[1])
    finally:
        bench.close()
    summary["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
