"""Real threads at once, for the concurrency tests (PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

BARRIER_TIMEOUT = 60  # seconds; only ever reached if a thread is stuck
RESULT_TIMEOUT = 180


def race(n: int, worker):
    """Run ``worker(i, barrier)`` in ``n`` real threads at once; return their results.

    The barrier lines the threads up (call ``barrier.wait()`` right before the contended
    step; it can be reused for several rounds). If a thread fails, the barrier is broken so
    that the others stop waiting, and the first failure is re-raised here.
    """
    barrier = threading.Barrier(n, timeout=BARRIER_TIMEOUT)

    def guarded(i):
        try:
            return worker(i, barrier)
        except BaseException:
            barrier.abort()
            raise

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="race") as pool:
        futures = [pool.submit(guarded, i) for i in range(n)]
        return [f.result(timeout=RESULT_TIMEOUT) for f in futures]
