"""What the API answers, as small frozen dataclasses.

Why dataclasses rather than TypedDicts: attribute access that a type checker follows,
``datetime`` instants instead of strings, and immutability -- an operation is a booked
fact. Each keeps the answer it was read from as ``raw`` (a dict), so a field the
platform adds later is readable before the SDK names it. Lists and reads without a
model here (the partner, programs, agreements) come back as plain dicts.

Points are ``int``; money is ``int`` minor units with its ``currency``; rates stay
decimal strings as the API sends them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def parse_instant(value: Any) -> datetime | None:
    """An RFC 3339 instant as an aware datetime (None stays None)."""
    if value is None:
        return None
    text = str(value)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Money:
    """The money side of an operation, in integer minor units of ``currency``.

    Attributes:
      gross: what the program's owner pays. fee: what the platform keeps (a fee, or a
      conversion's spread). net: what the other side receives (gross - fee).
    """

    currency: str
    gross: int
    fee: int
    net: int

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Money | None:
        if data is None:
            return None
        return cls(data["currency"], data["gross"], data["fee"], data["net"])


@dataclass(frozen=True)
class Posting:
    """One ledger posting of an operation (``transactions.get`` only)."""

    account: str
    side: str
    amount: int
    unit: str


@dataclass(frozen=True)
class Operation:
    """One booked operation (issue, redemption, authorisation, capture, refund...).

    Attributes:
      id: the operation id (a UUID string); pass it to refund, capture, void, clawback.
      kind: issue, import, redemption, authorisation, capture, void, refund, clawback,
        conversion or expiry.
      status: posted; for an authorisation pending, captured, voided or expired.
      customer_ref: the member as the calling partner knows them (None if not linked).
      money: None for operations that move no money. Fields the member API does not
        show (money, partner terms, references) are None there.
      postings: the ledger postings, only from ``transactions.get``.
      raw: the dict this was read from.
    """

    id: str
    kind: str
    status: str
    member_id: str
    program: str
    points: int
    created_at: datetime | None
    partner: str | None = None
    counterparty: str | None = None
    customer_ref: str | None = None
    target_program: str | None = None
    target_points: int | None = None
    money: Money | None = None
    agreement_id: str | None = None
    terms_version: int | None = None
    related_id: str | None = None
    reference: str | None = None
    expires_at: datetime | None = None
    postings: tuple[Posting, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Operation:
        g = data.get
        return cls(
            id=str(data["id"]), kind=data["kind"], status=g("status", "posted"),
            member_id=g("member_id", ""), program=g("program", ""), points=g("points", 0),
            created_at=parse_instant(g("created_at")), partner=g("partner"),
            counterparty=g("counterparty"), customer_ref=g("customer_ref"),
            target_program=g("target_program"), target_points=g("target_points"),
            money=Money.from_dict(g("money")), agreement_id=g("agreement_id"),
            terms_version=g("terms_version"),
            related_id=None if g("related_id") is None else str(g("related_id")),
            reference=g("reference"), expires_at=parse_instant(g("expires_at")),
            postings=tuple(Posting(p["account"], p["side"], p["amount"], p["unit"])
                           for p in g("postings") or ()),
            raw=dict(data))


@dataclass(frozen=True)
class Link:
    """A customer of the partner linked to a platform member.

    Attributes:
      contact: the member's contact data, only to the partner that enrolled them.
    """

    customer_ref: str
    member_id: str
    status: str
    linked_at: datetime | None
    contact: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Link:
        return cls(customer_ref=data["customer_ref"], member_id=data["member_id"],
                   status=data.get("status", ""), linked_at=parse_instant(data.get("linked_at")),
                   contact=data.get("contact"), raw=dict(data))


@dataclass(frozen=True)
class Expiry:
    """``points`` of a balance expire at ``expires_at``."""

    expires_at: datetime | None
    points: int


@dataclass(frozen=True)
class Balance:
    """A member's balance in one program.

    Attributes:
      available: points that can be spent now. pending: points held by authorisations.
      expired_unbooked: expired points the expiry job has not booked yet.
      value: available x value per point, in minor units of ``currency`` (None: no rate).
    """

    program: str
    available: int
    pending: int
    program_name: str | None = None
    expired_unbooked: int = 0
    value: int | None = None
    currency: str | None = None
    next_expiries: tuple[Expiry, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Balance:
        return cls(program=data["program"], available=data["available"],
                   pending=data.get("pending", 0), program_name=data.get("program_name"),
                   expired_unbooked=data.get("expired_unbooked", 0), value=data.get("value"),
                   currency=data.get("currency"),
                   next_expiries=tuple(Expiry(parse_instant(e.get("expires_at")), e["points"])
                                       for e in data.get("next_expiries") or ()),
                   raw=dict(data))


@dataclass(frozen=True)
class Balances:
    """A member's balances: per program, with ``customer_ref`` (partner API) or
    ``member_id`` (member API). ``balances[code]`` is the :class:`Balance` of a program."""

    items: tuple[Balance, ...]
    customer_ref: str | None = None
    member_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Balances:
        return cls(items=tuple(Balance.from_dict(b) for b in data.get("balances", ())),
                   customer_ref=data.get("customer_ref"), member_id=data.get("member_id"),
                   raw=dict(data))

    def __getitem__(self, program: str) -> Balance:
        for balance in self.items:
            if balance.program == program:
                return balance
        raise KeyError(program)

    def __iter__(self) -> Iterator[Balance]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class MemberToken:
    """A short-lived member token: the member API's Bearer credential, and what another
    partner passes to ``members.link(member_token=...)``. Keep it secret."""

    token: str
    expires_at: datetime | None
    token_type: str = "Bearer"
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemberToken:
        return cls(token=data["token"], expires_at=parse_instant(data.get("expires_at")),
                   token_type=data.get("token_type", "Bearer"), raw=dict(data))

    def __repr__(self) -> str:  # never print the secret
        return f"MemberToken(token='{self.token[:5]}...', expires_at={self.expires_at!r})"
