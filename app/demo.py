"""``pointclear demo seed`` and ``pointclear demo call``: a working platform to try.

``seed`` books DESIGN.md's cast -- BankA (BANKA points), SkyAir (SKYMILES), MegaMart, the
agreements between them, member ``c-1`` with 5,000 BANKA points -- and writes each
partner's private signing key to ``demo-keys/<partner>.pem`` beside the data key
(``instance/`` by default) (the platform keeps
only the public half). Running it again changes nothing.

``call`` sends one request signed with a demo partner's key, the way a partner's system
(or the partner SDK) would, and prints the answer.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from flask import current_app
from flask.cli import AppGroup

from ledger import unit_of_work
from ledger.types import utcnow

from . import db
from .api import signatures
from .clearing import agreements, members, operations, partners, programs
from .clearing.errors import PartnerExists

demo_cli = AppGroup("demo", help="Seed demo data and send signed requests as a demo partner.")

PARTNERS = (("banka", "Bank A", "bank", {"issuer"}),
            ("skyair", "SkyAir", "airline", {"issuer", "redeemer"}),
            ("megamart", "MegaMart", "retail", {"redeemer"}))


def key_dir() -> Path:
    """Beside the data key (``instance/`` by default), never inside the package."""
    return Path(current_app.config["DATA_KEY"]).parent / "demo-keys"


def _private_key(partner_id: str) -> Ed25519PrivateKey:
    path = key_dir() / f"{partner_id}.pem"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created owner-only: never readable by others, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return load_pem_private_key(path.read_bytes(), password=None)


def _seed(session) -> bool:
    try:
        partners.onboard_partner(session, "banka", name="Bank A", industry="bank",
                                 roles={"issuer"}, settlement_currency="CNY")
    except PartnerExists:
        return False
    for pid, name, industry, roles in PARTNERS[1:]:
        partners.onboard_partner(session, pid, name=name, industry=industry, roles=roles,
                                 settlement_currency="CNY")
    programs.create_program(session, "BANKA", name="Bank A Points", owner_id="banka",
                            expiry_months=24)
    programs.create_program(session, "SKYMILES", name="SkyAir Miles", owner_id="skyair",
                            expiry_months=36)
    since = utcnow()
    programs.set_value(session, "BANKA", Decimal("0.01"), currency="CNY", effective_from=since)
    programs.set_value(session, "SKYMILES", Decimal("0.02"), currency="CNY",
                       effective_from=since)
    agreements.create_redemption(session, "BANKA", "megamart", value_per_point=Decimal("0.01"),
                                 fee_rate=Decimal("0.02"), effective_from=since)
    agreements.create_conversion(session, "BANKA", "SKYMILES", ratio=Decimal("0.4"),
                                 value_per_point=Decimal("0.01"),
                                 target_value_per_point=Decimal("0.02"), min_points=100,
                                 effective_from=since)
    members.enrol(session, "banka", "c-1")
    for pid, ref in (("megamart", "mm-1"), ("skyair", "sa-1")):
        token, _ = members.issue_token(session, "banka", "c-1")
        members.enrol(session, pid, ref, member_token=token)
    operations.issue(session, "banka", "c-1", "BANKA", 5_000, idempotency_key="demo-seed",
                     reference="welcome bonus")
    for pid, *_ in PARTNERS:
        raw = _private_key(pid).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        key = partners.add_key(session, pid, raw.hex())
        (key_dir() / f"{pid}.key-id").write_text(key.id + "\n")
    return True


@demo_cli.command("seed")
def seed():
    """Book the demo cast (idempotent) and write the partners' keys to instance/demo-keys/."""
    created = unit_of_work.run(db.session_factory(), _seed)
    click.echo("seeded the demo data" if created else "demo data already present")
    for pid, *_ in PARTNERS:
        click.echo(f"  {pid}: key {key_dir() / (pid + '.pem')}")
    click.echo("try: pointclear demo call banka GET /v1/partner")


@demo_cli.command("call")
@click.argument("partner")
@click.argument("method", type=click.Choice(["GET", "POST"], case_sensitive=False))
@click.argument("path")
@click.argument("body", required=False)
@click.option("--url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the service runs.")
@click.option("--idempotency-key", help="For POST; a fresh random key by default.")
def call(partner, method, path, body, url, idempotency_key):
    """Send METHOD PATH (with a JSON BODY for POST) signed with PARTNER's demo key.

    Example: pointclear demo call megamart POST /v1/redemptions
    '{"customer_ref": "mm-1", "program": "BANKA", "points": 2000}'
    """
    method = method.upper()
    key_file = key_dir() / f"{partner}.key-id"
    if not key_file.exists():
        raise click.ClickException(f"no demo key for {partner!r}: run `pointclear demo seed`")
    data = json.dumps(json.loads(body)).encode() if body else b""
    target, _, query = path.partition("?")
    timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(16)
    digest = signatures.content_digest(data)
    message = signatures.canonical_message(method, target, query, timestamp, nonce, digest)
    headers = {"Pointclear-Key-Id": key_file.read_text().strip(),
               "Pointclear-Timestamp": timestamp, "Pointclear-Nonce": nonce,
               "Content-Digest": digest, "Content-Type": "application/json",
               "Pointclear-Signature": base64.b64encode(_private_key(partner).sign(message)).decode()}
    if method == "POST":
        headers["Idempotency-Key"] = idempotency_key or secrets.token_hex(16)
    request = urllib.request.Request(url.rstrip("/") + path, data=data or None,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    except urllib.error.URLError as err:
        raise click.ClickException(f"cannot reach {url}: {err.reason}") from err
    click.echo(f"HTTP {status}")
    click.echo(json.dumps(json.loads(text), indent=2) if text.strip().startswith("{") else text)
    if status >= 400:
        raise SystemExit(1)


def init_app(app) -> None:
    app.cli.add_command(demo_cli)
