"""`pointclear partners` and `pointclear programs`, as an operator uses them."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def _cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_onboard_a_bank_and_its_program(app, tmp_path):
    r = _cli(app, "partners", "create", "banka", "--name", "Bank A", "--industry", "bank",
             "--role", "issuer", "--currency", "CNY")
    assert r.exit_code == 0, r.output
    pem = tmp_path / "banka.pub"
    pem.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    key_id = _cli(app, "partners", "add-key", "banka", str(pem)).output.strip()
    assert key_id.startswith("key_")
    assert "active" in _cli(app, "partners", "keys", "banka").output
    assert _cli(app, "partners", "revoke-key", "banka", key_id).exit_code == 0
    assert "revoked" in _cli(app, "partners", "keys", "banka").output

    r = _cli(app, "programs", "create", "BANKA", "--name", "Bank A Points", "--owner", "banka",
             "--expiry-months", "24")
    assert r.exit_code == 0, r.output
    r = _cli(app, "programs", "set-value", "BANKA", "0.01", "--currency", "CNY",
             "--from", "2026-01-01T00:00:00")
    assert "0.01 CNY per point from 2026-01-01T00:00:00+00:00" in r.output
    listing = _cli(app, "programs", "list").output
    assert "BANKA" in listing and "banka" in listing and "24 months" in listing
    assert "0.01 CNY" in listing
    assert "no value" in _cli(app, "programs", "list", "--at", "2025-12-31").output
    assert "banka" in _cli(app, "partners", "list").output


def test_refusals_name_the_rule_and_field_and_change_nothing(app):
    r = _cli(app, "partners", "create", "Bad Id", "--name", "X", "--industry", "bank",
             "--role", "issuer", "--currency", "CNY")
    assert r.exit_code == 1
    assert "invalid_partner [id]" in r.output
    assert _cli(app, "partners", "list").output == ""
    r = _cli(app, "programs", "create", "SKYMILES", "--name", "Sky", "--owner", "nobody")
    assert r.exit_code == 1 and "partner_not_found" in r.output
    r = _cli(app, "programs", "create", "SKYMILES", "--name", "Sky")
    assert r.exit_code == 2 and "--owner PARTNER or --platform" in r.output
    r = _cli(app, "programs", "set-value", "NOPE", "0.01", "--currency", "CNY")
    assert r.exit_code == 1 and "program_not_found" in r.output


def test_suspend_and_reactivate(app):
    _cli(app, "partners", "create", "megamart", "--name", "MegaMart", "--industry", "retail",
         "--role", "redeemer", "--currency", "CNY")
    assert _cli(app, "partners", "suspend", "megamart").exit_code == 0
    assert "suspended" in _cli(app, "partners", "list").output
    assert _cli(app, "partners", "reactivate", "megamart").exit_code == 0
    assert "active" in _cli(app, "partners", "list").output
