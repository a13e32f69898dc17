"""Partner request signatures: the protocol, every refusal, nonces and their purge."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import jsonify, request
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from werkzeug.test import EnvironBuilder

from app import db
from app.api import signatures
from app.api.models import SeenNonce
from app.api.signatures import AuthError, auth_problem, authenticate, canonical_message
from app.clearing import partners
from app.clearing.errors import PartnerNotFound

from . import signing
from .signing import SignedClient, sign_headers


def _committed(app, work):
    """Run ``work(session)`` on the app's database and commit."""
    with app.app_context(), db.session_factory()() as session, session.begin():
        return work(session)


def _onboard(session, partner_id: str) -> None:
    partners.onboard_partner(session, partner_id, name="Bank A", industry="bank",
                             roles={"issuer"}, settlement_currency="CNY")


def _new_key(app, partner_id: str) -> tuple[Ed25519PrivateKey, str]:
    private_key = Ed25519PrivateKey.generate()
    public_key = signing.public_key_hex(private_key)
    key = _committed(app, lambda s: partners.add_key(s, partner_id, public_key))
    return private_key, key.id


@pytest.fixture
def api(app):
    """The app plus one signed test route that echoes who sent the request."""
    @app.route("/whoami/<path:rest>", methods=["GET", "POST"])
    def whoami(rest):
        partner_id, key_id = authenticate(db.session_factory(), request)
        return jsonify(partner=partner_id, key=key_id, body=request.get_data(as_text=True))

    app.register_error_handler(AuthError, auth_problem)
    _committed(app, lambda s: _onboard(s, "banka"))
    return app


@pytest.fixture
def banka(api) -> SignedClient:
    return SignedClient(api.test_client(), *_new_key(api, "banka"))


def _passes(response, client: SignedClient) -> dict:
    assert response.status_code == 200, response.json
    assert (response.json["partner"], response.json["key"]) == ("banka", client.key_id)
    return response.json


def _refused(response, code: str, header: str | None = None) -> None:
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Pointclear-Signature"
    assert (response.json["code"], response.json.get("field")) == (code, header)


def _send(client: SignedClient, method: str, path: str, headers, body: bytes = b""):
    return client.client.open(path, method=method, data=body, headers=headers)


def test_message_and_digest_are_as_documented_and_the_test_signer_agrees():
    assert signatures.content_digest(b"") == signing.EMPTY_BODY_DIGEST
    assert signatures.content_digest(b'{"a":1}') == signing.body_digest(b'{"a":1}')
    message = canonical_message("post", "/v1/m%C3%A9", "b=2", "1767225600", "n" * 16,
                                signing.body_digest(b"{}"))
    assert message == (b"pointclear-v1\nPOST\n/v1/m%C3%A9\nb=2\n1767225600\n" + b"n" * 16
                       + b"\n" + signing.body_digest(b"{}").encode())
    private_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    headers = sign_headers(private_key, "key_1", "post", "/v1/m%C3%A9", "b=2", b"{}",
                           timestamp=1767225600, nonce="n" * 16)
    private_key.public_key().verify(base64.b64decode(headers["Pointclear-Signature"]), message)


def test_signed_get_and_post_pass_even_for_a_suspended_partner(api, banka):
    _passes(banka.get("/whoami/m%C3%A9/x", query="b=2&a=1&a=%20&c="), banka)
    _passes(banka.get("/whoami/plain", query={"page": 2, "expand": ["a", "b"]}), banka)
    body = _passes(banka.post("/whoami/earn", json={"points": 100, "member": "m1"}), banka)
    assert body["body"] == '{"points":100,"member":"m1"}'
    _passes(banka.post("/whoami/raw", data=b"\x00bytes", query="dry=1"), banka)
    _committed(api, lambda s: partners.set_status(s, "banka", "suspended"))
    _passes(banka.get("/whoami/balance"), banka)


# --- refusals ---------------------------------------------------------------------------------

def test_a_tampered_body_fails_its_digest_or_with_a_new_digest_the_signature(banka):
    headers = sign_headers(banka.private_key, banka.key_id, "POST", "/whoami/x", body=b'{"p":1}')
    _refused(_send(banka, "POST", "/whoami/x", headers, b'{"p":9}'), "digest_mismatch",
             "Content-Digest")
    headers["Content-Digest"] = signing.body_digest(b'{"p":9}')
    _refused(_send(banka, "POST", "/whoami/x", headers, b'{"p":9}'), "bad_signature",
             "Pointclear-Signature")


@pytest.mark.parametrize("signed, sent", [
    (("GET", "/whoami/a", ""), ("GET", "/whoami/b", "")),
    (("GET", "/whoami/a", "n=1"), ("GET", "/whoami/a", "n=2")),
    (("GET", "/whoami/a", "n=1"), ("GET", "/whoami/a", "")),
    (("GET", "/whoami/%61", ""), ("GET", "/whoami/a", "")),
    (("GET", "/whoami/a", ""), ("POST", "/whoami/a", "")),
], ids=["path", "query", "query-dropped", "path-encoding", "method"])
def test_a_tampered_request_fails_the_signature(banka, signed, sent):
    headers = sign_headers(banka.private_key, banka.key_id, *signed)
    url = f"{sent[1]}?{sent[2]}" if sent[2] else sent[1]
    _refused(_send(banka, sent[0], url, headers), "bad_signature", "Pointclear-Signature")


def test_wrong_unknown_orphaned_and_revoked_keys_are_refused(api, banka, monkeypatch):
    forger = SignedClient(banka.client, Ed25519PrivateKey.generate(), banka.key_id)
    _refused(forger.get("/whoami/x"), "bad_signature", "Pointclear-Signature")
    stranger = SignedClient(banka.client, banka.private_key, "key_0000000000000000")
    _refused(stranger.get("/whoami/x"), "unknown_key", "Pointclear-Key-Id")

    def gone(session, partner_id):
        raise PartnerNotFound(f"no partner {partner_id!r}", field="partner_id")

    with monkeypatch.context() as patch:  # the foreign key keeps real rows from orphaning
        patch.setattr(signatures, "get_partner", gone)
        _refused(banka.get("/whoami/x"), "unknown_key", "Pointclear-Key-Id")
    _committed(api, lambda s: partners.revoke_key(s, "banka", banka.key_id))
    _refused(banka.get("/whoami/x"), "unknown_key", "Pointclear-Key-Id")


@pytest.mark.parametrize("offset, code", [
    (-310, "stale_timestamp"), (310, "stale_timestamp"), (-290, None), (290, None)])
def test_timestamps_are_accepted_within_300_seconds_either_way(banka, offset, code):
    response = banka.get("/whoami/x", timestamp=int(time.time()) + offset)
    if code:
        _refused(response, code, "Pointclear-Timestamp")
    else:
        _passes(response, banka)


def test_a_replayed_nonce_is_refused_but_nonces_are_per_key(api, banka):
    headers = sign_headers(banka.private_key, banka.key_id, "GET", "/whoami/x")
    assert _send(banka, "GET", "/whoami/x", headers).status_code == 200
    _refused(_send(banka, "GET", "/whoami/x", headers), "nonce_reused", "Pointclear-Nonce")
    other = SignedClient(banka.client, *_new_key(api, "banka"))
    _passes(other.get("/whoami/x", nonce=headers["Pointclear-Nonce"]), other)


@pytest.mark.parametrize("header", ["Pointclear-Key-Id", "Pointclear-Timestamp", "Pointclear-Nonce",
                                    "Content-Digest", "Pointclear-Signature"])
def test_each_header_is_required(banka, header):
    headers = sign_headers(banka.private_key, banka.key_id, "GET", "/whoami/x")
    del headers[header]
    _refused(_send(banka, "GET", "/whoami/x", headers), "signature_missing", header)


@pytest.mark.parametrize("header, value", [
    ("Content-Digest", signing.EMPTY_BODY_DIGEST.replace(":", "")),
    ("Content-Digest", signing.EMPTY_BODY_DIGEST.replace("sha-256", "sha-512")),
    ("Content-Digest", "sha-256=:" + base64.b64encode(b"x" * 16).decode() + ":"),
    ("Content-Digest", signing.EMPTY_BODY_DIGEST + ", sha-512=:AAAA:"),
    ("Pointclear-Nonce", "too-short"), ("Pointclear-Nonce", "n" * 65),
    ("Pointclear-Nonce", "spaces are not allowed"),
    ("Pointclear-Timestamp", "1767225600.5"), ("Pointclear-Timestamp", "-1767225600"),
    ("Pointclear-Signature", "not base64 at all"),
    ("Pointclear-Signature", base64.b64encode(b"s" * 63).decode()),
    ("Pointclear-Key-Id", "key with spaces"), ("Pointclear-Key-Id", "k" * 41),
])
def test_malformed_headers_are_named(banka, header, value):
    headers = sign_headers(banka.private_key, banka.key_id, "GET", "/whoami/x")
    headers[header] = value
    _refused(_send(banka, "GET", "/whoami/x", headers), "signature_malformed", header)


def test_a_header_sent_twice_is_malformed(banka):
    headers = list(sign_headers(banka.private_key, banka.key_id, "GET", "/whoami/x").items())
    headers.append(("Pointclear-Nonce", "another-nonce-0123456789"))
    _refused(_send(banka, "GET", "/whoami/x", headers), "signature_malformed", "Pointclear-Nonce")


def test_two_keys_both_work_and_revoking_one_keeps_the_other(api, banka):
    second = SignedClient(banka.client, *_new_key(api, "banka"))
    _passes(banka.get("/whoami/x"), banka)
    _passes(second.get("/whoami/x"), second)
    _committed(api, lambda s: partners.revoke_key(s, "banka", banka.key_id))
    _refused(banka.get("/whoami/x"), "unknown_key", "Pointclear-Key-Id")
    _passes(second.get("/whoami/x"), second)


# --- sessions and the nonce store --------------------------------------------------------------

def _request(headers, path="/whoami/m%C3%A9", **options):
    return EnvironBuilder(path=path, headers=headers, **options).get_request()


def test_the_key_is_read_without_the_write_lock_and_sessions_are_closed(api, banka):
    headers = sign_headers(banka.private_key, banka.key_id, "GET", "/whoami/m%C3%A9")
    with api.app_context():
        engine, begins = db.get_engine(), []

        def record(conn, cursor, statement, *args):
            if statement.startswith("BEGIN"):
                begins.append(statement)

        event.listen(engine, "before_cursor_execute", record)  # this test's own engine
        assert authenticate(db.session_factory(), _request(headers)) == ("banka", banka.key_id)
        with pytest.raises(AuthError, match="already used"):
            authenticate(db.session_factory(), _request(headers))
        assert begins == ["BEGIN", "BEGIN IMMEDIATE"] * 2
        assert engine.pool.checkedout() == 0


def test_the_raw_target_is_signed_and_must_be_ascii(api, banka):
    headers = sign_headers(banka.private_key, banka.key_id, "GET", "/whoami/m%C3%A9", "a=1")
    without_raw_uri = _request(headers, query_string="a=1")
    del without_raw_uri.environ["RAW_URI"], without_raw_uri.environ["REQUEST_URI"]
    non_ascii = _request(headers, query_string="a=1")
    non_ascii.environ["RAW_URI"] = "/whoami/m\xc3\xa9?a=1"
    with api.app_context():  # without a raw URI the decoded path is encoded again
        assert authenticate(db.session_factory(), without_raw_uri) == ("banka", banka.key_id)
        with pytest.raises(AuthError) as refused:
            authenticate(db.session_factory(), non_ascii)
    assert (refused.value.code, refused.value.header) == ("signature_malformed", None)


def test_purge_deletes_only_old_rows(session):
    at = datetime(2000, 1, 1, tzinfo=UTC)
    session.add_all([SeenNonce(key_id="key_purge", nonce=f"nonce-{i:011d}", seen_at=at + step)
                     for i, step in enumerate([timedelta(0), timedelta(minutes=9),
                                               timedelta(minutes=10), timedelta(minutes=11)])])
    session.flush()
    assert signatures.purge_nonces(session, older_than=at + timedelta(minutes=10)) == 2
    kept = session.scalars(select(SeenNonce.nonce).where(SeenNonce.key_id == "key_purge"))
    assert sorted(kept) == ["nonce-00000000002", "nonce-00000000003"]


def _nonce_count(app, key_id) -> int:
    return _committed(app, lambda s: s.scalar(
        select(func.count()).select_from(SeenNonce).where(SeenNonce.key_id == key_id)))


def test_requests_purge_nonces_older_than_twice_the_tolerance(api, banka, monkeypatch):
    now = datetime.now(UTC)
    _committed(api, lambda s: s.add_all([
        SeenNonce(key_id="key_old", nonce="o" * 16, seen_at=now - timedelta(seconds=700)),
        SeenNonce(key_id="key_recent", nonce="r" * 16, seen_at=now - timedelta(seconds=500)),
    ]))
    monkeypatch.setattr(signatures, "PURGE_CHANCE", 0.0)
    _passes(banka.get("/whoami/x"), banka)
    assert _nonce_count(api, "key_old") == 1
    monkeypatch.setattr(signatures, "PURGE_CHANCE", 1.0)
    _passes(banka.get("/whoami/x"), banka)
    assert (_nonce_count(api, "key_old"), _nonce_count(api, "key_recent")) == (0, 1)
    assert _nonce_count(api, banka.key_id) == 2

    def fails(session, *, older_than):
        raise OperationalError("DELETE", {}, Exception("database is locked"))

    monkeypatch.setattr(signatures, "purge_nonces", fails)  # logged; the request passes
    _passes(banka.get("/whoami/x"), banka)


@pytest.mark.postgres
def test_concurrent_copies_of_one_request_let_exactly_one_through(sessions, unique):
    private_key, partner_id, body = Ed25519PrivateKey.generate(), f"p-{unique}", b'{"n":1}'
    with sessions() as session, session.begin():
        _onboard(session, partner_id)
        key_id = partners.add_key(session, partner_id, signing.public_key_hex(private_key)).id
    headers = sign_headers(private_key, key_id, "POST", "/v1/earn", body=body)
    start = threading.Barrier(8)

    def attempt(_):
        req = _request(headers, path="/v1/earn", method="POST", data=body)
        start.wait()
        try:
            return authenticate(sessions, req)[0]
        except AuthError as err:
            return err.code

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert sorted(outcomes) == ["nonce_reused"] * 7 + [partner_id]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SeenNonce)
                              .where(SeenNonce.key_id == key_id)) == 1
