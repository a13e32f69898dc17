"""`pointclear members` and `pointclear demo seed`, as an operator uses them."""

from __future__ import annotations

from pathlib import Path


def _cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_seed_then_freeze_and_unfreeze_a_member(app):
    from app.clearing.crypto import create_data_key

    create_data_key(app.config["DATA_KEY"])
    seeded = _cli(app, "demo", "seed")
    assert seeded.exit_code == 0 and "seeded the demo data" in seeded.output, seeded.output
    keys = Path(app.config["DATA_KEY"]).parent / "demo-keys"
    assert sorted(p.name for p in keys.glob("*.pem")) == ["banka.pem", "megamart.pem",
                                                         "skyair.pem"]
    assert "already present" in _cli(app, "demo", "seed").output

    shown = _cli(app, "members", "show", "c-1", "--partner", "banka")
    assert shown.exit_code == 0, shown.output
    assert "linked at megamart as mm-1" in shown.output
    assert "BANKA: 5000 available, 0 held" in shown.output
    member_id = shown.output.split()[0]

    frozen = _cli(app, "members", "freeze", "mm-1", "--partner", "megamart")
    assert frozen.output.strip() == f"{member_id} is frozen"
    assert "status=frozen" in _cli(app, "members", "show", member_id).output
    assert _cli(app, "members", "unfreeze", member_id).output.strip() == f"{member_id} is active"


def test_unknown_members_are_named(app):
    r = _cli(app, "members", "freeze", "nobody")
    assert r.exit_code == 1 and "member_not_found" in r.output
    r = _cli(app, "members", "show", "c-9", "--partner", "banka")
    assert r.exit_code == 1 and "member_not_found" in r.output


def test_points_expire_from_the_command_line(app):
    from app.clearing.crypto import create_data_key

    create_data_key(app.config["DATA_KEY"])
    _cli(app, "demo", "seed")
    early = _cli(app, "points", "expire")
    assert early.exit_code == 0 and "expired 0 point(s) of 0 member(s)" in early.output
    late = _cli(app, "points", "expire", "--program", "BANKA", "--now", "2031-01-01T00:00:00")
    assert late.exit_code == 0, late.output
    assert "BANKA: expired 5000 point(s) of 1 member(s)" in late.output
    again = _cli(app, "points", "expire", "--program", "BANKA", "--now", "2031-01-01T00:00:00")
    assert "expired 0 point(s)" in again.output  # idempotent
    assert "BANKA: 0 available" in _cli(app, "members", "show", "c-1", "--partner",
                                        "banka").output


def test_the_programs_report(app):
    from app.clearing.crypto import create_data_key

    create_data_key(app.config["DATA_KEY"])
    _cli(app, "demo", "seed")
    r = _cli(app, "reports", "programs", "--program", "BANKA")
    assert r.exit_code == 0, r.output
    [row] = [line.split() for line in r.output.splitlines() if line.startswith("BANKA")]
    assert row == ["BANKA", "5000", "0", "0", "0", "5000", "5000", "CNY"]
    r = _cli(app, "reports", "programs", "--csv", "--program", "SKYMILES")
    assert r.output.splitlines()[0].startswith("program,start,end,outstanding")
    bad = _cli(app, "reports", "programs", "--from", "2030-01-01", "--to", "2029-01-01")
    assert bad.exit_code == 2 and "--from" in bad.output
