"""Money for points: every amount an operation books, computed exactly.

Rates are ``Decimal``; amounts are ``int`` minor units of the currency. The rules:

- A money amount for points is ``points x rate`` in minor units, rounded half up to a
  whole minor unit (``round_half_up``) -- once, on the whole line, never per point.
- A redemption's *gross* is what the program's owner pays; the platform's *fee* is the
  fee rate of the gross, rounded half up; the redeemer gets ``gross - fee``. The three
  balance by construction, so no rounding account is needed.
- A conversion turns ``p`` source points into ``floor(p x ratio)`` target points (no
  member is ever credited a fraction); the source owner *pays* ``p x value``, the target
  owner *receives* ``target points x target value``, and the platform keeps the rest as
  *spread*, which is never negative (the agreement's terms guarantee it and rounding the
  smaller product can only give the smaller amount).
- Part of an operation (a partial capture or refund) is priced *cumulatively*: the
  n-th refund of a redemption moves ``amounts(refunded so far + this) - amounts(refunded
  so far)``, so all parts together add up to exactly the whole, never a minor unit more.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from ledger.units import CURRENCY_EXPONENTS


def round_half_up(points: int, rate: Decimal, currency: str) -> int:
    """``points x rate`` units of ``currency`` in minor units, rounded half up."""
    minor = Decimal(points) * rate * (Decimal(10) ** CURRENCY_EXPONENTS[currency])
    return int(minor.to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class RedemptionAmounts:
    """Attributes: gross (owner pays), fee (platform keeps), net (redeemer gets)."""

    gross: int
    fee: int

    @property
    def net(self) -> int:
        return self.gross - self.fee

    def __sub__(self, other: "RedemptionAmounts") -> "RedemptionAmounts":
        return RedemptionAmounts(self.gross - other.gross, self.fee - other.fee)


def redemption(points: int, value_per_point: Decimal, fee_rate: Decimal,
               currency: str) -> RedemptionAmounts:
    gross = round_half_up(points, value_per_point, currency)
    fee = int((Decimal(gross) * fee_rate).to_integral_value(rounding=ROUND_HALF_UP))
    return RedemptionAmounts(gross, fee)


def redemption_part(done: int, part: int, value_per_point: Decimal, fee_rate: Decimal,
                    currency: str) -> RedemptionAmounts:
    """The amounts of ``part`` more points after ``done`` were already moved."""
    return (redemption(done + part, value_per_point, fee_rate, currency)
            - redemption(done, value_per_point, fee_rate, currency))


@dataclass(frozen=True)
class ConversionAmounts:
    """Attributes: target_points, paid (source owner pays), received (target owner
    gets); spread = paid - received (the platform keeps)."""

    target_points: int
    paid: int
    received: int

    @property
    def spread(self) -> int:
        return self.paid - self.received


def target_points(points: int, ratio: Decimal) -> int:
    return int((Decimal(points) * ratio).to_integral_value(rounding=ROUND_FLOOR))


def conversion(points: int, ratio: Decimal, value_per_point: Decimal,
               target_value_per_point: Decimal, currency: str) -> ConversionAmounts:
    target = target_points(points, ratio)
    return ConversionAmounts(target, round_half_up(points, value_per_point, currency),
                             round_half_up(target, target_value_per_point, currency))


def value_part(done: int, part: int, rate: Decimal, currency: str) -> int:
    """Money for ``part`` more points at ``rate`` after ``done`` (cumulative rounding)."""
    return round_half_up(done + part, rate, currency) - round_half_up(done, rate, currency)
