"""An authorisation that expires is reported as ``transaction.expired`` whichever path
books the expiry: the sweep (``pointclear authorisations expire``, or the older
``ledger expire-holds``) or the next spend of the member's points -- and only once."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from app.clearing import operations, redemptions
from app.clearing.models import Operation
from app.clearing.webhook_models import WebhookEvent
from ledger import resolution_of
from ledger.types import utcnow
from tests.clearing.conftest import T0, build_world

T1 = T0 + timedelta(hours=1)


def expiry_events(session, auth) -> list[tuple[str, str]]:
    return sorted(session.execute(
        select(WebhookEvent.type, WebhookEvent.partner_id)
        .join(Operation, Operation.id == WebhookEvent.operation_id)
        .where(Operation.related_id == auth.id, Operation.kind == "expiry")).all())


def _authorised(session, points=3_000, minutes=60):
    build_world(session)
    operations.issue(session, "banka", "c-1", "BANKA", 5_000, now=T0)
    return redemptions.authorise(session, "megamart", "mm-1", "BANKA", points,
                                 expires_in=timedelta(minutes=minutes), now=T1)


def test_the_next_spend_books_the_expiry_and_its_events(session):
    auth = _authorised(session)
    later = T1 + timedelta(hours=2)
    redemptions.redeem(session, "megamart", "mm-1", "BANKA", 5_000, now=later)
    assert resolution_of(session, auth.id).kind == "expiry"
    assert expiry_events(session, auth) == [("transaction.expired", "banka"),
                                            ("transaction.expired", "megamart")]
    # The sweep finds nothing left to do: one expiry, one pair of events.
    assert redemptions.expire_authorisations(session, now=later) == 0
    assert len(expiry_events(session, auth)) == 2


def test_the_sweep_books_the_expiry_once(session):
    auth = _authorised(session)
    assert redemptions.expire_authorisations(session, now=T1 + timedelta(minutes=59)) == 0
    assert expiry_events(session, auth) == []
    assert redemptions.expire_authorisations(session, now=T1 + timedelta(hours=1)) == 1
    assert redemptions.expire_authorisations(session, now=T1 + timedelta(hours=3)) == 0
    assert len(expiry_events(session, auth)) == 2
    event = session.scalar(select(WebhookEvent).join(
        Operation, Operation.id == WebhookEvent.operation_id).where(
        Operation.related_id == auth.id, WebhookEvent.partner_id == "megamart"))
    data = json.loads(event.payload)["data"]
    assert (data["kind"], data["related_id"], data["points"], data["customer_ref"]) == (
        "expiry", str(auth.id), 3_000, "mm-1")


def test_a_captured_or_voided_authorisation_never_expires(session):
    auth = _authorised(session, 100)
    other = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 100,
                                  expires_in=timedelta(minutes=60), now=T1)
    redemptions.capture(session, "megamart", auth.id, now=T1)
    redemptions.void(session, "megamart", other.id, now=T1)
    assert redemptions.expire_authorisations(session, now=T1 + timedelta(days=1)) == 0
    assert expiry_events(session, auth) == expiry_events(session, other) == []


def _lapsed_authorisation(app, sessions_of):
    from app.clearing.webhooks import create_subscription
    from ledger.unit_of_work import run

    past = utcnow() - timedelta(minutes=5)
    with app.app_context():
        sessions = sessions_of()

        def cast(s):
            build_world(s, past - timedelta(hours=1))
            operations.issue(s, "banka", "c-1", "BANKA", 500, now=past)
            create_subscription(s, "megamart", "https://mm.example/hooks", ["*"])
            return redemptions.authorise(s, "megamart", "mm-1", "BANKA", 200,
                                         expires_in=timedelta(minutes=1), now=past)
        return run(sessions, cast), sessions


def test_the_commands_book_expiries_with_their_events(app):
    from app import db

    auth, sessions = _lapsed_authorisation(app, db.session_factory)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["authorisations", "expire", "--batch", "1"])
    assert (result.exit_code, result.output.strip()) == (0, "expired 1 authorisation(s)")
    result = runner.invoke(args=["ledger", "expire-holds"])
    assert (result.exit_code, result.output.strip()) == (0, "expired 0 pending transaction(s)")
    with sessions() as s:
        assert expiry_events(s, auth) == [("transaction.expired", "banka"),
                                          ("transaction.expired", "megamart")]
        from app.clearing.webhook_models import WebhookDelivery
        (delivery,) = s.scalars(select(WebhookDelivery).join(
            WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id).where(
            WebhookEvent.type == "transaction.expired"))
        assert (delivery.partner_id, delivery.state) == ("megamart", "pending")
