"""Units of account: ISO 4217 currencies and points programs.

An amount is always a Python ``int`` counted in the unit's smallest step (fen, cent,
point). Nothing here converts between units: that is the business of whoever books a
transaction, with ``Decimal`` rates and an explicit rounding account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidAmount, InvalidUnit

#: The largest single amount the ledger accepts: 10^12 minor units (ten billion yuan in
#: fen, a trillion points). Running totals are BIGINT (9.2e18), so an account can take
#: over nine million maximal postings before a total could overflow, and "absurdly
#: large" input is refused with a clear error rather than met by an overflow.
MAX_AMOUNT = 10**12

# ISO 4217 active codes with their minor-unit exponent. Kept to the currencies a
# clearing house in the region settles in plus the majors; add rows as partners need.
CURRENCY_EXPONENTS: dict[str, int] = {
    "AED": 2, "AUD": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "CZK": 2, "DKK": 2,
    "EUR": 2, "GBP": 2, "HKD": 2, "IDR": 2, "ILS": 2, "INR": 2, "JPY": 0, "KRW": 0,
    "KWD": 3, "MOP": 2, "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2, "PHP": 2, "PLN": 2,
    "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TRY": 2, "TWD": 2, "USD": 2, "VND": 0,
    "ZAR": 2, "BHD": 3, "OMR": 3,
}

# A points program code: 4-16 characters, upper-case letters, digits and underscore,
# starting with a letter. Three-letter codes are reserved for currencies so a unit
# code alone always says which kind it is.
_PROGRAM_CODE = re.compile(r"^[A-Z][A-Z0-9_]{3,15}$")


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of account.

    Attributes:
      code: ``CNY`` or ``SKYMILES``.
      kind: ``"currency"`` or ``"points"``.
      exponent: decimal places of the minor unit (2 for CNY, 0 for points).
    """

    code: str
    kind: str
    exponent: int

    @property
    def is_currency(self) -> bool:
        return self.kind == "currency"


def parse_unit(code: object) -> Unit:
    """Return the :class:`Unit` for ``code`` or raise :class:`InvalidUnit`."""
    if not isinstance(code, str):
        raise InvalidUnit("unit must be a string", field="unit")
    if code in CURRENCY_EXPONENTS:
        return Unit(code, "currency", CURRENCY_EXPONENTS[code])
    if _PROGRAM_CODE.match(code):
        return Unit(code, "points", 0)
    raise InvalidUnit(
        f"{code!r} is neither an ISO 4217 currency we settle in nor a points program code "
        "(4-16 of A-Z, 0-9, _ starting with a letter)",
        field="unit",
    )


def is_currency(code: object) -> bool:
    """Is ``code`` an ISO 4217 currency we settle in?"""
    return isinstance(code, str) and code in CURRENCY_EXPONENTS


def check_amount(amount: object, *, field: str = "amount") -> int:
    """Return ``amount`` if it is a valid positive integer amount, else raise.

    ``bool`` is refused although it is an ``int`` subclass, and so is every float,
    Decimal or string: a caller that has a non-integer amount has a rounding bug.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(
            f"amount must be an integer number of minor units, got {type(amount).__name__}",
            field=field,
        )
    if amount <= 0:
        raise InvalidAmount(f"amount must be greater than zero, got {amount}", field=field)
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"amount must be at most {MAX_AMOUNT}, got {amount}", field=field)
    return amount
