"""``pointclear reports programs``: outstanding points, liability and breakage per program."""

from __future__ import annotations

import csv
import sys
from dataclasses import asdict, fields
from datetime import timedelta

import click
from flask.cli import AppGroup
from sqlalchemy import select

from ledger.types import utcnow

from . import db
from .clearing import reports
from .clearing.models import Program
from .points_cli import instant

reports_cli = AppGroup("reports", help="Finance reports.")


@reports_cli.command("programs")
@click.option("--program", "programs", multiple=True, help="Only this program (repeatable).")
@click.option("--from", "start_text", metavar="ISO-8601",
              help="Start of the period (UTC if no offset); default: 30 days ago.")
@click.option("--to", "end_text", metavar="ISO-8601", help="End of the period; default: now.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on standard output, for machines.")
def programs_report(programs, start_text, end_text, as_csv):
    """Per program: points issued, redeemed, converted and expired (breakage) in the
    period, outstanding points and liability (outstanding x value per point) at its end."""
    end = instant(end_text) if end_text else utcnow()
    start = instant(start_text) if start_text else end - timedelta(days=30)
    if start >= end:
        raise click.BadParameter("--from must be before --to", param_hint="--from")
    with db.read_session_factory()() as session:
        codes = list(programs) or list(session.scalars(select(Program.code)
                                                       .order_by(Program.code)))
        rows = [reports.program_report(session, code, start, end) for code in codes]
    if as_csv:
        writer = csv.DictWriter(sys.stdout, [f.name for f in fields(reports.ProgramReport)])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (v.isoformat() if hasattr(v, "isoformat") else v)
                             for k, v in asdict(row).items()})
        return
    click.echo(f"{start.isoformat()} .. {end.isoformat()}")
    click.echo(f"{'program':<16} {'issued':>12} {'redeemed':>12} {'converted':>12} "
               f"{'expired':>12} {'outstanding':>12} {'liability':>14}")
    for r in rows:
        liability = f"{r.liability} {r.currency}" if r.liability is not None else "no value"
        click.echo(f"{r.program:<16} {r.issued:>12} {r.redeemed:>12} {r.converted:>12} "
                   f"{r.expired:>12} {r.outstanding:>12} {liability:>14}")


def init_app(app) -> None:
    app.cli.add_command(reports_cli)
