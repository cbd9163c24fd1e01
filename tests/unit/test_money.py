from decimal import Decimal

import pytest

from domain.money import MoneyError, fmt, minor_units, prorate_step, to_decimal


def test_one_plus_one_plus_one_units_of_ten_refund_333_334_333() -> None:
    steps = [prorate_step(Decimal("10.00"), k, k + 1, 3, 2) for k in range(3)]
    assert steps == [Decimal("3.33"), Decimal("3.34"), Decimal("3.33")]
    assert sum(steps) == Decimal("10.00")


def test_round_half_up_not_bankers() -> None:
    # 0.125 would round to 0.12 with ROUND_HALF_EVEN; money rounds half up.
    assert prorate_step(Decimal("0.25"), 0, 1, 2, 2) == Decimal("0.13")


@pytest.mark.parametrize(
    ("currency", "value", "text"),
    [
        ("AUD", "270.6", "270.60"),
        ("JPY", "1500", "1500"),
        ("KWD", "1.25", "1.250"),
        ("jpy", "1499.5", "1500"),
        (None, "1500", "1500.00"),
    ],
)
def test_minor_units_and_wire_format(currency: str | None, value: str, text: str) -> None:
    assert fmt(Decimal(value), minor_units(currency)) == text


def test_precision_override_and_negative_zero() -> None:
    assert minor_units("JPY", {"JPY": 2}) == 2
    assert fmt(Decimal("-0.001"), 2) == "0.00"


def test_to_decimal_reads_text_not_binary_float() -> None:
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal("12.50") == Decimal("12.50")
    assert to_decimal(Decimal("270.60")) == Decimal("270.60")
    for bad in ("abc", True, None, "NaN", float("inf")):
        with pytest.raises(MoneyError):
            to_decimal(bad)
