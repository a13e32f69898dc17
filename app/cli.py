"""The ``pointclear`` command: Flask's CLI plus the platform's own command groups.

    pointclear db upgrade|current|check     schema (Alembic)
    pointclear keys init|show               the platform signing key (init: and data key)
    pointclear ledger verify|seal|expire-holds
    pointclear authorisations expire        book expired authorisations (and their events)
    pointclear webhooks deliver             the webhook worker (see app/webhooks/)
    pointclear partners ... / programs ...  onboarding (see app/admin_cli.py)
    pointclear run                          Flask's development server
"""

from __future__ import annotations

import sys

import click
from alembic import command
from flask import current_app
from flask.cli import AppGroup, FlaskGroup

from ledger import unit_of_work
from ledger.seal import key_id, seal
from ledger.verify import verify

from . import db, signing
from .clearing import crypto, redemptions


def _create_app():
    from . import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True)
def main():
    """Pointclear loyalty-points clearing house: operations and batch jobs.

    Configuration comes from the environment: POINTCLEAR_DATABASE_URL (default: SQLite
    file instance/pointclear.db), POINTCLEAR_SIGNING_KEY (default:
    instance/platform-signing-key.pem), POINTCLEAR_DATA_KEY (default: instance/data-key).
    """


db_cli = AppGroup("db", help="Database schema: Alembic migrations are the only way it changes.")
keys_cli = AppGroup("keys", help="The platform's Ed25519 signing key and its data key.")
ledger_cli = AppGroup("ledger", help="Verify, seal and maintain the double-entry ledger.")
authorisations_cli = AppGroup("authorisations", help="Batch jobs on POS authorisations.")


def _run(work):
    return unit_of_work.run(db.session_factory(), work)


# --- db ---------------------------------------------------------------------------------------

@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision):
    """Create or migrate the schema to REVISION (idempotent)."""
    with db.get_engine().begin() as connection:
        db.upgrade(connection=connection, revision=revision)
        current = db.current_revision(connection)
    click.echo(f"database at revision {current}")


@db_cli.command("current")
def db_current():
    """Print the revision the database is at, and the code's head."""
    with db.get_engine().connect() as connection:
        click.echo(f"database: {db.current_revision(connection)}  code: {db.head_revision()}")


@db_cli.command("check")
def db_check():
    """Fail if the models and the migrations disagree (a migration is missing)."""
    with db.get_engine().begin() as connection:
        command.check(db.alembic_config(connection=connection))
    click.echo("models and migrations agree")


# --- keys -------------------------------------------------------------------------------------

@keys_cli.command("init")
def keys_init():
    """Create the platform signing key and the data key (which encrypts members' contact
    data) unless they exist; print the public key and the data key's id."""
    path = current_app.config["SIGNING_KEY"]
    try:
        key = signing.load_private_key(path)
        click.echo(f"signing key exists at {path}")
    except signing.SigningKeyMissing:
        key = signing.create_private_key(path)
        click.echo(f"created signing key at {path}")
    click.echo(f"key id {key_id(key.public_key())}")
    click.echo(signing.public_pem(key.public_key()), nl=False)
    _init_data_key(current_app.config["DATA_KEY"])


def _init_data_key(path) -> None:
    try:
        key = crypto.load_data_key(path)
        click.echo(f"data key exists at {path} (key id {crypto.key_id(key)})")
    except crypto.DataKeyMissing:
        key = crypto.create_data_key(path)
        click.echo(f"created data key at {path} (key id {crypto.key_id(key)}); "
                   "back it up: contact data cannot be read without it")
    except ValueError as exc:  # a file that is not a key: never replace it
        raise click.ClickException(str(exc)) from exc


@keys_cli.command("show")
def keys_show():
    """Print the platform's public key (PEM) and its key id."""
    key = _private_key()
    click.echo(f"key id {key_id(key.public_key())}")
    click.echo(signing.public_pem(key.public_key()), nl=False)


def _private_key():
    try:
        return signing.load_private_key(current_app.config["SIGNING_KEY"])
    except signing.SigningKeyMissing as exc:
        raise click.ClickException(str(exc)) from exc


# --- ledger -----------------------------------------------------------------------------------

@ledger_cli.command("verify")
@click.option("--public-key", "public_key_path", type=click.Path(exists=True, dir_okay=False),
              help="PEM public key to check seal signatures with "
                   "(default: derived from the platform signing key).")
@click.option("--no-signatures", is_flag=True, help="Check the hash chain but not signatures.")
@click.option("--tip", metavar="HEIGHT:HASH", default=None,
              help="The tip `ledger seal` printed, kept outside the database: catches "
                   "deleted newest blocks.")
def ledger_verify(public_key_path, no_signatures, tip):
    """Check every rule of the books; exit 1 and list what is wrong if any is broken.

    Every transaction balances per unit, every account's running totals equal its
    postings, no no-overdraft account is overdrawn, captures and reversals stay within
    their originals, and the sealed blocks form an unbroken signed chain over unchanged
    rows.
    """
    keys = None
    if not no_signatures:
        keys = [signing.load_public_key(public_key_path) if public_key_path
                else _private_key().public_key()]
    expected_tip = None
    if tip:
        height, _, digest = tip.partition(":")
        if not height.isdigit() or len(digest) != 64:
            raise click.BadParameter("expected HEIGHT:HASH as printed by `ledger seal`",
                                     param_hint="--tip")
        expected_tip = (int(height), digest)
    session = db.read_session_factory()()
    try:
        report = verify(session, public_keys=keys, check_signatures=not no_signatures,
                        tip=expected_tip)
    finally:
        session.close()
    counts = ", ".join(f"{v} {k}" for k, v in report.counts.items())
    if report.ok:
        click.echo(f"ledger OK: {counts}")
        return
    click.echo(f"ledger BROKEN: {len(report.problems)} problem(s) in {counts}", err=True)
    for p in report.problems:
        click.echo(f"  [{p.rule}] {p.detail}", err=True)
    sys.exit(1)


@ledger_cli.command("seal")
@click.option("--block-size", type=click.IntRange(1, 100_000), default=None,
              help="Transactions per block (default: POINTCLEAR_SEAL_BLOCK_SIZE or 1000).")
@click.option("--max-blocks", type=click.IntRange(1), default=None,
              help="Stop after this many blocks (default: seal everything).")
def ledger_seal(block_size, max_blocks):
    """Seal committed, unsealed transactions into signed hash-chained blocks."""
    key = _private_key()
    size = block_size or current_app.config["SEAL_BLOCK_SIZE"]
    total = 0
    while True:
        # One block per database transaction, so a long backlog commits as it goes and a
        # crash loses at most the block in progress.
        blocks = _run(lambda s: seal(s, key, block_size=size, max_blocks=1))
        if not blocks:
            break
        block = blocks[0]
        total += 1
        click.echo(f"sealed block {block.height}: {block.tx_count} transactions, hash {block.hash}")
        if max_blocks is not None and total >= max_blocks:
            break
    if total == 0:
        click.echo("nothing to seal")
    else:
        click.echo(f"tip {block.height}:{block.hash}  (keep it outside the database; "
                   "`ledger verify --tip` checks it)")


def _expire_authorisations(batch: int) -> int:
    """The sweep, one committed batch at a time: each expiry is booked with its
    operation and its transaction.expired webhook events, in one transaction."""
    total = 0
    while True:
        n = _run(lambda s: redemptions.expire_authorisations(s, limit=batch))
        total += n
        if n < batch:
            return total


@ledger_cli.command("expire-holds")
@click.option("--batch", type=click.IntRange(1, 100_000), default=1000, show_default=True)
def ledger_expire_holds(batch):
    """Void pending transactions whose expiry has passed, releasing what they reserved.

    The same sweep as `pointclear authorisations expire` (kept for existing cron
    entries): an authorisation's expiry is also recorded as an operation and reported
    to the partners by webhook."""
    click.echo(f"expired {_expire_authorisations(batch)} pending transaction(s)")


@authorisations_cli.command("expire")
@click.option("--batch", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Expiries booked per database transaction.")
def authorisations_expire(batch):
    """Void authorisations past their expiry, releasing the points and money they held.

    Each expiry is booked as an operation of kind `expiry` (related to the
    authorisation) with its transaction.expired webhook events, in one transaction.
    Run it every few minutes from cron; several may run at once (SKIP LOCKED)."""
    click.echo(f"expired {_expire_authorisations(batch)} authorisation(s)")


def init_app(app) -> None:
    from . import admin_cli, demo, members_cli, points_cli, reports_cli
    from .webhooks import cli as webhooks_cli

    admin_cli.init_app(app)
    members_cli.init_app(app)
    points_cli.init_app(app)
    reports_cli.init_app(app)
    demo.init_app(app)
    webhooks_cli.init_app(app)
    app.cli.add_command(db_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(ledger_cli)
    app.cli.add_command(authorisations_cli)
