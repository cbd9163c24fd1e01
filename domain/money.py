"""Decimal money: currency minor units, parsing without binary floats, cumulative proration
(docs/contract.md, "Money and rounding")."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ZERO = Decimal(0)

# ISO 4217 minor units that differ from the usual 2; anything not listed has 2.
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}


class MoneyError(ValueError):
    """A value that cannot be read as an amount."""


def minor_units(currency: str | None, overrides: Mapping[str, int] | None = None) -> int:
    code = (currency or "").upper()
    if overrides and code in overrides:
        return overrides[code]
    return _MINOR_UNITS.get(code, 2)


def to_decimal(value: object) -> Decimal:
    """Read an amount from JSON: a Decimal (parsed from the number's text), an int, or a numeric string.

    A float is taken through its shortest repr so that 0.1 stays 0.1 and not its binary neighbour.
    """
    if isinstance(value, bool):
        raise MoneyError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise MoneyError(f"not an amount: {value!r}") from exc
    else:
        raise MoneyError(f"not an amount: {value!r}")
    if not result.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    return result


def quantize(amount: Decimal, places: int) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def fmt(amount: Decimal, places: int) -> str:
    """Money on the wire: a string with exactly the currency's minor digits ("270.60", JPY "1500")."""
    rounded = quantize(amount, places)
    return str(rounded.copy_abs() if rounded.is_zero() else rounded)


def cumulative_share(total: Decimal, units_after: int, units: int, places: int) -> Decimal:
    """round_half_up(total × k / n): what the first k of n units are worth, so that shares never drift."""
    if units <= 0:
        return ZERO
    return quantize(total * units_after / units, places)


def prorate_step(total: Decimal, units_before: int, units_after: int, units: int, places: int) -> Decimal:
    """The amount for going from k_before to k_after units of n: the difference of cumulative shares.

    1+1+1 units of a 10.00 line give 3.33, 3.34, 3.33 and always sum to exactly 10.00.
    """
    return cumulative_share(total, units_after, units, places) - cumulative_share(
        total, units_before, units, places
    )
