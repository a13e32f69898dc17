"""The outbox: events are written with the booking, in its transaction, one per party
partner, typed by the operation's kind, carrying the operation as the API shows it; and
deliveries are made for the matching active subscriptions only."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app.clearing import (
    conversions,
    events,
    imports,
    operations,
    presentation,
    redemptions,
    webhooks,
)
from app.clearing.errors import InsufficientPoints
from app.clearing.models import Operation
from app.clearing.webhook_models import WebhookDelivery, WebhookEvent
from tests.clearing.conftest import T0, build_world

T1 = T0 + timedelta(hours=1)


@pytest.fixture
def world(session):
    w = build_world(session)
    operations.issue(session, "banka", "c-1", "BANKA", 5_000, now=T0)
    return w


def events_of(session, op) -> list[WebhookEvent]:
    return list(session.scalars(select(WebhookEvent).where(WebhookEvent.operation_id == op.id)
                                .order_by(WebhookEvent.partner_id)))


def test_an_issue_writes_one_event_for_the_issuer_as_the_api_shows_it(session, world):
    op = operations.issue(session, "banka", "c-1", "BANKA", 100, reference="r-1", now=T1)
    (event,) = events_of(session, op)
    payload = json.loads(event.payload)
    assert (event.type, event.partner_id, event.created_at) == ("transaction.posted", "banka",
                                                                T1)
    assert set(payload) == {"id", "type", "created_at", "partner", "data"}
    assert (payload["id"], payload["type"], payload["partner"]) == (
        str(event.id), "transaction.posted", "banka")
    assert payload["created_at"] == T1.isoformat()
    api_view = json.loads(events.dumps(presentation.operation(session, op, "banka", T1)))
    assert payload["data"] == api_view
    assert (payload["data"]["customer_ref"], payload["data"]["points"]) == ("c-1", 100)


def test_a_redemption_writes_one_event_per_party_each_seeing_its_own_customer(session, world):
    op = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 2_000, now=T1)
    banka, megamart = events_of(session, op)
    assert (banka.partner_id, megamart.partner_id) == ("banka", "megamart")
    assert {e.type for e in (banka, megamart)} == {"transaction.posted"}
    seen = {e.partner_id: json.loads(e.payload)["data"] for e in (banka, megamart)}
    assert (seen["banka"]["customer_ref"], seen["megamart"]["customer_ref"]) == ("c-1", "mm-1")
    assert seen["banka"]["money"] == {"currency": "CNY", "gross": 2000, "fee": 40, "net": 1960}
    assert banka.id != megamart.id


def test_an_owner_redeeming_its_own_points_is_the_only_party(session, world):
    op = redemptions.redeem(session, "banka", "c-1", "BANKA", 10, now=T1)
    assert [e.partner_id for e in events_of(session, op)] == ["banka"]


def _scenario(session):
    """One operation of every kind; returns {label: operation}."""
    ops = {"issue": operations.issue(session, "banka", "c-1", "BANKA", 1_000, now=T1)}
    ops["import"] = imports.import_points(session, "banka", "BANKA", [
        {"customer_ref": "c-1", "points": 10, "earned_at": T0},
        {"customer_ref": "c-1", "points": 20, "earned_at": T0}], now=T1)[1]
    ops["redemption"] = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 500, now=T1)
    ops["refund"] = redemptions.refund(session, "megamart", ops["redemption"].id, 100, now=T1)
    ops["authorisation"] = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 300,
                                                 expires_in=timedelta(hours=1), now=T1)
    ops["capture"] = redemptions.capture(session, "megamart", ops["authorisation"].id, 200,
                                         now=T1)
    held = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 50, now=T1)
    ops["void"] = redemptions.void(session, "megamart", held.id, now=T1)
    ops["clawback"] = operations.clawback(session, "banka", ops["issue"].id, 100, now=T1)
    ops["conversion"] = conversions.convert(session, "skyair", "sa-1", "BANKA", "SKYMILES",
                                            1_000, now=T1)
    lapsing = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 40,
                                    expires_in=timedelta(minutes=1), now=T1)
    redemptions.expire_authorisations(session, now=T1 + timedelta(minutes=1))
    ops["expiry"] = session.scalar(select(Operation).where(Operation.related_id == lapsing.id))
    return ops


EXPECTED = {
    "issue": ("transaction.posted", ["banka"]),
    "import": ("transaction.posted", ["banka"]),
    "redemption": ("transaction.posted", ["banka", "megamart"]),
    "refund": ("transaction.reversed", ["banka", "megamart"]),
    "authorisation": ("transaction.authorised", ["banka", "megamart"]),
    "capture": ("transaction.posted", ["banka", "megamart"]),
    "void": ("transaction.voided", ["banka", "megamart"]),
    "clawback": ("transaction.reversed", ["banka"]),
    "conversion": ("transaction.posted", ["banka", "skyair"]),
    "expiry": ("transaction.expired", ["banka", "megamart"]),
}


def test_every_kind_has_its_event_type_and_parties(session, world):
    ops = _scenario(session)
    assert set(ops) == set(EXPECTED) == set(events._TYPE_OF_KIND)
    for label, op in ops.items():
        assert op.kind == label
        found = events_of(session, op)
        assert ([e.type for e in found], [e.partner_id for e in found]) == (
            [EXPECTED[label][0]] * len(EXPECTED[label][1]), EXPECTED[label][1]), label
        for event in found:
            payload = json.loads(event.payload)
            assert (payload["type"], payload["data"]["kind"], payload["data"]["id"]) == (
                event.type, label, str(op.id))


def test_an_authorisation_event_shows_it_pending_and_its_expiry_event_points_at_it(session,
                                                                                   world):
    auth = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 40,
                                 expires_in=timedelta(minutes=5), now=T1)
    data = json.loads(events_of(session, auth)[0].payload)["data"]
    assert (data["status"], data["expires_at"]) == ("pending", (T1 + timedelta(minutes=5))
                                                    .isoformat())
    assert redemptions.expire_authorisations(session, now=T1 + timedelta(minutes=4)) == 0
    assert redemptions.expire_authorisations(session, now=T1 + timedelta(minutes=5)) == 1
    expiry = session.scalar(select(Operation).where(Operation.related_id == auth.id))
    assert (expiry.kind, expiry.partner_id, expiry.points, expiry.gross) == (
        "expiry", "megamart", 40, None)
    data = json.loads(events_of(session, expiry)[1].payload)["data"]
    assert (data["kind"], data["related_id"], data["money"]) == ("expiry", str(auth.id), None)


def test_an_import_writes_one_event_per_line(session, world):
    lines = [{"customer_ref": "c-1", "points": p, "earned_at": T0} for p in range(1, 8)]
    ops = imports.import_points(session, "banka", "BANKA", lines, now=T1)
    assert [len(events_of(session, op)) for op in ops] == [1] * 7


def test_a_refused_operation_writes_no_event(session, world):
    before = session.scalar(select(func.count()).select_from(WebhookEvent))
    with pytest.raises(InsufficientPoints):
        redemptions.redeem(session, "megamart", "mm-1", "BANKA", 999_999, now=T1)
    assert session.scalar(select(func.count()).select_from(WebhookEvent)) == before


def test_an_idempotent_retry_publishes_nothing_again(session, world):
    first = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 10, idempotency_key="k1",
                               now=T1)
    again = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 10, idempotency_key="k1",
                               now=T1)
    assert again.id == first.id and len(events_of(session, first)) == 2


def test_deliveries_go_to_matching_active_subscriptions_only(session, world):
    posted = webhooks.create_subscription(session, "megamart", "https://mm.example/posted",
                                          ["transaction.posted"], now=T0)
    everything = webhooks.create_subscription(session, "megamart", "https://mm.example/all",
                                              ["*"], now=T0)
    stopped = webhooks.create_subscription(session, "megamart", "https://mm.example/off",
                                           ["*"], now=T0)
    webhooks.disable_subscription(session, "megamart", stopped.id, now=T0)
    webhooks.create_subscription(session, "skyair", "https://sky.example/", ["*"], now=T0)
    spent = redemptions.redeem(session, "megamart", "mm-1", "BANKA", 10, now=T1)
    held = redemptions.authorise(session, "megamart", "mm-1", "BANKA", 10, now=T1)

    def subscriptions_reached(op):
        return sorted(session.scalars(
            select(WebhookDelivery.subscription_id).join(
                WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookEvent.operation_id == op.id)))

    assert subscriptions_reached(spent) == sorted([posted.id, everything.id])
    assert subscriptions_reached(held) == [everything.id]
    delivery = session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.subscription_id == everything.id)).first()
    assert (delivery.state, delivery.attempts, delivery.next_attempt_at, delivery.partner_id) \
        == ("pending", 0, T1, "megamart")


def test_events_are_append_only(session, world):
    op = operations.issue(session, "banka", "c-1", "BANKA", 1, now=T1)
    (event,) = events_of(session, op)
    with pytest.raises(DBAPIError):
        with session.begin_nested():
            session.execute(text("UPDATE webhook_events SET payload = '{}' WHERE id = :id"),
                            {"id": event.id.hex if session.bind.dialect.name == "sqlite"
                             else event.id})
