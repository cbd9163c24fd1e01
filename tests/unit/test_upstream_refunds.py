"""Refunds decided upstream (Shopify / POS) through refund_management.create."""

from typing import Any

import pytest

from domain import names
from domain.outcome import Outcome
from tests.unit.harness import OCTOPUS, Harness, events, line, order, refund_lines, rejection, the_refund


def upstream(h: Harness, lines: list[dict[str, Any]], *, order_id: str = "1234", **header: Any) -> Outcome:
    full = []
    for ln in lines:
        details = {"cost_gross": ln.pop("gross")}
        details.update(ln.pop("details", {}))
        full.append({"reason_description": "refund", "payments": [{"ref": "PAY1", "details": details}], **ln})
    return h.send(
        names.REFUND_CREATE,
        {
            "refund": {
                "client": "shopify",
                "order_id": order_id,
                "store_id": "OCTO",
                "status": {"date": "2026-11-05T10:00:00Z"},
                "lines": full,
                **header,
            }
        },
    )


def shipped() -> Harness:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(1, 1), (2, 2), (3, 1)])
    return h


def test_line_by_line_with_restock_on_and_off() -> None:
    h = shipped()
    watches = the_refund(upstream(h, [{"order_line": "2", "gross": "270.60", "restock": True}]))
    assert watches["totals"] == {"cost_gross": "270.60", "cost_net": "246.00", "cost_vat": "24.60"}
    assert watches["document_type"] == "INVENTORY_CREDIT_MEMO" and watches["lines"][0]["restock"] is True
    assert h.ats("DEFAULT", "MS232") == 0  # reserved 2 → shipped 2 → restocked 2
    bag = the_refund(upstream(h, [{"order_line": "1", "gross": "82.50"}]))
    assert bag["lines"][0]["restock"] is False
    assert h.ats("DEFAULT", "WE234") == -1  # written off: available stock unchanged by the refund
    cable = the_refund(upstream(h, [{"order_line": "3", "gross": "27.50", "restock": True}]))
    assert cable["lines"][0]["quantity"] == 1
    updated = events(
        upstream_ok := h.send(names.ORDER_CANCEL, {"order_id": "1234", "sales_channel_id": "OCTO"}),
        names.ERROR_NOTIFY,
    )
    assert upstream_ok.status == "rejected" and updated[0]["code"] == "ALREADY_SHIPPED"
    assert h.order("1234").refunded_gross == h.order("1234").paid


def test_unit_by_unit_derives_tax_with_cumulative_rounding() -> None:
    h = shipped()
    first = refund_lines(the_refund(upstream(h, [{"order_line": "2", "quantity": 1, "gross": "135.30"}])))[
        "2"
    ]
    second = refund_lines(the_refund(upstream(h, [{"order_line": "2", "quantity": 1, "gross": "135.30"}])))[
        "2"
    ]
    assert (first["cost_vat"], second["cost_vat"]) == ("12.30", "12.30")
    odd = Harness()
    odd.create(OCTOPUS)
    odd.ship("1234", [(2, 2)])
    parts = [
        refund_lines(the_refund(upstream(odd, [{"order_line": "2", "quantity": 1, "gross": g}])))["2"]
        for g in ("100.00", "170.60")
    ]
    assert [p["cost_vat"] for p in parts] == ["9.09", "15.51"]  # 9.09 + 15.51 = 24.60 exactly


def test_tax_sent_upstream_is_kept() -> None:
    h = shipped()
    given = {"cost_net": "73.00", "cost_vat": "7.00"}
    refund = the_refund(upstream(h, [{"order_line": "1", "gross": "80.00", "details": given}]))
    assert (
        refund_lines(refund)["1"]["cost_vat"] == "7.00" and refund_lines(refund)["1"]["cost_net"] == "73.00"
    )
    assert "tax as sent upstream" in refund["lines"][0]["explanation"]
    too_much_tax = {"vat_detail": [{"type": "VAT", "amount": "0.51", "rate": "10"}]}
    over = upstream(
        h, [{"order_line": "1", "gross": "2.50", "details": too_much_tax}], refund_mode="AMOUNT_ONLY"
    )
    assert rejection(over) == "OVER_REFUND"


def test_modes_pick_the_documents_of_seed_003() -> None:
    h = shipped()
    goods = the_refund(
        upstream(
            h,
            [{"order_line": "2", "quantity": 1, "gross": "0", "restock": True}],
            refund_mode="QUANTITY_ONLY",
        )
    )
    assert goods["document_type"] == "INVENTORY_CREDIT_MEMO" and goods["totals"]["cost_gross"] == "0.00"
    assert h.ats("DEFAULT", "MS232") == -1  # shipped two from nothing, one restocked
    money = the_refund(upstream(h, [{"order_line": "2", "gross": "20.00"}], refund_mode="AMOUNT_ONLY"))
    assert money["document_type"] == "CREDIT_MEMO" and money["lines"][0]["quantity"] == 0
    assert money["lines"][0]["restock"] is None and h.ats("DEFAULT", "MS232") == -1
    both = the_refund(upstream(h, [{"order_line": "3", "gross": "27.50", "restock": True}]))
    assert both["document_type"] == "INVENTORY_CREDIT_MEMO" and both["totals"]["cost_gross"] == "27.50"


def test_unshipped_units_are_cancelled_not_returned() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(2, 1)])
    # Units not shipped yet: the refund waits the reorder window for a shipment, then cancels them.
    assert upstream(h, [{"order_line": "2", "gross": "270.60", "restock": True}]).status == "held"
    (settled,) = h.settle(minutes=1)
    refund = the_refund(settled)
    assert refund["refund_type"] == "return"
    assert (
        refund["lines"][0]["explanation"].count(
            "1 unshipped unit(s) cancelled (no shipment within the reorder window)"
        )
        == 1
    )
    line2 = h.order("1234").lines[2]
    assert (line2.cancelled, line2.returned, line2.reserved) == (1, 1, 0)
    assert h.ats("DEFAULT", "MS232") == 0
    assert upstream(h, [{"order_line": "1", "gross": "82.50"}]).status == "held"
    (settled,) = h.settle(minutes=1)
    assert the_refund(settled)["refund_type"] == "cancellation"


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([{"order_line": "2", "gross": "270.61"}], "OVER_REFUND"),
        ([{"order_line": "2", "quantity": 3, "gross": "1.00"}], "OVER_RETURN"),
        ([{"order_line": "9", "gross": "1.00"}], "UNKNOWN_LINE"),
        ([{"order_line": "two", "gross": "1.00"}], "UNKNOWN_LINE"),
    ],
)
def test_bounds(lines: list[dict[str, Any]], code: str) -> None:
    assert rejection(upstream(shipped(), lines)) == code


def test_upstream_credit_note_number_is_kept_and_used_once_per_store() -> None:
    h = shipped()
    h.create(order("1235", [line(1, "X", "10")]))
    h.ship("1235", [(1, 1)])
    first = the_refund(upstream(h, [{"order_line": "1", "gross": "10.00"}], credit_note_number="SHOP-9"))
    assert first["credit_note_number"] == "SHOP-9"
    again = upstream(h, [{"order_line": "1", "gross": "1.00"}], order_id="1235", credit_note_number="SHOP-9")
    assert rejection(again) == "DUPLICATE_REFUND"
    numbered = the_refund(upstream(h, [{"order_line": "3", "gross": "1.00"}]))
    assert numbered["credit_note_number"] == "CN-OCTO-0-000001"


def test_mixed_with_returns_never_refunds_more_than_paid() -> None:
    h = shipped()
    h.ret("1234", [{"line_number": 2, "quantity": 1}])
    assert rejection(upstream(h, [{"order_line": "2", "quantity": 1, "gross": "135.31"}])) == "OVER_REFUND"
    last = the_refund(upstream(h, [{"order_line": "2", "quantity": 1, "gross": "135.30"}]))
    assert last["totals"]["cost_vat"] == "12.30"
    state = h.order("1234")
    assert state.lines[2].refunded_gross == state.lines[2].gross
    assert state.lines[2].refunded_tax == [t.amount for t in state.lines[2].taxes]
