"""Returns and the refund-return rules, with the figures of docs/contract.md."""

from decimal import Decimal

import msgspec
import pytest

from domain import names
from tests.unit.harness import OCTOPUS, Harness, events, line, order, refund_lines, rejection, the_refund


def shipped_octopus(**rules: object) -> Harness:
    h = Harness.with_rules(**rules)
    h.create(OCTOPUS)
    h.ship("1234", [(1, 1), (2, 2), (3, 1)])
    return h


def test_refunding_the_two_watches_refunds_246_net_and_24_60_tax() -> None:
    h = shipped_octopus()
    outcome = h.ret("1234", [{"line_number": 2, "condition": "GOOD"}])
    refund = the_refund(outcome)
    assert refund["totals"] == {"cost_gross": "270.60", "cost_net": "246.00", "cost_vat": "24.60"}
    assert refund["document_type"] == "INVENTORY_CREDIT_MEMO" and refund["refund_type"] == "return"
    (watch,) = refund["lines"]
    assert watch["quantity"] == 2 and watch["restock"] is True and watch["sku"] == "MS232"
    assert watch["payments"][0]["details"]["vat_detail"] == [{"type": "VAT", "amount": "24.60", "rate": "10"}]
    assert h.order("1234").transactions[-1].amount == Decimal("-270.60")


def test_return_statuses_go_requested_then_approved_and_the_order_is_updated() -> None:
    h = shipped_octopus()
    outcome = h.ret("1234", [{"line_number": 2}])
    statuses = [e["return"]["status"]["code"] for e in events(outcome, names.RETURN_UPDATED)]
    assert statuses == ["REQUESTED", "APPROVED"]
    (updated,) = events(outcome, names.ORDER_UPDATED)
    postsales = updated["order"]["postsales"]
    assert postsales["status"] == "PARTIALLY_REFUNDED"
    assert [t["type"] for t in postsales["transactions"]] == ["PAYMENT", "REFUND"]
    assert postsales["transactions"][1]["amount"] == "-270.60"
    assert {ln["line_number"]: ln["status"] for ln in updated["order"]["lines"]}[2] == "RETURNED"


def test_one_plus_one_plus_one_units_refund_3_33_then_3_34_then_3_33() -> None:
    h = Harness()
    h.create(order("9", [line(1, "SKU", "10.00", qty=3, rate="0")]))
    h.ship("9", [(1, 3)])
    grosses = [
        the_refund(h.ret("9", [{"line_number": 1, "quantity": 1}]))["totals"]["cost_gross"] for _ in range(3)
    ]
    assert grosses == ["3.33", "3.34", "3.33"]
    assert rejection(h.ret("9", [{"line_number": 1, "quantity": 1}])) == "OVER_RETURN"


def test_tax_is_refunded_per_component_only_for_returned_units() -> None:
    h = Harness()
    two_taxes = line(1, "SKU", "100.00", qty=3, rate="0")
    two_taxes["amount"] = {
        "net_amount": 100,
        "gross_amount": "117.00",
        "tax_amount": 17,
        "tax_rate": 17,
        "taxes": [{"type": "GST", "amount": 10, "rate": 10}, {"type": "PST", "amount": "7.00", "rate": 7}],
    }
    h.create(order("7", [two_taxes]))
    h.ship("7", [(1, 3)])
    first = refund_lines(the_refund(h.ret("7", [{"line_number": 1, "quantity": 1}])))["1"]
    assert first["cost_gross"] == "39.00" and first["cost_vat"] == "5.66" and first["cost_net"] == "33.34"
    assert [d["amount"] for d in first["vat_detail"]] == ["3.33", "2.33"]
    rest = refund_lines(the_refund(h.ret("7", [{"line_number": 1, "quantity": 2}])))["1"]
    assert [d["amount"] for d in rest["vat_detail"]] == ["6.67", "4.67"]
    assert Decimal(first["cost_gross"]) + Decimal(rest["cost_gross"]) == Decimal("117.00")


def rules_order() -> dict[str, object]:
    return order(
        "5",
        [
            line(1, "A", "40"),
            line(2, "B", "60"),
            line(3, "WRAP", "5", kind="SERVICE", parent_line_number=2),
            line(4, "CARD", "2", kind="SERVICE"),
            line(5, "SHIP", "10", kind="SHIPPING"),
        ],
    )


@pytest.mark.parametrize(
    ("rule", "shipping_in_first", "shipping_in_second"),
    [("onFirst", True, False), ("onLast", False, True), ("never", False, False)],
)
def test_shipping_refund_rule(rule: str, shipping_in_first: bool, shipping_in_second: bool) -> None:
    h = Harness.with_rules(shipping_refund_rule=rule, return_service_order=True, return_service_line=True)
    h.create(rules_order())
    h.ship("5", [(1, 1), (2, 1)])
    first = refund_lines(the_refund(h.ret("5", [{"line_number": 1}])))
    second = refund_lines(the_refund(h.ret("5", [{"line_number": 2}])))
    assert ("5" in first) is shipping_in_first
    assert ("5" in second) is shipping_in_second
    # The order-level service goes with the first return, the gift wrap with its parent line 2.
    assert "4" in first and "3" not in first
    assert "3" in second and second["3"]["cost_gross"] == "5.50"


def test_explanations_name_the_rule() -> None:
    h = Harness.with_rules(shipping_refund_rule="onLast", return_service_line=True)
    h.create(rules_order())
    h.ship("5", [(1, 1), (2, 1)])
    h.ret("5", [{"line_number": 1}])
    refund = the_refund(h.ret("5", [{"line_number": 2}]))
    why = {ln["order_line"]: ln["explanation"] for ln in refund["lines"]}
    assert why["5"] == "shipping refunded: last line of its shipment returned (shipping_refund_rule=onLast)"
    assert "return_service_line=true" in why["3"]
    assert "returned" in why["2"]
    ret = events(
        h.send(
            names.RETURN_AUTHORIZE,
            {"return": {"sales_channel_id": "OCTO", "order_id": "5", "lines": [{"line_number": 1}]}},
        ),
        names.ERROR_NOTIFY,
    )
    assert ret[0]["code"] == "OVER_RETURN"


def test_service_lines_without_rules_are_not_refunded() -> None:
    h = Harness.with_rules(
        shipping_refund_rule="never", return_service_line=False, return_service_order=False
    )
    h.create(rules_order())
    h.ship("5", [(1, 1), (2, 1)])
    assert set(refund_lines(the_refund(h.ret("5", [{"line_number": 2}])))) == {"2"}


def test_zero_cost_service_line_is_returned_but_not_refunded() -> None:
    h = Harness.with_rules(return_service_line=True)
    h.create(order("6", [line(1, "A", "40"), line(2, "WRAP", "0", kind="SERVICE", parent_line_number=1)]))
    h.ship("6", [(1, 1)])
    outcome = h.ret("6", [{"line_number": 1}])
    returned = [ln["line_number"] for ln in events(outcome, names.RETURN_UPDATED)[0]["return"]["lines"]]
    assert returned == [1, 2]
    assert set(refund_lines(the_refund(outcome))) == {"1"}


def test_quantity_only_return_moves_goods_and_no_money() -> None:
    h = shipped_octopus()
    refund = the_refund(h.ret("1234", [{"line_number": 2, "condition": "GOOD"}], refund_mode="QUANTITY_ONLY"))
    assert refund["totals"]["cost_gross"] == "0.00" and refund["document_type"] == "INVENTORY_CREDIT_MEMO"
    assert refund["lines"][0]["quantity"] == 2 and refund["lines"][0]["restock"] is True
    assert h.ats("DEFAULT", "MS232") == 0  # reserved 2, shipped 2, restocked 2
    assert h.order("1234").refunded_gross == 0


def test_refund_on_receipt_refunds_nothing_at_approval() -> None:
    h = shipped_octopus(refund_on="receipt")
    assert events(h.ret("1234", [{"line_number": 1}]), names.REFUND_UPDATED) == []
    received = h.send(
        names.RETURN_RECEIVED,
        {
            "return": {
                "sales_channel_id": "OCTO",
                "order_id": "1234",
                "source_id": "DEFAULT",
                "user": "u",
                "rma": "OCTO-1234-R01",
                "lines": [
                    {
                        "id": "L1",
                        "line_number": 1,
                        "sku": "WE234",
                        "reason": "R",
                        "reason_description": "d",
                        "condition": "DAMAGED",
                    }
                ],
            }
        },
    )
    refund = the_refund(received)
    assert refund["lines"][0]["restock"] is False  # damaged: written off
    assert [e["return"]["status"]["code"] for e in events(received, names.RETURN_UPDATED)] == [
        "RECEIVED",
        "CLOSED",
    ]
    assert h.ats("DEFAULT", "WE234") == -1  # shipped out, not put back


def test_manual_approval_waits_for_receipt_and_blind_returns_open_on_receipt() -> None:
    h = shipped_octopus(auto_approve_return=False)
    requested = h.ret("1234", [{"line_number": 1}], name=names.RETURN_REQUEST)
    assert [e["return"]["status"]["code"] for e in events(requested, names.RETURN_UPDATED)] == ["REQUESTED"]
    blind = h.send(
        names.RETURN_RECEIVED,
        {
            "return": {
                "sales_channel_id": "OCTO",
                "order_id": "1234",
                "source_id": "DEFAULT",
                "user": "u",
                "lines": [
                    {
                        "id": "L3",
                        "line_number": 3,
                        "sku": "CD785",
                        "reason": "R",
                        "reason_description": "d",
                        "condition": "GOOD",
                    }
                ],
            }
        },
    )
    codes = [e["return"]["status"]["code"] for e in events(blind, names.RETURN_UPDATED)]
    assert codes == ["REQUESTED", "APPROVED", "RECEIVED", "CLOSED"]
    assert the_refund(blind)["totals"]["cost_gross"] == "27.50"
    assert h.ats("DEFAULT", "CD785") == 0


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([{"line_number": 9}], "UNKNOWN_LINE"),
        ([{"line_number": 2, "quantity": 3}], "OVER_RETURN"),
    ],
)
def test_refused_returns_leave_the_order_unchanged(lines: list[dict[str, object]], code: str) -> None:
    h = shipped_octopus()
    before = msgspec.structs.replace(h.order("1234"), applied=[])
    assert rejection(h.ret("1234", lines)) == code
    assert msgspec.structs.replace(h.order("1234"), applied=[]) == before


def test_line_not_shipped_duplicate_rma_and_return_not_open() -> None:
    h = Harness.with_rules(auto_approve_return=False, reorder_window_seconds=0)
    h.create(OCTOPUS)
    assert rejection(h.ret("1234", [{"line_number": 1}])) == "LINE_NOT_SHIPPED"
    h.ship("1234", [(2, 1)])
    assert rejection(h.ret("1234", [{"line_number": 2, "quantity": 2}])) == "LINE_NOT_SHIPPED"
    h.ret("1234", [{"line_number": 2}], rma="RMA-1")
    assert rejection(h.ret("1234", [{"line_number": 2}], rma="RMA-1")) == "DUPLICATE_RMA"
    cancel = {
        "return": {"sales_channel_id": "OCTO", "order_id": "1234", "source_id": "DEFAULT", "rma": "RMA-1"}
    }
    cancelled = h.send(names.RETURN_CANCEL, cancel)
    assert events(cancelled, names.RETURN_UPDATED)[0]["return"]["status"]["code"] == "CANCELLED"
    assert rejection(h.send(names.RETURN_CANCEL, cancel)) == "RETURN_NOT_OPEN"
    # The cancelled return gave its unit back: it can be returned again.
    assert h.ret("1234", [{"line_number": 2}]).status == "applied"


def test_restock_flag_overrides_the_condition() -> None:
    h = shipped_octopus()
    refund = the_refund(h.ret("1234", [{"line_number": 1, "condition": "DAMAGED", "restock": True}]))
    assert refund["lines"][0]["restock"] is True
    assert h.ats("DEFAULT", "WE234") == 1 - 1  # reserved, shipped, restocked: back to 0 available
    item = h.stock["DEFAULT:WE234"]
    assert (item.on_hand, item.reserved) == (0, 0)
