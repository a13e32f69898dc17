"""Webhook fixtures: a real HTTP receiver on 127.0.0.1, the platform key, a committed
cast whose deliveries no other test's worker touches, and an independent verifier of
the signature format (written from the README, not from the server's code).

The receivers are on this machine, which production refuses to POST to: apps made in
these tests allow development targets (POINTCLEAR_WEBHOOK_DEV_TARGETS=1), and the
domain calls and worker rounds here pass ``dev_targets=True``. The tests of the rules
themselves turn it off (test_targets.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from app.clearing import webhooks
from app.clearing.webhook_models import WebhookDelivery, WebhookEvent
from ledger.types import utcnow
from ledger.unit_of_work import run
from tests.api.conftest import api, cast  # noqa: F401  (the signed API clients)
from tests.clearing.conftest import World, build_world

from . import endpoints


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    status: int

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers POSTs with 204, or with ``fail_status`` for the first ``fail_first[path]``
    requests to a path; records every request, and in ``overlaps`` every request that
    arrived while another of the same event to the same path was still being answered."""

    url: str
    requests: list = field(default_factory=list)
    fail_first: dict = field(default_factory=dict)
    fail_status: int = 500
    delay: float = 0.0  # seconds each answer takes (to make concurrent workers overlap)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: dict = field(default_factory=dict)
    overlaps: list = field(default_factory=list)

    def ok(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300
                and (path is None or r.path == path)]

    def answer(self, path: str) -> int:
        with self.lock:
            seen = sum(1 for r in self.requests if r.path == path)
            return self.fail_status if seen < self.fail_first.get(path, 0) else 204


@pytest.fixture(autouse=True)
def dev_targets(monkeypatch):
    """Apps created in these tests (``api``, ``app``) send to local receivers."""
    monkeypatch.setenv("POINTCLEAR_WEBHOOK_DEV_TARGETS", "1")


def _serve(state: Receiver, tls: ssl.SSLContext | None = None):
    """Start a receiver answering for ``state`` (over TLS with ``tls``); returns its
    stop function."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802  (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = state.answer(self.path)
            sent = (self.path, self.headers.get("Pointclear-Webhook-Id"))
            with state.lock:
                state.in_flight[sent] = state.in_flight.get(sent, 0) + 1
                if state.in_flight[sent] > 1:
                    state.overlaps.append(sent)
            if state.delay:
                time.sleep(state.delay)  # a slow endpoint, not synchronisation
            with state.lock:
                state.in_flight[sent] -= 1
                state.requests.append(Received(self.path, dict(self.headers), body, status))
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return stop


@pytest.fixture
def receiver():
    state = Receiver(url="")
    stop = _serve(state)
    yield state
    stop()


@pytest.fixture
def tls_receiver(tmp_path):
    """A receiver over TLS with a certificate for ``hooks.partner.test`` only, from a CA
    of its own; ``.client_context`` trusts that CA, ``.server_names`` records the SNI
    each handshake asked for."""
    state = Receiver(url="")
    tls, state.client_context = endpoints.tls_contexts(tmp_path, "hooks.partner.test")
    state.server_names = []
    tls.sni_callback = lambda _sock, name, _ctx: state.server_names.append(name)
    stop = _serve(state, tls)
    yield state
    stop()


@pytest.fixture
def dns(monkeypatch) -> endpoints.FakeDNS:
    """Made-up host names (``*.partner.test``) resolve as the test says; others as usual."""
    fake = endpoints.FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    return fake


@pytest.fixture(scope="session")
def platform_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def verify_webhook(public_key: Ed25519PublicKey, headers: dict, body: bytes) -> bool:
    """The receiver's check, from the documented format alone: Ed25519 over the UTF-8
    lines "pointclear-webhook-v1", event id, timestamp and the raw body, joined by \\n."""
    message = b"\n".join([b"pointclear-webhook-v1",
                          headers["Pointclear-Webhook-Id"].encode("utf-8"),
                          headers["Pointclear-Webhook-Timestamp"].encode("utf-8"), body])
    try:
        public_key.verify(base64.b64decode(headers["Pointclear-Webhook-Signature"],
                                           validate=True), message)
        return True
    except InvalidSignature:
        return False


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass
class Committed:
    """A cast committed to the suite's database, ids unique to the test."""

    world: World
    sessions: object

    def id(self, name: str) -> str:
        return self.world.id(name)

    @property
    def partners(self) -> list[str]:
        return [self.id(p) for p in ("banka", "skyair", "megamart", "telco")]

    def run(self, work):
        return run(self.sessions, work)

    def subscribe(self, partner: str, url: str, types=("*",)):
        return self.run(lambda s: webhooks.create_subscription(
            s, self.id(partner), url, list(types), dev_targets=True))

    def deliveries(self, **where) -> list[WebhookDelivery]:
        with self.sessions() as s:
            statement = select(WebhookDelivery).where(
                WebhookDelivery.partner_id.in_(self.partners))
            for name, value in where.items():
                statement = statement.where(getattr(WebhookDelivery, name) == value)
            return list(s.scalars(statement.order_by(WebhookDelivery.id)))

    def events(self) -> list[WebhookEvent]:
        with self.sessions() as s:
            return list(s.scalars(select(WebhookEvent).where(
                WebhookEvent.partner_id.in_(self.partners)).order_by(WebhookEvent.id)))


@pytest.fixture
def committed(sessions, unique) -> Committed:
    """The cast, and 5,000 BANKA points for member c-1 (issued before any test's
    subscription, so no delivery of that issue exists)."""
    from app.clearing import operations

    now = utcnow()

    def build(s):
        world = build_world(s, now, unique[:5])
        operations.issue(s, world.id("banka"), "c-1", world.id("BANKA"), 5_000, now=now)
        return world
    return Committed(run(sessions, build), sessions)
