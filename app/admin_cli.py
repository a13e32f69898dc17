"""Admin commands: ``pointclear partners ...``, ``programs ...`` and ``agreements ...``.

Each command is one unit of work; a refusal prints the rule broken and the field, and
exits 1 having changed nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import click
from flask.cli import AppGroup

from ledger import unit_of_work
from ledger.errors import LedgerError

from . import db
from .clearing import agreements as agreement_ops
from .clearing import partners as partner_ops
from .clearing import programs as program_ops
from .clearing.models import INDUSTRIES

partners_cli = AppGroup("partners", help="Onboard partners and manage their signing keys.")
programs_cli = AppGroup("programs", help="Host points programs and set their value per point.")
agreements_cli = AppGroup("agreements", help="Agree redemptions and conversions, version "
                          "their money terms, end them.")


def _run(work):
    try:
        return unit_of_work.run(db.session_factory(), work)
    except LedgerError as err:
        field = f" [{err.field}]" if err.field else ""
        raise click.ClickException(f"{err.code}{field}: {err.message}") from err


# --- partners -----------------------------------------------------------------------------

@partners_cli.command("create")
@click.argument("partner_id")
@click.option("--name", required=True)
@click.option("--industry", required=True, type=click.Choice(INDUSTRIES))
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice(partner_ops.ROLES), help="issuer, redeemer, or both (repeat).")
@click.option("--currency", required=True, help="Settlement currency (ISO 4217), e.g. CNY.")
def partners_create(partner_id, name, industry, roles, currency):
    """Onboard partner PARTNER_ID (a slug such as bank-a), active at once."""
    _run(lambda s: partner_ops.onboard_partner(
        s, partner_id, name=name, industry=industry, roles=roles, settlement_currency=currency))
    click.echo(f"partner {partner_id} onboarded")


@partners_cli.command("list")
def partners_list():
    """List partners: id, industry, roles, currency, status."""
    for p in _run(partner_ops.list_partners):
        roles = "+".join(r for r, on in (("issuer", p.is_issuer), ("redeemer", p.is_redeemer))
                         if on)
        click.echo(f"{p.id:20} {p.industry:10} {roles:16} {p.settlement_currency} "
                   f"{p.status:9} {p.name}")


@partners_cli.command("suspend")
@click.argument("partner_id")
def partners_suspend(partner_id):
    """Suspend a partner: it issues, redeems and converts nothing until reactivated."""
    _run(lambda s: partner_ops.set_status(s, partner_id, "suspended"))
    click.echo(f"partner {partner_id} suspended")


@partners_cli.command("reactivate")
@click.argument("partner_id")
def partners_reactivate(partner_id):
    """Reactivate a suspended partner."""
    _run(lambda s: partner_ops.set_status(s, partner_id, "active"))
    click.echo(f"partner {partner_id} active")


@partners_cli.command("add-key")
@click.argument("partner_id")
@click.argument("public_key")
def partners_add_key(partner_id, public_key):
    """Register PUBLIC_KEY (a PEM file, or 64 hex digits) for PARTNER_ID; prints its key id."""
    path = Path(public_key)
    value = path.read_bytes() if path.is_file() else public_key
    key = _run(lambda s: partner_ops.add_key(s, partner_id, value))
    click.echo(key.id)


@partners_cli.command("keys")
@click.argument("partner_id")
def partners_keys(partner_id):
    """List a partner's keys and whether each is active."""
    for k in _run(lambda s: partner_ops.keys_of(s, partner_id)):
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        click.echo(f"{k.id}  {state}  added {k.created_at:%Y-%m-%d %H:%M}")


@partners_cli.command("revoke-key")
@click.argument("partner_id")
@click.argument("key_id")
def partners_revoke_key(partner_id, key_id):
    """Revoke KEY_ID of PARTNER_ID for good."""
    _run(lambda s: partner_ops.revoke_key(s, partner_id, key_id))
    click.echo(f"key {key_id} revoked")


# --- programs -----------------------------------------------------------------------------

@programs_cli.command("create")
@click.argument("code")
@click.option("--name", required=True)
@click.option("--owner", "owner_id", help="The issuer partner that owns it.")
@click.option("--platform", is_flag=True, help="A coalition program owned by the platform.")
@click.option("--expiry-months", type=int, default=None,
              help="Points expire this many months after they were earned (default: never).")
def programs_create(code, name, owner_id, platform, expiry_months):
    """Host program CODE (e.g. SKYMILES) and open its ledger accounts."""
    if bool(owner_id) == platform:
        raise click.UsageError("give exactly one of --owner PARTNER or --platform")
    _run(lambda s: program_ops.create_program(s, code, name=name, owner_id=owner_id,
                                              expiry_months=expiry_months))
    click.echo(f"program {code} hosted")


@programs_cli.command("set-value")
@click.argument("code")
@click.argument("value_per_point")
@click.option("--currency", required=True, help="ISO 4217 code the value is in, e.g. CNY.")
@click.option("--from", "effective_from", type=click.DateTime(), default=None,
              help="UTC instant the value takes effect (default: now).")
def programs_set_value(code, value_per_point, currency, effective_from):
    """From now (or --from), one point of CODE is worth VALUE_PER_POINT (e.g. 0.01)."""
    when = effective_from.replace(tzinfo=timezone.utc) if effective_from else None
    version = _run(lambda s: program_ops.set_value(s, code, value_per_point, currency=currency,
                                                   effective_from=when))
    click.echo(f"{code}: {version.value_per_point} {version.currency} per point from "
               f"{version.effective_from.isoformat()}")


@programs_cli.command("list")
@click.option("--at", type=click.DateTime(), default=None, help="Value in force at (UTC).")
def programs_list(at):
    """List programs with their owner, expiry and value per point."""
    when = at.replace(tzinfo=timezone.utc) if at else datetime.now(timezone.utc)

    def rows(s):
        out = []
        for p in program_ops.list_programs(s):
            try:
                v = program_ops.value_at(s, p.code, when)
                value = f"{v.value_per_point} {v.currency}"
            except LedgerError:
                value = "no value"
            expiry = f"{p.expiry_months} months" if p.expiry_months else "never"
            out.append(f"{p.code:16} {p.owner_id or '(platform)':20} expiry {expiry:10} "
                       f"{value:14} {p.name}")
        return out

    for line in _run(rows):
        click.echo(line)


# --- agreements ---------------------------------------------------------------------------

class _Instant(click.ParamType):
    """An ISO 8601 instant; one without an offset is UTC."""

    name = "instant"

    def convert(self, value, param, ctx):
        try:
            when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 instant, e.g. 2026-01-01T00:00:00+08:00",
                      param, ctx)
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


_effective_from = click.option("--effective-from", type=_Instant(), default=None,
                               help="When the terms take effect, ISO 8601 (no offset: UTC; "
                                    "default: now).")


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat()


def _terms(t) -> str:
    def d(value):
        return format(value.normalize(), "f")

    if t.fee_rate is not None:
        return (f"v{t.version} value {d(t.value_per_point)} fee {d(t.fee_rate)} "
                f"from {_utc(t.effective_from)}")
    return (f"v{t.version} ratio {d(t.ratio)} value {d(t.value_per_point)} target "
            f"{d(t.target_value_per_point)} spread {d(agreement_ops.spread_per_point(t))} "
            f"min {t.min_points or '-'} max {t.max_points or '-'} from {_utc(t.effective_from)}")


def _line(s, a) -> str:
    """The agreement with the terms in force now (else the first to come), and the next."""
    history = agreement_ops.terms_history(s, a.id)
    now = datetime.now(timezone.utc)
    shown = ([t for t in history if t.effective_from <= now] or history[:1])[-1]
    later = [t for t in history if t.version > shown.version]
    pair = f"{a.program_code} {'at' if a.kind == 'redemption' else '->'} {a.counterparty}"
    nxt = f"; next v{later[0].version} from {_utc(later[0].effective_from)}" if later else ""
    return f"{a.id}  {a.kind:10} {pair:28} {a.currency} {a.status:6}  {_terms(shown)}{nxt}"


@agreements_cli.command("create-redemption")
@click.argument("program")
@click.argument("redeemer")
@click.option("--value-per-point", required=True,
              help="What PROGRAM's owner pays per point redeemed, e.g. 0.01.")
@click.option("--fee-rate", required=True,
              help="The platform's share of that, at least 0 and below 1, e.g. 0.02.")
@_effective_from
def agreements_create_redemption(program, redeemer, value_per_point, fee_rate, effective_from):
    """Let PROGRAM's points be spent at partner REDEEMER; prints the agreement (id first)."""
    click.echo(_run(lambda s: _line(s, agreement_ops.create_redemption(
        s, program, redeemer, value_per_point=value_per_point, fee_rate=fee_rate,
        effective_from=effective_from))))


@agreements_cli.command("create-conversion")
@click.argument("source")
@click.argument("target")
@click.option("--ratio", required=True, help="TARGET points per SOURCE point, e.g. 0.4.")
@click.option("--value-per-point", required=True,
              help="What SOURCE's owner pays per source point, e.g. 0.01.")
@click.option("--target-value-per-point", required=True,
              help="What TARGET's owner gets per target point, e.g. 0.02; the platform "
                   "keeps the spread, never negative.")
@click.option("--min-points", type=int, help="Fewest SOURCE points one conversion takes.")
@click.option("--max-points", type=int, help="Most SOURCE points one conversion takes.")
@click.option("--currency", help="Settlement currency; needed only when both programs are "
                                 "the platform's.")
@_effective_from
def agreements_create_conversion(source, target, **options):
    """Let SOURCE's points be converted into TARGET's; prints the agreement (id first)."""
    click.echo(_run(lambda s: _line(s, agreement_ops.create_conversion(
        s, source, target, **options))))


@agreements_cli.command("set-terms")
@click.argument("agreement_id")
@click.option("--value-per-point", help="What the (source) program's owner pays per point.")
@click.option("--fee-rate", help="Redemptions only: the platform's share, in [0, 1).")
@click.option("--ratio", help="Conversions only, as are the options below.")
@click.option("--target-value-per-point", help="What the target's owner gets per point.")
@click.option("--min-points", type=int, help="Fewest source points one conversion takes.")
@click.option("--max-points", type=int, help="Most source points one conversion takes.")
@_effective_from
def agreements_set_terms(agreement_id, effective_from, **terms):
    """Version AGREEMENT_ID's terms from --effective-from (after the latest version);
    terms not given carry over."""
    given = {name: value for name, value in terms.items() if value is not None}
    version = _run(lambda s: _terms(agreement_ops.set_terms(
        s, agreement_id, effective_from=effective_from, **given)))
    click.echo(f"{agreement_id}: {version}")


@agreements_cli.command("end")
@click.argument("agreement_id")
def agreements_end(agreement_id):
    """End AGREEMENT_ID for good: no operation uses it from now on."""
    _run(lambda s: agreement_ops.end_agreement(s, agreement_id))
    click.echo(f"agreement {agreement_id} ended")


@agreements_cli.command("list")
@click.option("--partner", "partner_id", help="Only those the partner is party to (as the "
                                              "owner of either program, or the redeemer).")
def agreements_list(partner_id):
    """List agreements, one a line, with the terms in force now."""
    for line in _run(lambda s: [_line(s, a) for a in
                                agreement_ops.list_agreements(s, partner_id=partner_id)]):
        click.echo(line)


def init_app(app) -> None:
    app.cli.add_command(partners_cli)
    app.cli.add_command(programs_cli)
    app.cli.add_command(agreements_cli)
