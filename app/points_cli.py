"""``pointclear points expire``: book the breakage of points past their expiry date."""

from __future__ import annotations

from datetime import datetime, timezone

import click
from flask.cli import AppGroup
from sqlalchemy import select

from ledger.types import utcnow

from . import db
from .clearing import breakage
from .clearing.models import Program

points_cli = AppGroup("points", help="Batch jobs on members' points.")


def instant(value: str | None) -> datetime:
    """An ISO-8601 option value as an aware instant (UTC if it has no offset)."""
    if value is None:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 instant") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@points_cli.command("expire")
@click.option("--program", "programs", multiple=True,
              help="Only this program (repeatable); default: every program with an expiry. "
                   "Run one worker per program to split the work.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=100, show_default=True,
              help="Members expired per database transaction.")
@click.option("--now", "now_text", metavar="ISO-8601",
              help="Expire as of this instant (UTC if no offset); default: now.")
def expire(programs, batch, now_text):
    """Expire the points left in lots past their expiry date, oldest first.

    Per member and program one transaction (Dr member / Cr program:P:expired), an
    operation of kind `expiry` and a transaction.expired webhook to the program's owner.
    Idempotent and resumable: a rerun books only what is still due; several workers may
    run at once (each member is expired under their account's lock).
    """
    now = instant(now_text)
    with db.read_session_factory()() as session:
        codes = list(programs) or list(session.scalars(
            select(Program.code).where(Program.expiry_months.is_not(None))
            .order_by(Program.code)))
    total_members = total_points = 0
    for code in codes:
        def progress(members, points, code=code):
            click.echo(f"  {code}: {members} member(s), {points} point(s) expired so far",
                       err=True)
        members, points = breakage.expire_program(db.session_factory(), code, now,
                                                  batch=batch, progress=progress)
        click.echo(f"{code}: expired {points} point(s) of {members} member(s)")
        total_members, total_points = total_members + members, total_points + points
    click.echo(f"expired {total_points} point(s) of {total_members} member(s) "
               f"in {len(codes)} program(s) as of {now.isoformat()}")


def init_app(app) -> None:
    app.cli.add_command(points_cli)
