"""A real service for end-to-end tests: migrate, keys, demo seed, gunicorn.

``serve(home, database_url)`` prepares and starts one; the SQLite tests use a file of
their own, the PostgreSQL ones a database of their own on the suite's server (the demo's
partner ids are fixed, so they must not share the suite's database).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(env, *args, check=True):
    result = subprocess.run([str(BIN / "pointclear"), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"pointclear {' '.join(args)}: {result.stdout}{result.stderr}")
    return result


@contextmanager
def serve(home: Path, database_url: str, *, workers: int = 2):
    """Yield (env, url) of a seeded gunicorn on a free port; stop it afterwards."""
    env = {**os.environ, "POINTCLEAR_DATABASE_URL": database_url,
           "POINTCLEAR_SIGNING_KEY": str(home / "signing-key.pem"),
           "POINTCLEAR_DATA_KEY": str(home / "data-key"),
           # Webhook receivers in these tests listen on 127.0.0.1 over plain http.
           "POINTCLEAR_WEBHOOK_DEV_TARGETS": "1"}
    for args in (("db", "upgrade"), ("keys", "init"), ("demo", "seed")):
        cli(env, *args)
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "wsgi:application"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # poll until it answers: the server's own readiness, not a fixed sleep
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not start: {process.stderr.read()!r}")
            time.sleep(0.1)
    try:
        yield env, url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory, engine, is_postgres):
    """A seeded gunicorn on a PostgreSQL database of its own (PostgreSQL runs only)."""
    if not is_postgres:
        pytest.skip("needs PostgreSQL: set POINTCLEAR_TEST_DATABASE_URL")
    url = make_url(engine.url.render_as_string(hide_password=False))
    name = f"{url.database}_e2e"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    home = tmp_path_factory.mktemp("e2e-pg")
    try:
        with serve(home, url.set(database=name).render_as_string(hide_password=False)) as (
                env, base_url):
            yield env, base_url, home
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
