"""``pointclear webhooks deliver``: the worker that empties the webhook outbox."""

from __future__ import annotations

import signal
import threading
from collections import Counter

import click
from flask import current_app
from flask.cli import AppGroup

from app import db, signing

from .deliver import deliver_due, describe

webhooks_cli = AppGroup("webhooks", help="Deliver webhook events to partners' endpoints.")


@webhooks_cli.command("deliver")
@click.option("--once", is_flag=True,
              help="Deliver what is due now, then exit (for cron); default: run until "
                   "stopped.")
@click.option("--batch", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Deliveries claimed per round.")
@click.option("--timeout", type=click.FloatRange(0.5, 120), default=10.0, show_default=True,
              help="Seconds an attempt may take in all (resolve, connect, TLS, send, "
                   "answer); then it is cut off and retried later.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True,
              help="POSTs in flight at once.")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True,
              help="Seconds between polls when nothing is due (without --once).")
@click.option("--partner", "partners", multiple=True, metavar="ID",
              help="Deliver only to this partner's endpoints (repeat; default: all), "
                   "e.g. to give a slow endpoint a worker of its own.")
@click.option("--quiet", is_flag=True, help="Print only the totals, not each attempt.")
def deliver(once, batch, timeout, concurrency, interval, partners, quiet):
    """POST due webhook events to the subscribed endpoints, signed with the platform
    key (POINTCLEAR_SIGNING_KEY); retry failures with exponential backoff and jitter
    (10 s doubling to at most 6 h; after 25 attempts, about 3 days, the delivery fails
    and can be replayed through the API). Only https:// endpoints on public addresses
    are reached unless POINTCLEAR_WEBHOOK_DEV_TARGETS=1 (a demo or test receiver on
    this machine).

    Run it continuously (systemd, a container: SIGTERM or Ctrl-C finish the round in
    progress and exit) or with --once every minute from cron. Several workers may run
    at once on PostgreSQL: each claims its own deliveries (SKIP LOCKED). A delivery is
    sent at least once -- a worker that dies mid-round leaves its claims to be retried
    after a lease -- and always with the same event id, which receivers dedupe on.
    """
    try:
        key = signing.load_private_key(current_app.config["SIGNING_KEY"])
    except signing.SigningKeyMissing as exc:
        raise click.ClickException(str(exc)) from exc
    sessions, stop, totals = db.session_factory(), threading.Event(), Counter()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(f"delivering webhooks (batch {batch}, {concurrency} at a time); "
                   "SIGTERM or Ctrl-C to stop")
    report = None if quiet else (lambda result: click.echo(describe(result)))
    dev_targets = bool(current_app.config.get("WEBHOOK_DEV_TARGETS"))
    while not stop.is_set():
        try:
            results = deliver_due(sessions, key, batch=batch, timeout=timeout,
                                  concurrency=concurrency, partners=list(partners) or None,
                                  dev_targets=dev_targets, report=report)
        except Exception as exc:  # noqa: BLE001  (a long-running worker outlives outages)
            if once:
                raise
            # Claims of the failed round run out and are retried: nothing is lost.
            click.echo(f"round failed, retrying in {interval} s: {exc!r}", err=True)
            stop.wait(interval)
            continue
        totals.update(r.outcome.state for r in results)
        # A short round means nothing else is due (claim_due fills a batch past
        # deliveries it fails and past one partner's share while others have more).
        if len(results) < batch:
            if once:
                break
            stop.wait(interval)
    click.echo(f"delivered {totals['delivered']}, to retry {totals['pending']}, "
               f"failed {totals['failed']}"
               + (f", superseded {totals['superseded']}" if totals["superseded"] else "")
               + (f", handed back {totals['released']}" if totals["released"] else ""))


def init_app(app) -> None:
    app.cli.add_command(webhooks_cli)
