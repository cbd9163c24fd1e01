"""Final-sale items per sales channel: returns and exchanges of them are refused `FINAL_SALE`; what
upstream decided passes over the rule and says so; reshipments are not returns."""

from __future__ import annotations

from typing import Any

import pytest

from domain import names
from domain.rule_versions import DEFAULTS_KEY, RuleVersion
from domain.rules import RulesError, parse_rules
from tests.unit.harness import (
    OCTOPUS,
    Harness,
    appeasement,
    events,
    line,
    order,
    rejection,
    return_of,
    the_refund,
)
from tests.unit.test_upstream_refunds import upstream

# OCTOPUS: line 1 WE234 (82.50), line 2 MS232 (2 units, 270.60), line 3 CD785 (27.50).
CLEARANCE = ["CD*", "ms232"]


def shipped(**rules: Any) -> Harness:
    h = Harness.with_rules(final_sale_skus=CLEARANCE, **rules)
    h.create(OCTOPUS)
    h.ship("1234", [(1, 1), (2, 2), (3, 1)])
    return h


def refusal(outcome: Any) -> str:
    assert rejection(outcome) == "FINAL_SALE"
    return str(events(outcome, names.ERROR_NOTIFY)[0]["message"])


@pytest.mark.parametrize("name", [names.RETURN_AUTHORIZE, names.RETURN_REQUEST])
def test_a_return_of_a_final_sale_line_is_refused_naming_line_sku_and_pattern(name: str) -> None:
    h = shipped()
    message = refusal(h.ret("1234", [{"line_number": 3}], name=name))
    assert message == 'line 3: SKU CD785 is final sale (final_sale_skus "CD*"): it cannot be returned'
    state = h.order("1234")
    assert state.lines[3].claimed == 0 and not state.returns


def test_an_exact_sku_matches_without_case_and_wins_over_a_glob() -> None:
    h = shipped()
    message = refusal(h.ret("1234", [{"line_number": 2, "quantity": 1}]))
    assert 'SKU MS232 is final sale (final_sale_skus "ms232")' in message


def test_one_final_sale_line_refuses_the_whole_return() -> None:
    h = shipped()
    refusal(h.ret("1234", [{"line_number": 1}, {"line_number": 3}]))
    assert h.order("1234").lines[1].claimed == 0


def test_other_lines_are_returned_and_refunded_as_before() -> None:
    h = shipped()
    outcome = h.ret("1234", [{"line_number": 1}])
    assert outcome.status == "applied", outcome.detail
    assert the_refund(outcome)["totals"]["cost_gross"] == "82.50"


def test_glob_syntax_question_mark_and_sets() -> None:
    h = Harness.with_rules(final_sale_skus=["WE2?4", "[!A-Z]*"])
    h.create(order("1", [line(1, "WE234", "10"), line(2, "7-UP", "10"), line(3, "WE2345", "10")]))
    h.ship("1", [(1, 1), (2, 1), (3, 1)])
    assert '"WE2?4"' in refusal(h.ret("1", [{"line_number": 1}]))
    assert '"[!A-Z]*"' in refusal(h.ret("1", [{"line_number": 2}]))
    assert h.ret("1", [{"line_number": 3}]).status == "applied"  # `?` is one character, not two


def test_a_channel_without_the_rule_takes_the_same_return() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(3, 1)])
    assert h.ret("1234", [{"line_number": 3}]).status == "applied"


def test_the_rule_is_per_channel() -> None:
    h = Harness(rules=parse_rules({"sales_channels": {"OTHER": {"final_sale_skus": ["*"]}}}))
    h.create(OCTOPUS)
    h.ship("1234", [(3, 1)])
    assert h.ret("1234", [{"line_number": 3}]).status == "applied"


def test_an_unshipped_final_sale_line_is_refused_at_once_not_held() -> None:
    h = Harness.with_rules(final_sale_skus=CLEARANCE)
    h.create(OCTOPUS)
    refusal(h.ret("1234", [{"line_number": 3}]))
    assert not h.order("1234").held


def test_an_exchange_of_a_final_sale_line_is_refused() -> None:
    h = shipped()
    swap = {"line_number": 3, "new_sku": "CD786"}
    outcome = h.send(
        names.EXCHANGE_CREATE,
        {"exchange": {"sales_channel_id": "OCTO", "order_id": "1234", "lines": [swap]}},
    )
    assert refusal(outcome).endswith("it cannot be exchanged")
    assert h.order("1234").lines[3].exchanged == 0
    assert not events(outcome, names.ORDER_CREATED)


def test_a_blind_receipt_of_a_final_sale_line_is_refused() -> None:
    h = shipped(reorder_window_seconds=0)
    outcome = h.ret("1234", [{"line_number": 3, "condition": "GOOD"}], name=names.RETURN_RECEIVED)
    assert "line 3" in refusal(outcome)
    assert h.order("1234").lines[3].claimed == 0


def test_a_receipt_for_an_rma_never_seen_becomes_blind_after_the_window_and_is_refused() -> None:
    h = shipped(reorder_window_seconds=30)
    held = h.ret("1234", [{"line_number": 3, "condition": "GOOD"}], name=names.RETURN_RECEIVED, rma="R-9")
    assert held.status == "held"
    settled = h.settle(minutes=5)
    codes = [event["code"] for outcome in settled for event in events(outcome, names.ERROR_NOTIFY)]
    assert codes == ["FINAL_SALE"]
    assert h.order("1234").lines[3].claimed == 0 and not h.order("1234").held


def test_a_receipt_of_a_return_authorized_before_the_rule_is_honoured() -> None:
    h = Harness.with_rules(refund_on="receipt")
    h.create(OCTOPUS)
    h.ship("1234", [(3, 1)])
    opened = h.ret("1234", [{"line_number": 3}])
    rma = events(opened, names.RETURN_UPDATED)[0]["return"]["rma"]
    # The rule comes in as a new version of the defaults, effective from now (domain/rule_versions.py).
    later = parse_rules({"defaults": {"refund_on": "receipt", "final_sale_skus": CLEARANCE}}).defaults
    h.rules.add(RuleVersion(DEFAULTS_KEY, 2, h.now, later))
    received = h.ret("1234", [{"line_number": 3, "condition": "GOOD"}], name=names.RETURN_RECEIVED, rma=rma)
    assert received.status == "applied", received.detail
    assert the_refund(received)["totals"]["cost_gross"] == "27.50"


def test_upstream_refunds_and_appeasements_pass_over_final_sale_and_say_so() -> None:
    h = shipped()
    refund = the_refund(upstream(h, [{"order_line": "3", "gross": "27.50"}]))
    explanation = refund["lines"][0]["explanation"]
    assert explanation.endswith(
        'SKU CD785 is final sale (final_sale_skus "CD*"), passed over: decided upstream'
    )
    note = the_refund(h.send(names.APPEASEMENT_CREATE, appeasement("1234", [(2, "10.00")])))
    assert note["lines"][0]["explanation"].endswith(
        'SKU MS232 is final sale (final_sale_skus "ms232"), passed over: decided upstream'
    )


def test_an_upstream_refund_of_another_line_says_nothing_of_final_sale() -> None:
    h = shipped()
    refund = the_refund(upstream(h, [{"order_line": "1", "gross": "82.50"}]))
    assert "final sale" not in refund["lines"][0]["explanation"]


def test_a_cancellation_of_unshipped_final_sale_units_is_not_a_return() -> None:
    h = Harness.with_rules(final_sale_skus=CLEARANCE, reorder_window_seconds=0)
    h.create(OCTOPUS)
    outcome = h.send(
        names.ORDER_CANCEL_LINE,
        {"order_id": "1234", "sales_channel_id": "OCTO", "line_number": 3, "reason": "r"},
    )
    assert outcome.status == "applied", outcome.detail
    assert "final sale" not in the_refund(outcome)["lines"][0]["explanation"]


def test_a_reshipment_of_a_final_sale_line_is_not_a_return_and_goes_ahead() -> None:
    h = shipped()
    outcome = h.send(
        names.RESHIPMENT_CREATE,
        {
            "reshipment": {
                "sales_channel_id": "OCTO",
                "order_id": "1234",
                "lines": [{"id": "L3", "line_number": 3, "reason": "LOST"}],
            }
        },
    )
    assert outcome.status == "applied", outcome.detail
    assert h.order("1234").lines[3].reshipped == 1


def test_a_preview_says_final_sale_too() -> None:
    from workers.engine.preview import message_record, preview, preview_pipeline
    from workers.engine.stores import Stores

    h = shipped()
    pipeline = preview_pipeline(h.rules, Stores(orders=dict(h.orders)))
    envelope = {
        "jsonrpc": "2.0",
        "id": "p1",
        "method": names.RETURN_AUTHORIZE,
        "params": return_of("1234", [{"line_number": 3}]),
    }
    looked = preview(pipeline, message_record(envelope, pipeline.topics, at=h.now))
    assert looked["rejection"]["code"] == "FINAL_SALE"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("CLEAR-*", "final_sale_skus: Input should be a valid tuple"),
        ([""], "final_sale_skus.0"),
        ([" CLEAR-*"], "final_sale_skus.0"),
        ([7], "final_sale_skus.0"),
    ],
)
def test_a_wrong_pattern_list_is_refused_with_its_key(value: Any, problem: str) -> None:
    with pytest.raises(RulesError, match=problem.replace(".", r"\.")):
        parse_rules({"sales_channels": {"OCTO": {"final_sale_skus": value}}})


def test_the_order_view_names_each_line_s_final_sale_pattern() -> None:
    from workers.engine.order_view import order_view

    h = shipped()
    rules = h.rules.for_channel("OCTO", h.now)
    lines = {ln["line_number"]: ln for ln in order_view(h.order("1234"), rules=rules)["lines"]}
    assert [lines[n]["final_sale"] for n in (1, 2, 3)] == [None, "ms232", "CD*"]
    assert "final_sale" not in order_view(h.order("1234"))["lines"][0]
