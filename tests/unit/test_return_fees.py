"""Return fees per sales channel: a restocking fee (a percentage of the goods' refund, for some reasons
or conditions) and a return shipping fee (once per return), kept from the return's refund as credit note
lines of their own. Expected figures are worked out by hand in the comments."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import names
from domain.rules import RulesError, parse_rules
from tests.unit.harness import OCTOPUS, Harness, events, line, order, refunds, rejection, the_refund
from tests.unit.test_properties import orders
from tests.unit.test_split_tender import shares, split_order
from tests.unit.test_upstream_refunds import upstream
from workers.engine.validation import default_validators

# OCTOPUS: line 1 WE234 82.50 (7.50 VAT), line 2 MS232 2 units 270.60 (24.60 VAT), line 3 CD785 27.50
# (2.50 VAT); 10 % VAT throughout, paid 380.60 with PAY1.
RESTOCKING = {"restocking_fee_percent": "15"}


def shipped(**rules: Any) -> Harness:
    h = Harness.with_rules(**rules)
    h.create(OCTOPUS)
    h.ship("1234", [(1, 1), (2, 2), (3, 1)])
    return h


def details(refund_line: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = refund_line["payments"][0]["details"]
    return found


def figures(refund_line: dict[str, Any]) -> tuple[str, str, str]:
    d = details(refund_line)
    return d["cost_gross"], d["cost_net"], d["cost_vat"]


def fee_lines(refund: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [ln for ln in refund["lines"] if "fee" in ln and (kind is None or ln["fee"] == kind)]


def test_a_restocking_fee_is_a_line_of_its_own_following_the_goods_line() -> None:
    h = shipped(**RESTOCKING)
    refund = the_refund(h.ret("1234", [{"line_number": 1}]))
    goods, fee = refund["lines"]
    assert "fee" not in goods and figures(goods) == ("82.50", "75.00", "7.50")
    # 15 % of 82.50 is 12.375 and of 7.50 is 1.125: half up, 12.38 and 1.13.
    assert fee["fee"] == "RESTOCKING_FEE"
    assert (fee["order_line"], fee["sku"], fee["quantity"]) == ("1", "WE234", 0)
    assert figures(fee) == ("-12.38", "-11.25", "-1.13")
    assert details(fee)["vat_detail"] == [{"type": "VAT", "amount": "-1.13", "rate": "10"}]
    assert fee["explanation"] == (
        'restocking fee: 15% of the 82.50 refunded for line 1 (restocking_fee_percent = "15")'
    )
    assert refund["totals"] == {"cost_gross": "70.12", "cost_net": "63.75", "cost_vat": "6.37"}
    assert refund["payments"] == [{"ref": "PAY1", "payment_method": "CARD", "amount": "70.12"}]


def test_the_order_shows_the_fees_kept_and_refunds_net_of_them() -> None:
    h = shipped(**RESTOCKING)
    outcome = h.ret("1234", [{"line_number": 1}])
    postsales = events(outcome, names.ORDER_UPDATED)[-1]["order"]["postsales"]
    assert postsales["refunded"] == {"cost_gross": "70.12", "cost_net": "63.75", "cost_vat": "6.37"}
    line_1 = postsales["lines"][0]
    assert (line_1["refunded_amount"], line_1["fees"]) == ("82.50", "12.38")
    assert "fees" not in postsales["lines"][1]
    assert postsales["status"] == "PARTIALLY_REFUNDED"


def test_the_order_view_shows_the_fees_kept_per_line() -> None:
    from workers.engine.order_view import order_view

    h = shipped(**RESTOCKING)
    h.ret("1234", [{"line_number": 1}])
    lines = order_view(h.order("1234"))["lines"]
    assert lines[0]["fees_kept"] == "12.38" and lines[0]["refunded_gross"] == "82.50"
    assert "fees_kept" not in lines[1]


def test_the_documents_stay_valid_against_their_schemas() -> None:
    h = shipped(**RESTOCKING, return_shipping_fee="5.95")
    outcome = h.ret("1234", [{"line_number": 1}, {"line_number": 2}])
    validators = default_validators()
    for event in outcome.events:
        assert validators.check(event.name, event.params) is None, event.name


def test_partial_returns_of_a_line_keep_the_fee_of_the_whole_line_to_the_cent() -> None:
    h = shipped(**RESTOCKING)
    first = the_refund(h.ret("1234", [{"line_number": 2, "quantity": 1}]))
    second = the_refund(h.ret("1234", [{"line_number": 2, "quantity": 1}]))
    # Each unit refunds 135.30 (12.30 VAT). 15 % of 135.30 is 20.295: 20.30 on the first unit; on both,
    # 15 % of 270.60 is 40.59, so the second unit keeps 20.29 (not 20.30 again: 40.60 would be a cent
    # more than the fee on the line). VAT: 1.845 -> 1.85, then 3.69 - 1.85 = 1.84.
    assert figures(fee_lines(first)[0]) == ("-20.30", "-18.45", "-1.85")
    assert figures(fee_lines(second)[0]) == ("-20.29", "-18.45", "-1.84")
    assert first["totals"]["cost_gross"] == "115.00"
    assert second["totals"]["cost_gross"] == "115.01"


def test_the_fee_only_for_the_reasons_listed_compared_without_case() -> None:
    h = shipped(**RESTOCKING, restocking_fee_reasons=["changed_mind"])
    charged = the_refund(h.ret("1234", [{"line_number": 1, "reason": "Changed_Mind"}]))
    assert [ln["fee"] for ln in fee_lines(charged)] == ["RESTOCKING_FEE"]
    assert "reason Changed_Mind in restocking_fee_reasons" in fee_lines(charged)[0]["explanation"]
    spared = the_refund(h.ret("1234", [{"line_number": 3, "reason": "DAMAGED"}]))
    assert fee_lines(spared) == [] and spared["totals"]["cost_gross"] == "27.50"


def test_the_fee_only_for_the_conditions_listed_known_at_receipt() -> None:
    h = shipped(**RESTOCKING, restocking_fee_conditions=["OPENED"], refund_on="receipt")
    for line_number, condition, expected_fees in ((1, "opened", 1), (3, "GOOD", 0)):
        opened = h.ret("1234", [{"line_number": line_number}])
        rma = events(opened, names.RETURN_UPDATED)[0]["return"]["rma"]
        received = h.ret(
            "1234",
            [{"line_number": line_number, "condition": condition}],
            name=names.RETURN_RECEIVED,
            rma=rma,
        )
        assert len(fee_lines(the_refund(received))) == expected_fees, condition


def test_a_condition_rule_charges_nothing_when_the_refund_comes_before_the_condition_is_known() -> None:
    h = shipped(**RESTOCKING, restocking_fee_conditions=["OPENED"])  # refund_on = "approval"
    refund = the_refund(h.ret("1234", [{"line_number": 1}]))
    assert fee_lines(refund) == []


def test_the_shipping_fee_is_taken_once_per_return_and_taxed_like_its_goods() -> None:
    h = shipped(return_shipping_fee="5.95")
    first = the_refund(h.ret("1234", [{"line_number": 1}]))
    # 5.95 on a line of 82.50 with 7.50 VAT: 5.95 x 7.50 / 82.50 = 0.5409 -> 0.54 VAT.
    (fee,) = fee_lines(first)
    assert fee["fee"] == "RETURN_SHIPPING_FEE" and figures(fee) == ("-5.95", "-5.41", "-0.54")
    assert fee["explanation"] == (
        'return shipping fee 5.95 (return_shipping_fee = "5.95"), taken once for return OCTO-1234-R01'
    )
    assert first["totals"]["cost_gross"] == "76.55"
    second = the_refund(h.ret("1234", [{"line_number": 3}]))
    assert [figures(ln) for ln in fee_lines(second)] == [("-5.95", "-5.41", "-0.54")]
    assert second["totals"]["cost_gross"] == "21.55"


def test_both_fees_over_two_lines_add_up_to_the_note() -> None:
    h = shipped(**RESTOCKING, return_shipping_fee="5.95")
    refund = the_refund(h.ret("1234", [{"line_number": 2, "quantity": 1}, {"line_number": 1}]))
    got = [(ln["order_line"], ln.get("fee"), *figures(ln)) for ln in refund["lines"]]
    # Restocking: line 2 135.30 -> 20.30 (VAT 12.30 -> 1.85); line 1 82.50 -> 12.38 (7.50 -> 1.13).
    # Left: line 2 115.00 (10.45 VAT), line 1 70.12 (6.37 VAT), 185.12 in all. The 5.95 shipping fee in
    # proportion, cumulatively: line 2 5.95 x 115.00 / 185.12 = 3.696 -> 3.70 (VAT 3.70 x 10.45 / 115.00
    # = 0.336 -> 0.34), line 1 the rest, 2.25 (VAT 2.25 x 6.37 / 70.12 = 0.204 -> 0.20).
    assert got == [
        ("2", None, "135.30", "123.00", "12.30"),
        ("1", None, "82.50", "75.00", "7.50"),
        ("2", "RESTOCKING_FEE", "-20.30", "-18.45", "-1.85"),
        ("1", "RESTOCKING_FEE", "-12.38", "-11.25", "-1.13"),
        ("2", "RETURN_SHIPPING_FEE", "-3.70", "-3.36", "-0.34"),
        ("1", "RETURN_SHIPPING_FEE", "-2.25", "-2.05", "-0.20"),
    ]
    # 217.80 - 32.68 - 5.95 = 179.17; VAT 19.80 - 2.98 - 0.54 = 16.28.
    assert refund["totals"] == {"cost_gross": "179.17", "cost_net": "162.89", "cost_vat": "16.28"}
    shares_said = [ln["explanation"] for ln in fee_lines(refund, "RETURN_SHIPPING_FEE")]
    assert shares_said[0].endswith("3.70 of it on line 2, in proportion to what the line refunds")


def test_a_fee_never_makes_a_refund_negative() -> None:
    h = shipped(return_shipping_fee="30.00")
    refund = the_refund(h.ret("1234", [{"line_number": 3}]))
    (fee,) = fee_lines(refund)
    assert figures(fee) == ("-27.50", "-25.00", "-2.50")
    assert fee["explanation"].endswith("capped at the 27.50 the return refunds")
    assert refund["totals"] == {"cost_gross": "0.00", "cost_net": "0.00", "cost_vat": "0.00"}
    assert not [t for t in h.order("1234").transactions if t.type == "REFUND"]


def test_a_restocking_fee_of_100_percent_keeps_everything_and_nothing_more() -> None:
    h = shipped(restocking_fee_percent="100", return_shipping_fee="5.95")
    refund = the_refund(h.ret("1234", [{"line_number": 2, "quantity": 1}]))
    assert refund["totals"] == {"cost_gross": "0.00", "cost_net": "0.00", "cost_vat": "0.00"}
    assert fee_lines(refund, "RETURN_SHIPPING_FEE") == []  # nothing left to keep it from


def test_fees_are_rounded_half_up_to_the_order_currency_s_minor_unit() -> None:
    h = Harness.with_rules(restocking_fee_percent="12.5", return_shipping_fee="5.95")
    yen = order("Y1", [line(1, "KIMONO", "1000", rate="10"), line(2, "OBI", "3000", rate="10")])
    yen["order"]["payments"][0]["currency"] = "JPY"
    h.create(yen)
    h.ship("Y1", [(1, 1), (2, 1)])
    refund = the_refund(h.ret("Y1", [{"line_number": 1}]))
    # JPY has no minor unit: 12.5 % of 1100 is 137.5 -> 138 (VAT 12.5 % of 100 = 12.5 -> 13); the 5.95
    # label is 6 (VAT 6 x 87 / 962 = 0.54 -> 1). 1100 - 138 - 6 = 956.
    assert [figures(ln) for ln in fee_lines(refund)] == [("-138", "-125", "-13"), ("-6", "-5", "-1")]
    assert refund["totals"] == {"cost_gross": "956", "cost_net": "870", "cost_vat": "86"}


def test_the_fee_comes_off_the_goods_line_s_own_payment() -> None:
    h = Harness.with_rules(
        reorder_window_seconds=0, shipping_refund_rule="never", refund_tender_order=["CARD"], **RESTOCKING
    )
    h.create(split_order("1"))
    h.ship("1", [(1, 2), (2, 1)])
    # Line 1 (2 units, 110.00) was paid with the gift card, which paid 50.00. 15 % of 110.00 is 16.50:
    # 93.50 back, 50.00 of it to the gift card and the 43.50 it cannot take to the card (the card comes
    # first for what no line's payment takes: the fee must not leave room on the gift card for it).
    refund = the_refund(h.ret("1", [{"line_number": 1}]))
    assert shares(refund) == {"GC-1": "50.00", "CARD-1": "43.50"}


def test_no_fee_on_an_exchange_a_reshipment_or_a_return_without_money() -> None:
    h = shipped(**RESTOCKING, return_shipping_fee="5.95")
    swap = {"line_number": 1, "new_sku": "WE235"}
    exchanged = h.send(
        names.EXCHANGE_CREATE,
        {"exchange": {"sales_channel_id": "OCTO", "order_id": "1234", "lines": [swap]}},
    )
    assert exchanged.status == "applied" and refunds(exchanged) == []
    reshipped = h.send(
        names.RESHIPMENT_CREATE,
        {"reshipment": {"sales_channel_id": "OCTO", "order_id": "1234", "lines": [{"line_number": 3}]}},
    )
    assert reshipped.status == "applied" and refunds(reshipped) == []
    quantity_only = the_refund(h.ret("1234", [{"line_number": 2}], refund_mode="QUANTITY_ONLY"))
    assert fee_lines(quantity_only) == []
    assert quantity_only["totals"]["cost_gross"] == "0.00"
    assert all(line.fees is None for line in h.order("1234").lines.values())


def test_a_refund_decided_upstream_for_the_return_carries_its_own_amounts() -> None:
    h = shipped(**RESTOCKING, return_shipping_fee="5.95")
    refund = the_refund(upstream(h, [{"order_line": "1", "gross": "70.00"}], rma="OCTO-1234-R01"))
    assert fee_lines(refund) == [] and refund["totals"]["cost_gross"] == "70.00"


def test_a_cancelled_note_gives_its_fees_back() -> None:
    h = shipped(**RESTOCKING, auto_release_refund=False)
    number = the_refund(h.ret("1234", [{"line_number": 2, "quantity": 1}]))["credit_note_number"]
    cancel = {"sales_channel_id": "OCTO", "order_id": "1234", "credit_note_number": number, "user": "fin"}
    cancelled = h.send(names.REFUND_CANCEL, cancel)
    postsales = events(cancelled, names.ORDER_UPDATED)[-1]["order"]["postsales"]
    assert postsales["refunded"] == {"cost_gross": "0.00", "cost_net": "0.00", "cost_vat": "0.00"}
    assert "fees" not in postsales["lines"][1]
    # The fee's base went back too: the other unit is charged as a first unit, 20.30 (not 20.29).
    again = the_refund(h.ret("1234", [{"line_number": 2, "quantity": 1}]))
    assert figures(fee_lines(again)[0]) == ("-20.30", "-18.45", "-1.85")


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"restocking_fee_percent": 15}, "restocking_fee_percent: .*decimal text"),
        ({"restocking_fee_percent": 15.5}, "restocking_fee_percent: .*decimal text"),
        ({"restocking_fee_percent": "100.5"}, "restocking_fee_percent"),
        ({"restocking_fee_percent": "-1"}, "restocking_fee_percent"),
        ({"return_shipping_fee": 5.95}, "return_shipping_fee: .*decimal text"),
        ({"return_shipping_fee": "5,95"}, "return_shipping_fee"),
        ({"restocking_fee_reasons": ["X"]}, "restocking_fee_reasons is set but restocking_fee_percent"),
        ({"restocking_fee_percent": "5", "restocking_fee_conditions": []}, "restocking_fee_conditions"),
        ({"restocking_fee_percent": "5", "restocking_fee_reasons": "X"}, "restocking_fee_reasons"),
        ({"fees_on_exchange": True}, "fees_on_exchange: Extra inputs are not permitted"),
    ],
)
def test_a_wrong_fee_rule_is_refused_with_its_key(table: dict[str, Any], problem: str) -> None:
    with pytest.raises(RulesError, match=problem):
        parse_rules({"sales_channels": {"OCTO": table}})


def test_fee_rules_as_decimal_text_are_taken() -> None:
    rules = parse_rules(
        {
            "defaults": {
                "restocking_fee_percent": "12.5",
                "return_shipping_fee": "5",
                "restocking_fee_reasons": ["a"],
            }
        }
    ).defaults
    assert rules.restocking_rate == Decimal("0.125") and rules.shipping_fee == Decimal(5)
    assert rules.restocking_fee_reasons == ("A",)


def test_the_new_keys_keep_their_rules_in_the_models_json_schema() -> None:
    """Rule sets are checked against a JSON Schema made from ChannelRules: the keys' types and patterns
    must be in it, not only in validators."""
    import jsonschema

    from domain.rules import ChannelRules

    schema = ChannelRules.model_json_schema()
    check = jsonschema.Draft202012Validator(schema)
    good = {
        "final_sale_skus": ["CLEAR-*", "GIFTCARD-?"],
        "restocking_fee_percent": "12.5",
        "restocking_fee_reasons": ["CHANGED_MIND"],
        "restocking_fee_conditions": ["OPENED"],
        "return_shipping_fee": "5.95",
    }
    assert list(check.iter_errors(good)) == []
    for bad in (
        {"restocking_fee_percent": 15},
        {"restocking_fee_percent": "101"},
        {"return_shipping_fee": 5.95},
        {"return_shipping_fee": "-1"},
        {"final_sale_skus": [""]},
        {"final_sale_skus": "CLEAR-*"},
        {"fees_on_exchange": True},
    ):
        assert list(check.iter_errors(bad)), bad


def test_rejections_are_unchanged_by_fees() -> None:
    h = shipped(**RESTOCKING)
    assert rejection(h.ret("1234", [{"line_number": 9}])) == "UNKNOWN_LINE"


# -- properties ----------------------------------------------------------------------------------------

CENT = Decimal("0.01")


def _half_up(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


fee_rules = st.fixed_dictionaries(
    {
        "restocking_fee_percent": st.integers(0, 10_000).map(lambda n: f"{Decimal(n) / 100}"),
        "return_shipping_fee": st.integers(0, 5_000).map(lambda n: f"{Decimal(n) / 100:.2f}"),
    }
)


def _gross(lines: Iterable[dict[str, Any]]) -> Decimal:
    return sum((Decimal(details(ln)["cost_gross"]) for ln in lines), Decimal(0))


def _check_note(refund: dict[str, Any]) -> None:
    """Money invariants of one credit note with fees."""
    totals = {key: Decimal(value) for key, value in refund["totals"].items()}
    sums: dict[str, Decimal] = defaultdict(Decimal)
    goods = Decimal(0)
    per_component: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for ln in refund["lines"]:
        d = details(ln)
        gross, net, vat = (Decimal(d[key]) for key in ("cost_gross", "cost_net", "cost_vat"))
        assert net == gross - vat and vat == sum((Decimal(t["amount"]) for t in d["vat_detail"]), Decimal(0))
        for key, value in (("cost_gross", gross), ("cost_net", net), ("cost_vat", vat)):
            sums[key] += value
        if "fee" in ln:
            assert gross <= 0 and vat <= 0 and ln["quantity"] == 0
        else:
            goods += gross
        for t in d["vat_detail"]:
            per_component[(ln["order_line"], t["type"], t["rate"])] += Decimal(t["amount"])
    # Goods lines and fee lines add up to the totals exactly.
    assert dict(sums) == totals
    # A fee never takes a note below zero nor above its goods, and never a tax component of a line.
    assert Decimal(0) <= totals["cost_gross"] <= goods
    assert all(amount >= 0 for amount in per_component.values())
    assert sum((Decimal(p["amount"]) for p in refund["payments"]), Decimal(0)) == totals["cost_gross"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders(), fee_rules, st.data())
def test_random_returns_with_fees_never_go_negative_and_add_up(
    created: dict[str, Any], rules: dict[str, Any], data: st.DataObject
) -> None:
    h = Harness.with_rules(shipping_refund_rule="onLast", return_service_line=True, **rules)
    h.create(created)
    physical = [ln for ln in created["order"]["lines"] if ln["product_type"] == "PHYSICAL"]
    h.ship("P1", [(ln["line_number"], ln["quantity"]) for ln in physical])
    left = {ln["line_number"]: ln["quantity"] for ln in physical}
    shipping_fee = Decimal(rules["return_shipping_fee"])
    while any(left.values()):
        chosen = data.draw(st.lists(st.sampled_from(sorted(n for n, q in left.items() if q)), min_size=1))
        asked = []
        for n in dict.fromkeys(chosen):
            chunk = data.draw(st.integers(1, left[n]))
            left[n] -= chunk
            asked.append({"line_number": n, "quantity": chunk})
        refund = the_refund(h.ret("P1", asked))
        _check_note(refund)
        returned = {str(a["line_number"]) for a in asked}
        goods = _gross(ln for ln in refund["lines"] if "fee" not in ln and ln["order_line"] in returned)
        restocking = _gross(fee_lines(refund, "RESTOCKING_FEE"))
        shipping = _gross(fee_lines(refund, "RETURN_SHIPPING_FEE"))
        # The shipping fee is taken once per return, whole unless the goods left after restocking are less.
        assert -shipping == min(shipping_fee, goods + restocking)
    state = h.order("P1")
    assert Decimal(0) <= state.refunded_gross <= state.paid


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders(), st.integers(0, 10_000), st.data())
def test_restocking_fees_of_a_line_returned_in_chunks_are_the_fee_on_the_whole_line(
    created: dict[str, Any], hundredths: int, data: st.DataObject
) -> None:
    percent = Decimal(hundredths) / 100
    h = Harness.with_rules(
        shipping_refund_rule="never", return_service_line=False, restocking_fee_percent=f"{percent}"
    )
    h.create(created)
    physical = [ln for ln in created["order"]["lines"] if ln["product_type"] == "PHYSICAL"]
    h.ship("P1", [(ln["line_number"], ln["quantity"]) for ln in physical])
    kept: dict[str, Decimal] = defaultdict(Decimal)
    for ln in physical:
        left = ln["quantity"]
        while left:
            chunk = data.draw(st.integers(1, left))
            refund = the_refund(h.ret("P1", [{"line_number": ln["line_number"], "quantity": chunk}]))
            _check_note(refund)
            for fee in fee_lines(refund):
                kept["gross"] += -Decimal(details(fee)["cost_gross"])
                for tax in details(fee)["vat_detail"]:
                    kept[tax["type"]] += -Decimal(tax["amount"])
            left -= chunk
        # Once the whole line is back, its fee is the percentage of the line, each figure rounded once.
        amount = ln["amount"]
        assert kept.pop("gross", Decimal(0)) == _half_up(Decimal(amount["gross_amount"]) * percent / 100)
        for tax in amount["taxes"]:
            assert kept.pop(tax["type"], Decimal(0)) == _half_up(Decimal(tax["amount"]) * percent / 100)
        kept.clear()
