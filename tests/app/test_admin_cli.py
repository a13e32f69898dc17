"""`pointclear partners`, `programs` and `agreements`, as an operator uses them."""

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


def _design_example(app):
    """DESIGN.md's BankA, SkyAir and MegaMart, with BANKA, SKYMILES and a coalition program."""
    for pid, industry, role in [("banka", "bank", "issuer"), ("skyair", "airline", "issuer"),
                                ("megamart", "retail", "redeemer")]:
        assert _cli(app, "partners", "create", pid, "--name", pid, "--industry", industry,
                    "--role", role, "--currency", "CNY").exit_code == 0
    for code, owner in [("BANKA", ["--owner", "banka"]), ("SKYMILES", ["--owner", "skyair"]),
                        ("COALITION", ["--platform"]), ("COALITION2", ["--platform"])]:
        assert _cli(app, "programs", "create", code, "--name", code, *owner).exit_code == 0


def test_agree_version_list_and_end(app):
    _design_example(app)
    r = _cli(app, "agreements", "create-redemption", "BANKA", "megamart",
             "--value-per-point", "0.01", "--fee-rate", "0.02",
             "--effective-from", "2025-01-01T08:00:00+08:00")
    assert r.exit_code == 0, r.output
    redemption = r.output.split()[0]
    assert redemption.startswith("agr_") and "BANKA at megamart" in r.output
    assert "CNY active  v1 value 0.01 fee 0.02 from 2025-01-01T00:00:00+00:00" in r.output
    r = _cli(app, "agreements", "create-conversion", "BANKA", "SKYMILES", "--ratio", "0.4",
             "--value-per-point", "0.01", "--target-value-per-point", "0.02",
             "--min-points", "100", "--effective-from", "2025-01-01")
    assert r.exit_code == 0, r.output
    conversion = r.output.split()[0]
    assert "BANKA -> SKYMILES" in r.output
    assert "v1 ratio 0.4 value 0.01 target 0.02 spread 0.002 min 100 max -" in r.output

    r = _cli(app, "agreements", "set-terms", conversion, "--ratio", "0.5",
             "--target-value-per-point", "0.018", "--effective-from", "2025-06-01T00:00:00")
    assert r.output == (f"{conversion}: v2 ratio 0.5 value 0.01 target 0.018 spread 0.001 "
                        "min 100 max - from 2025-06-01T00:00:00+00:00\n")
    r = _cli(app, "agreements", "set-terms", redemption, "--fee-rate", "0.03",
             "--effective-from", "2999-01-01")
    assert r.exit_code == 0, r.output

    listing = _cli(app, "agreements", "list").output.splitlines()
    assert len(listing) == 2 and all(line.split()[0] in (redemption, conversion)
                                     for line in listing)
    assert "fee 0.02 from 2025-01-01T00:00:00+00:00; next v2 from 2999-01-01" in \
        "".join(listing)
    assert "v2 ratio 0.5" in "".join(listing)
    assert _cli(app, "agreements", "list", "--partner", "megamart").output.split()[0] == \
        redemption
    assert _cli(app, "agreements", "list", "--partner", "skyair").output.split()[0] == \
        conversion
    assert len(_cli(app, "agreements", "list", "--partner", "banka").output.splitlines()) == 2

    r = _cli(app, "agreements", "end", redemption)
    assert r.exit_code == 0 and f"agreement {redemption} ended" in r.output
    assert " ended " in _cli(app, "agreements", "list", "--partner", "megamart").output


def test_coalition_conversion_names_its_currency(app):
    _design_example(app)
    args = ["agreements", "create-conversion", "COALITION", "COALITION2", "--ratio", "1",
            "--value-per-point", "0.01", "--target-value-per-point", "0.01"]
    r = _cli(app, *args)  # not valued yet: their currency is not known
    assert r.exit_code == 1 and "invalid_agreement [currency]" in r.output
    for code in ("COALITION", "COALITION2"):
        r = _cli(app, "programs", "set-value", code, "0.01", "--currency", "HKD",
                 "--from", "2026-01-01T00:00:00")
        assert r.exit_code == 0, r.output
    r = _cli(app, *args, "--currency", "CNY")  # not what they are valued in
    assert r.exit_code == 1 and "invalid_agreement [currency]" in r.output
    r = _cli(app, *args)
    assert r.exit_code == 0 and "HKD" in r.output and "spread 0 " in r.output


def test_agreement_refusals_name_the_rule_and_field_and_change_nothing(app):
    _design_example(app)
    redemption = ["agreements", "create-redemption", "BANKA"]
    r = _cli(app, *redemption, "skyair", "--value-per-point", "0.01", "--fee-rate", "0.02")
    assert r.exit_code == 1 and "invalid_agreement [redeemer_id]" in r.output
    r = _cli(app, *redemption, "megamart", "--value-per-point", "0.01", "--fee-rate", "1")
    assert r.exit_code == 1 and "invalid_agreement [fee_rate]" in r.output
    r = _cli(app, *redemption, "megamart", "--value-per-point", "0.01", "--fee-rate", "0.02",
             "--effective-from", "soon")
    assert r.exit_code == 2 and "not an ISO 8601 instant" in r.output
    r = _cli(app, "agreements", "create-conversion", "BANKA", "SKYMILES", "--ratio", "0.6",
             "--value-per-point", "0.01", "--target-value-per-point", "0.02")
    assert r.exit_code == 1 and "invalid_agreement [target_value_per_point]" in r.output
    assert _cli(app, "agreements", "list").output == ""

    agreement = _cli(app, *redemption, "megamart", "--value-per-point", "0.01",
                     "--fee-rate", "0.02").output.split()[0]
    r = _cli(app, "agreements", "set-terms", agreement, "--ratio", "0.5")
    assert r.exit_code == 1 and "invalid_agreement [ratio]" in r.output
    r = _cli(app, "agreements", "set-terms", agreement)
    assert r.exit_code == 1 and "invalid_agreement [terms]" in r.output
    r = _cli(app, "agreements", "set-terms", "agr_nope", "--fee-rate", "0.01")
    assert r.exit_code == 1 and "agreement_not_found [agreement_id]" in r.output
    r = _cli(app, "agreements", "end", "agr_nope")
    assert r.exit_code == 1 and "agreement_not_found" in r.output
    r = _cli(app, "agreements", "list", "--partner", "nobody")
    assert r.exit_code == 1 and "partner_not_found" in r.output
    assert " v1 " in _cli(app, "agreements", "list").output  # no second version


def test_agreement_commands_explain_themselves(app):
    r = _cli(app, "agreements", "--help")
    for command in ("create-redemption", "create-conversion", "set-terms", "end", "list"):
        assert command in r.output
    text = " ".join(_cli(app, "agreements", "create-conversion", "--help").output.split())
    assert "--target-value-per-point" in text and "keeps the spread, never negative" in text
    text = " ".join(_cli(app, "agreements", "set-terms", "--help").output.split())
    assert "terms not given carry over" in text and "--fee-rate TEXT Redemptions only:" in text
