"""Request and response shapes of the API (marshmallow 4), one instance per use.

Points are JSON integers. Money is integer minor units (fen for CNY) with its ISO 4217
``currency``; rates are decimal strings. Instants are RFC 3339 with a UTC offset. Unknown
fields are refused, so a typo in a field name is a 422 naming it, never silently ignored.
"""

from __future__ import annotations

from datetime import timezone

from marshmallow import Schema, ValidationError, fields, validate

from app.clearing.events import ALL_TYPES, EVENT_TYPES
from app.clearing.redemptions import MAX_AUTHORISATION
from app.clearing.webhook_models import DELIVERY_STATES

Points = lambda **kw: fields.Integer(strict=True, **kw)  # noqa: E731  (1.5 or "10" refused)
Ref = lambda **kw: fields.String(validate=validate.Length(1, 100), **kw)  # noqa: E731
Program = lambda **kw: fields.String(validate=validate.Length(1, 16), **kw)  # noqa: E731


class UTCInstant(fields.AwareDateTime):
    """An RFC 3339 instant with an offset, which must exist in UTC (years 1-9999)."""

    def _deserialize(self, value, attr, data, **kwargs):
        instant = super()._deserialize(value, attr, data, **kwargs)
        try:
            return instant.astimezone(timezone.utc)
        except OverflowError as exc:
            raise ValidationError("the instant is outside the calendar in UTC") from exc


class ContactSchema(Schema):
    name = fields.String(validate=validate.Length(max=200))
    email = fields.Email(validate=validate.Length(max=200))
    phone = fields.String(validate=validate.Length(max=200))


class EnrolSchema(Schema):
    customer_ref = Ref(required=True)
    contact = fields.Nested(ContactSchema)
    member_token = fields.String(validate=validate.Length(1, 200),
                                 metadata={"description": "a member token another partner "
                                           "issued: links this existing member"})


class TokenRequestSchema(Schema):
    ttl_seconds = fields.Integer(strict=True, load_default=900,
                                 validate=validate.Range(60, 3600))


class IssueSchema(Schema):
    customer_ref = Ref(required=True)
    program = Program(required=True)
    points = Points(required=True)
    reference = fields.String(validate=validate.Length(1, 200))


class RedeemSchema(IssueSchema):
    pass


class AuthoriseSchema(IssueSchema):
    expires_in_seconds = fields.Integer(
        strict=True, load_default=7 * 24 * 3600,
        validate=validate.Range(60, int(MAX_AUTHORISATION.total_seconds())))


class PartSchema(Schema):
    points = Points(metadata={"description": "omit for all that is left"})


class ConvertSchema(Schema):
    customer_ref = Ref(required=True)
    source = Program(required=True)
    target = Program(required=True)
    points = Points(required=True)
    reference = fields.String(validate=validate.Length(1, 200))


class ImportLineSchema(Schema):
    customer_ref = Ref(required=True)
    points = Points(required=True)
    earned_at = UTCInstant(required=True)
    reference = fields.String(validate=validate.Length(1, 200))


class ImportSchema(Schema):
    program = Program(required=True)
    lines = fields.List(fields.Nested(ImportLineSchema), required=True,
                        validate=validate.Length(1, 10_000))


class MemberTransactionQuerySchema(Schema):
    program = Program()
    kind = fields.String(validate=validate.OneOf(
        ("issue", "import", "redemption", "authorisation", "capture", "void", "refund",
         "clawback", "conversion", "expiry")))
    since = UTCInstant()
    until = UTCInstant()
    cursor = fields.String()
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class TransactionQuerySchema(MemberTransactionQuerySchema):
    customer_ref = Ref()


class PageQuerySchema(Schema):
    cursor = fields.String()
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


WEBHOOK_URL = ("absolute https:// URL whose host resolves to public addresses only, no "
               "credentials, no fragment (http:// and private addresses only where the "
               "platform enables development targets)")


class SubscribeSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(1, 2000),
                        metadata={"description": WEBHOOK_URL})
    events = fields.List(
        fields.String(validate=validate.OneOf((*EVENT_TYPES, ALL_TYPES))), required=True,
        validate=validate.Length(1, len(EVENT_TYPES) + 1),
        metadata={"description": f"event types ({', '.join(EVENT_TYPES)}), or "
                                 f"[\"{ALL_TYPES}\"] for every type, future ones too"})


class SubscriptionUrlSchema(Schema):
    url = fields.String(required=True, validate=validate.Length(1, 2000),
                        metadata={"description": f"the new endpoint: {WEBHOOK_URL}"})


class DeliveryQuerySchema(PageQuerySchema):
    event_id = fields.UUID()
    state = fields.String(validate=validate.OneOf(DELIVERY_STATES))
    subscription_id = fields.String(validate=validate.Length(1, 40))


# --- responses -----------------------------------------------------------------------------

class MoneySchema(Schema):
    currency = fields.String()
    gross = fields.Integer(metadata={"description": "minor units the program's owner pays"})
    fee = fields.Integer(metadata={"description": "minor units the platform keeps (fee or "
                                   "spread)"})
    net = fields.Integer(metadata={"description": "minor units the other side receives"})


class OperationSchema(Schema):
    id = fields.UUID()
    kind = fields.String()
    status = fields.String(metadata={"description": "posted; for an authorisation pending, "
                                     "captured, voided or expired"})
    partner = fields.String(allow_none=True)
    counterparty = fields.String(allow_none=True)
    member_id = fields.String()
    customer_ref = fields.String(allow_none=True)
    program = fields.String()
    points = fields.Integer()
    target_program = fields.String(allow_none=True)
    target_points = fields.Integer(allow_none=True)
    money = fields.Nested(MoneySchema, allow_none=True)
    agreement_id = fields.String(allow_none=True)
    terms_version = fields.Integer(allow_none=True)
    related_id = fields.UUID(allow_none=True)
    reference = fields.String(allow_none=True)
    expires_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()


class LinkSchema(Schema):
    customer_ref = fields.String()
    member_id = fields.String()
    status = fields.String()
    contact = fields.Nested(ContactSchema, allow_none=True)
    linked_at = fields.AwareDateTime()


class ExpirySchema(Schema):
    expires_at = fields.AwareDateTime()
    points = fields.Integer()


class BalanceSchema(Schema):
    program = fields.String()
    program_name = fields.String()
    available = fields.Integer(metadata={"description": "points that can be spent now"})
    pending = fields.Integer(metadata={"description": "points held by authorisations"})
    expired_unbooked = fields.Integer(metadata={"description": "expired points the expiry "
                                                "job has not booked yet"})
    value = fields.Integer(allow_none=True, metadata={"description": "available x value per "
                                                      "point, minor units"})
    currency = fields.String(allow_none=True)
    next_expiries = fields.List(fields.Nested(ExpirySchema))


class SubscriptionSchema(Schema):
    id = fields.String(metadata={"description": "whs_..."})
    url = fields.String()
    events = fields.List(fields.String())
    status = fields.String(metadata={"description": "active or disabled"})
    created_at = fields.AwareDateTime()
    disabled_at = fields.AwareDateTime(allow_none=True)


class AttemptSchema(Schema):
    attempted_at = fields.AwareDateTime()
    status = fields.Integer(allow_none=True, metadata={"description": "the HTTP status "
                                                       "the endpoint answered"})
    error = fields.String(allow_none=True, metadata={"description": "why it was not 2xx: "
                                                     "http_<status>, connection_failed, "
                                                     "timeout, tls_error or "
                                                     "refused_address"})
    duration_ms = fields.Integer()


class DeliverySchema(Schema):
    id = fields.UUID()
    event_id = fields.UUID(metadata={"description": "the Pointclear-Webhook-Id sent"})
    event_type = fields.String()
    event_created_at = fields.AwareDateTime()
    subscription_id = fields.String()
    state = fields.String(metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer(metadata={"description": "attempts since queued or replayed"})
    next_attempt_at = fields.AwareDateTime(allow_none=True)
    last_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True, metadata={
        "description": "the last attempt's category (as in attempt_log), or "
                       "\"subscription disabled\""})
    delivered_at = fields.AwareDateTime(allow_none=True)
    created_at = fields.AwareDateTime()
    attempt_log = fields.List(fields.Nested(AttemptSchema),
                              metadata={"description": "every attempt, oldest first"})


class WebhookEventSchema(Schema):
    id = fields.UUID(metadata={"description": "the event id, also in Pointclear-Webhook-Id; "
                               "the same on every retry and replay"})
    type = fields.String(metadata={"description": ", ".join(EVENT_TYPES)})
    created_at = fields.AwareDateTime()
    partner = fields.String(metadata={"description": "the recipient partner"})
    data = fields.Nested(OperationSchema, metadata={"description": "the operation as the "
                                                    "recipient sees it in /v1/transactions"})


class EmptySchema(Schema):
    """A body with no fields (``{}`` or none at all)."""
