"""``pointclear members ...``: look a member up, freeze and unfreeze them.

A frozen member earns, spends and converts nothing (each operation is refused with
``member_frozen``) until unfrozen; their balances and history stay readable.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ledger.types import utcnow

from . import db
from .admin_cli import _run
from .clearing import balances as balances_of
from .clearing import members
from .clearing.errors import MemberNotFound

members_cli = AppGroup("members", help="Look up, freeze and unfreeze members.")


def _member_id(session, member: str, partner: str | None) -> str:
    if partner is not None:
        return members.member_of(session, partner, member).id
    return members.get_member(session, member).id


@members_cli.command("show")
@click.argument("member")
@click.option("--partner", help="Read MEMBER as this partner's customer reference.")
def show(member, partner):
    """Show a member (platform id, or a partner's customer reference), links, balances."""
    def work(session):
        member_id = _member_id(session, member, partner)
        m = members.get_member(session, member_id)
        click.echo(f"{m.id}  status={m.status}  since {m.created_at:%Y-%m-%d}")
        for link in members.links_of_member(session, member_id):
            click.echo(f"  linked at {link.partner_id} as {link.customer_ref}")
        programs = balances_of.member_programs(session, member_id)
        for b in balances_of.balances(session, member_id, programs, utcnow()):
            click.echo(f"  {b['program']}: {b['available']} available, {b['pending']} held"
                       + (f", {b['expired_unbooked']} expired" if b["expired_unbooked"] else ""))
    with db.read_session_factory()() as session:
        try:
            work(session)
        except MemberNotFound as err:
            raise click.ClickException(f"{err.code}: {err.message}") from err


def _set(member, partner, freeze: bool):
    def work(session):
        member_id = _member_id(session, member, partner)
        return (members.freeze if freeze else members.unfreeze)(session, member_id)
    m = _run(work)
    click.echo(f"{m.id} is {m.status}")


@members_cli.command("freeze")
@click.argument("member")
@click.option("--partner", help="Read MEMBER as this partner's customer reference.")
def freeze(member, partner):
    """Stop the member earning, spending and converting until unfrozen."""
    _set(member, partner, True)


@members_cli.command("unfreeze")
@click.argument("member")
@click.option("--partner", help="Read MEMBER as this partner's customer reference.")
def unfreeze(member, partner):
    """Let a frozen member earn, spend and convert again."""
    _set(member, partner, False)


def init_app(app) -> None:
    app.cli.add_command(members_cli)
