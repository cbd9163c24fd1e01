"""Example tests for money and stock rules that only the property tests used to catch, sometimes.

Each one pins a rule whose removal passed every example test before: the order-level cap on upstream
refunds, the release of a reservation at the reserving source when a line ships from another one, and
the credit note counter on the cancellation path.
"""

from decimal import Decimal
from typing import Any

from domain import names
from domain.outcome import Outcome
from tests.unit.harness import Harness, line, order, rejection, the_refund


def upstream_refund(h: Harness, order_id: str, order_line: str, gross: str, **extra: Any) -> Outcome:
    return h.send(
        names.REFUND_CREATE,
        {
            "refund": {
                "client": "pos",
                "order_id": order_id,
                "store_id": "OCTO",
                "status": {"date": "2026-11-05T10:00:00Z"},
                "refund_mode": "AMOUNT_ONLY",
                "lines": [
                    {
                        "order_line": order_line,
                        "reason_description": "goodwill",
                        "payments": [{"ref": "PAY1", "details": {"cost_gross": gross}}],
                        **extra,
                    }
                ],
            }
        },
    )


def test_an_upstream_refund_beyond_what_the_order_has_left_is_refused_although_its_line_allows_it() -> None:
    # Lines worth 110.00 + 55.00, but the customer paid 100.00 (a voucher covered the rest): each line
    # alone could take more than the order has left, so only the order-level cap can refuse.
    h = Harness()
    h.create(order("7", [line(1, "A", "100"), line(2, "B", "50")], paid="100.00"))
    h.ship("7", [(1, 1), (2, 1)])

    first = the_refund(upstream_refund(h, "7", "1", "80.00"))
    assert first["totals"]["cost_gross"] == "80.00"

    over = upstream_refund(h, "7", "2", "20.01")  # 80.00 + 20.01 > 100.00 paid; line 2 has 55.00 left
    assert rejection(over) == "OVER_REFUND"
    state = h.order("7")
    assert state.refunded_gross == Decimal("80.00") and state.lines[2].refunded_gross == 0

    exact = the_refund(upstream_refund(h, "7", "2", "20.00"))  # exactly what is left is still taken
    assert exact["totals"]["cost_gross"] == "20.00"
    assert h.order("7").refunded_gross == h.order("7").paid == Decimal("100.00")


def test_a_line_shipped_from_another_source_releases_its_reservation_where_it_was_made() -> None:
    h = Harness()
    h.create(order("8", [line(1, "A", "10", qty=2, source_location="WH")]))
    assert (h.stock["WH:A"].on_hand, h.stock["WH:A"].reserved) == (0, 2)

    h.ship("8", [(1, 2)], source="STORE-3")

    reserving, shipping = h.stock["WH:A"], h.stock["STORE-3:A"]
    assert (reserving.on_hand, reserving.reserved, reserving.available_to_sell) == (0, 0, 0)
    assert (shipping.on_hand, shipping.reserved, shipping.available_to_sell) == (-2, 0, -2)
    state = h.order("8").lines[1]
    assert (state.reserved, state.shipped, state.shipped_from) == (0, 2, "STORE-3")


def test_a_cancellation_after_a_refund_takes_the_next_credit_note_number() -> None:
    h = Harness()
    h.create(order("9", [line(1, "A", "10"), line(2, "B", "20")]))
    h.ship("9", [(1, 1)])

    returned = the_refund(h.ret("9", [{"line_number": 1}]))
    cancelled = the_refund(h.send(names.ORDER_CANCEL, {"order_id": "9", "sales_channel_id": "OCTO"}))
    h.create(order("10", [line(1, "C", "5")]))
    h.ship("10", [(1, 1)])
    after = the_refund(h.ret("10", [{"line_number": 1}]))

    assert cancelled["refund_type"] == "cancellation"
    assert [returned["credit_note_number"], cancelled["credit_note_number"], after["credit_note_number"]] == [
        "CN-OCTO-0-000001",
        "CN-OCTO-0-000002",
        "CN-OCTO-0-000003",
    ]
    assert h.series["OCTO-0"].last == 3
