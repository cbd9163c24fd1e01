"""The chaos verifier must see each kind of failure it reports on; otherwise a green chaos run proves
nothing. Outputs here are hand-made in the shape the output topics carry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain import names
from testkit.chaos import verify


def refund(message_id: str, number: str, gross: str = "10.00") -> dict[str, Any]:
    value = {"params": {"refund": {"credit_note_number": number, "totals": {"cost_gross": gross}}}}
    return {
        "topic": names.REFUND_UPDATED,
        "key": "S:1",
        "partition": 0,
        "offset": 0,
        "headers": {"message_id": message_id},
        "value": value,
    }


def adjusted(message_id: str, key: str, quantity: int, on_hand: int, offset: int) -> dict[str, Any]:
    item = {
        "sku": key.split(":")[1],
        "quantity": quantity,
        "on_hand": on_hand,
        "reserved": 0,
        "available_to_sell": on_hand,
    }
    return {
        "topic": names.STOCK_ADJUSTED,
        "key": key,
        "partition": 1,
        "offset": offset,
        "headers": {"message_id": message_id},
        "value": {"params": {"adjustment": {"adjustments": [item]}}},
    }


EXPECTED = [
    refund("r1", "CN-S-0-000001"),
    refund("r2", "CN-S-0-000002"),
    adjusted("m1", "SRC:A", 5, 5, 0),
    adjusted("m2", "SRC:A", -1, 4, 1),
]


def test_the_same_outputs_pass() -> None:
    verdict = verify(list(EXPECTED), EXPECTED)
    assert verdict.ok and verdict.redeliveries == 0


def test_a_repeat_with_the_same_id_and_content_is_a_redelivery() -> None:
    verdict = verify([*EXPECTED, refund("r2", "CN-S-0-000002")], EXPECTED)
    assert verdict.ok and verdict.redeliveries == 1


def test_a_missing_output_is_lost() -> None:
    verdict = verify(EXPECTED[1:], EXPECTED)
    assert verdict.lost == [(names.REFUND_UPDATED, "r1")] and not verdict.ok


def test_a_second_credit_note_for_a_cause_is_a_double_effect() -> None:
    verdict = verify([*EXPECTED, refund("r3", "CN-S-0-000003")], EXPECTED)
    assert verdict.doubled == [(names.REFUND_UPDATED, "r3")]
    assert any("differs from replay" in p for p in verdict.problems)


def test_the_same_id_with_other_content_is_a_double_effect() -> None:
    verdict = verify([*EXPECTED, refund("r2", "CN-S-0-000003", gross="20.00")], EXPECTED)
    assert verdict.doubled == [(names.REFUND_UPDATED, "r2")] and verdict.redeliveries == 0


def test_a_gap_in_a_credit_note_series_is_reported() -> None:
    found = [refund("r1", "CN-S-0-000001"), refund("r2", "CN-S-0-000003"), *EXPECTED[2:]]
    verdict = verify(found, EXPECTED)
    assert any("has gaps" in p for p in verdict.problems)


def test_a_movement_applied_twice_is_a_double_effect() -> None:
    # The same id and change twice, but the levels after it differ: applied twice, not redelivered.
    verdict = verify([*EXPECTED, adjusted("m2", "SRC:A", -1, 3, 2)], EXPECTED)
    assert verdict.doubled == [(names.STOCK_ADJUSTED, "m2")] and verdict.redeliveries == 0
    assert any(p.startswith("stock SRC:A") for p in verdict.problems)


def test_a_redelivered_stock_adjustment_is_not_a_double_effect() -> None:
    verdict = verify([*EXPECTED, adjusted("m2", "SRC:A", -1, 4, 2)], EXPECTED)
    assert verdict.ok and verdict.redeliveries == 1


def test_levels_in_between_may_differ_from_replay_but_not_the_final_ones() -> None:
    # Movements of one SKU from two order partitions may interleave otherwise than in replay.
    found = [adjusted("m2", "SRC:A", -1, -1, 0), adjusted("m1", "SRC:A", 5, 4, 1), *EXPECTED[:2]]
    assert verify(found, EXPECTED).ok
    found[1] = adjusted("m1", "SRC:A", 5, 6, 1)
    assert not verify(found, EXPECTED).ok


# A run that expects nothing, or nothing of what it checks, proves nothing: it is refused, not passed.


def test_an_empty_expectation_is_refused() -> None:
    verdict = verify([], [])
    assert not verdict.ok
    assert "replay expects no outputs at all: nothing to verify" in verdict.problems


def test_an_expectation_without_credit_notes_is_refused() -> None:
    stock_only = EXPECTED[2:]
    verdict = verify(list(stock_only), stock_only)
    assert verdict.problems == ["replay expects no credit notes: the series cannot be verified"]
    assert not verdict.ok


def test_an_expectation_without_stock_is_refused() -> None:
    refunds_only = EXPECTED[:2]
    verdict = verify(list(refunds_only), refunds_only)
    assert verdict.problems == ["replay expects no stock adjustments: stock cannot be verified"]
    assert not verdict.ok


def test_a_log_shorter_than_asked_is_refused() -> None:
    verdict = verify(list(EXPECTED), EXPECTED, messages=599, asked=600)
    assert verdict.problems == ["the log holds 599 messages, fewer than the 600 asked for"]
    assert not verdict.ok


def test_a_log_of_the_size_asked_passes() -> None:
    assert verify(list(EXPECTED), EXPECTED, messages=600, asked=600).ok


def test_outputs_carrying_decimal_numbers_are_compared_too() -> None:
    """An exchange's child order carries its amounts as JSON numbers, read back as Decimal."""
    child = {"params": {"order": {"id": "E1-1", "lines": [{"amount": {"gross_amount": Decimal("36.67")}}]}}}
    created = {"topic": names.ORDER_CREATED, "key": "S:1", "partition": 0, "offset": 0, "headers": {}}
    expected = [{**created, "value": child}, refund("r1", "CN-S-0-000001"), adjusted("a1", "SRC:X", -1, 9, 0)]
    assert verify(expected, expected).ok
    other = {"params": {"order": {"id": "E1-1", "lines": [{"amount": {"gross_amount": Decimal("36.68")}}]}}}
    differs = verify([{**created, "value": other}, *expected[1:]], expected)
    assert len(differs.lost) == 1 and len(differs.doubled) == 1
