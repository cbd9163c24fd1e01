from datetime import UTC, date, datetime

import pytest

from domain.rules import RulesError, parse_rules


def test_defaults_apply_when_the_file_is_empty() -> None:
    book = parse_rules({})
    rules = book.for_channel("ANY")
    assert rules.shipping_refund_rule == "onLast"
    assert rules.refund_on == "approval"
    assert rules.unknown_order == "reject"


def test_channel_tables_override_defaults_key_by_key() -> None:
    book = parse_rules(
        {
            "defaults": {"auto_approve_return": False, "default_source": "WH"},
            "sales_channels": {
                "ST1": {"shipping_refund_rule": "onFirst", "integration_date": date(2026, 1, 1)}
            },
        }
    )
    st1 = book.for_channel("ST1")
    assert st1.shipping_refund_rule == "onFirst"
    assert st1.auto_approve_return is False and st1.default_source == "WH"
    assert st1.integration_date == datetime(2026, 1, 1, tzinfo=UTC)
    assert book.for_channel("OTHER").shipping_refund_rule == "onLast"


def test_iso_string_dates_are_taken() -> None:
    book = parse_rules({"sales_channels": {"A": {"integration_date": "2026-03-01T00:00:00+01:00"}}})
    assert book.for_channel("A").integration_date == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"defaults": {"shiping_refund_rule": "onFirst"}}, "defaults.shiping_refund_rule"),
        (
            {"sales_channels": {"ST1": {"shipping_refund_rule": "sometimes"}}},
            "sales_channels.ST1.shipping_refund_rule",
        ),
        (
            {"sales_channels": {"ST1": {"auto_approve_return": "perhaps"}}},
            "sales_channels.ST1.auto_approve_return",
        ),
        ({"defaults": {"unknown_order_hold_minutes": -1}}, "defaults.unknown_order_hold_minutes"),
        ({"channels": {}}, "channels"),
        ({"sales_channels": {"ST1": 3}}, "sales_channels.ST1"),
    ],
)
def test_a_bad_rules_file_is_refused_with_the_key_named(raw: dict[str, object], named: str) -> None:
    with pytest.raises(RulesError) as error:
        parse_rules(raw)
    assert str(error.value).startswith(named)


def test_restock_conditions_compare_case_insensitively() -> None:
    rules = parse_rules({"defaults": {"restock_conditions": ["good"]}}).defaults
    assert rules.restocks("Good") and not rules.restocks("DAMAGED") and not rules.restocks(None)


@pytest.mark.parametrize(
    ("key", "toml_value", "value"),
    [
        ("auto_approve_return", '"yes"', "yes"),
        ("auto_approve_return", "1", 1),
        ("auto_approve_return", '"true"', "true"),
        ("auto_release_refund", "0", 0),
        ("reorder_window_seconds", '"30"', "30"),
        ("reorder_window_seconds", "true", True),
        ("reorder_window_seconds", "30.0", 30.0),
        ("unknown_order_hold_minutes", '"60"', "60"),
        ("return_window_days", '"30"', "30"),
        ("retain_days", "false", False),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_not_coerced(key: str, toml_value: str, value: object) -> None:
    with pytest.raises(RulesError) as error:
        parse_rules({"sales_channels": {"ST1": {key: value}}})
    message = str(error.value)
    assert message.startswith(f"sales_channels.ST1.{key}: ") and "\n" not in message
    assert message.endswith(f"(got {toml_value})")


def test_currency_digits_must_be_integers() -> None:
    with pytest.raises(RulesError) as error:
        parse_rules({"defaults": {"currency_precision": {"JPY": "0"}}})
    assert str(error.value) == 'defaults.currency_precision.JPY: Input should be a valid integer (got "0")'


def test_right_types_are_still_taken() -> None:
    rules = parse_rules(
        {
            "defaults": {
                "auto_approve_return": False,
                "reorder_window_seconds": 0,
                "currency_precision": {"JPY": 0},
            }
        }
    ).defaults
    assert rules.auto_approve_return is False and rules.reorder_window_seconds == 0
    assert rules.currency_precision == {"JPY": 0}
