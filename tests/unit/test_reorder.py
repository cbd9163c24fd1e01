"""Messages that arrive before the message they depend on (Kafka keeps no order across topics): they
wait, are tried again after every change of their order, and are refused or taken in their final
meaning only when the channel's reorder window has passed."""

from __future__ import annotations

from typing import Any

from domain import names
from tests.unit.harness import OCTOPUS, Harness, events, rejection, the_refund
from tests.unit.test_upstream_refunds import upstream


def window(seconds: int = 600, **rules: Any) -> Harness:
    h = Harness.with_rules(reorder_window_seconds=seconds, **rules)
    h.create(OCTOPUS)
    return h


def received(h: Harness, rma: str, lines: list[dict[str, Any]]) -> Any:
    return h.ret("1234", lines, name=names.RETURN_RECEIVED, rma=rma)


def test_a_return_before_its_shipment_waits_and_is_applied_after_it() -> None:
    h = window()
    early = h.ret("1234", [{"line_number": 1}])
    assert early.status == "held" and early.events == []
    shipped = h.ship("1234", [(1, 1)])
    names_out = [e.name for e in shipped.events]
    assert names_out[0] == names.ORDER_UPDATED  # the shipment first, then the return it let through
    assert names.RETURN_UPDATED in names_out and names.REFUND_UPDATED in names_out
    assert the_refund(shipped)["totals"]["cost_gross"] == "82.50"
    assert h.order("1234").held == [] and h.order("1234").lines[1].returned == 1


def test_a_return_whose_line_never_ships_is_refused_when_the_window_ends() -> None:
    h = window(120)
    assert h.ret("1234", [{"line_number": 1}]).status == "held"
    assert [o.events for o in h.settle(minutes=1)] == [[]]  # 60 s: still within the window
    (late,) = h.settle(minutes=1)
    assert [e.params["code"] for e in late.events] == ["LINE_NOT_SHIPPED"]
    assert h.order("1234").held == []


def test_the_next_message_past_the_window_settles_the_wait_before_it_applies() -> None:
    h = window(30)
    assert h.ret("1234", [{"line_number": 1}]).status == "held"
    # One minute later (past the window) the shipment arrives: the return was refused first.
    shipped = h.ship("1234", [(1, 1)])
    assert shipped.events[0].name == names.ERROR_NOTIFY
    assert shipped.events[0].params["code"] == "LINE_NOT_SHIPPED"
    assert h.order("1234").lines[1].returned == 0


def test_an_upstream_refund_that_overtook_its_shipment_returns_the_shipped_units() -> None:
    h = window()
    early = upstream(h, [{"order_line": "1", "gross": "82.50", "quantity": 1, "restock": True}])
    assert early.status == "held"
    shipped = h.ship("1234", [(1, 1)])
    refund = the_refund(shipped)
    assert refund["refund_type"] == "return"
    assert "shipped unit(s) returned, restocked" in refund["lines"][0]["explanation"]
    line1 = h.order("1234").lines[1]
    assert (line1.cancelled, line1.returned, line1.restocked) == (0, 1, 1)
    assert [m.reason for m in shipped.movements] == ["SHIPMENT", "RETURN_RESTOCK"]
    item = h.stock["DEFAULT:WE234"]
    assert (item.on_hand, item.reserved) == (0, 0)  # reserved, shipped from nothing, restocked


def test_an_upstream_refund_of_units_never_shipped_becomes_a_cancellation_with_a_trace() -> None:
    h = window(120)
    assert upstream(h, [{"order_line": "1", "gross": "82.50"}]).status == "held"
    (settled,) = h.settle(minutes=3)
    refund = the_refund(settled)
    assert refund["refund_type"] == "cancellation"
    assert "(no shipment within the reorder window)" in refund["lines"][0]["explanation"]
    # Dated at the end of the window, not at the moment a timer noticed it.
    assert refund["credit_note_date"].startswith("2026-11-01")
    line1 = h.order("1234").lines[1]
    assert (line1.cancelled, line1.reserved) == (1, 0)


def test_a_receipt_for_an_rma_not_seen_yet_waits_for_its_authorization() -> None:
    h = window(auto_approve_return=False)
    h.ship("1234", [(1, 1)])
    early = received(h, "RMA-9", [{"line_number": 1, "condition": "GOOD"}])
    assert early.status == "held"
    authorized = h.ret("1234", [{"line_number": 1}], rma="RMA-9")
    statuses = [e["return"]["status"]["code"] for e in events(authorized, names.RETURN_UPDATED)]
    assert statuses[0] == "REQUESTED" and statuses[-1] == "CLOSED"
    assert list(h.order("1234").returns) == ["RMA-9"]  # one return, not a second blind one


def test_a_receipt_whose_rma_never_comes_is_a_blind_return_after_the_window() -> None:
    h = window(120)
    h.ship("1234", [(1, 1)])
    assert received(h, "RMA-X", [{"line_number": 1, "condition": "GOOD"}]).status == "held"
    (settled,) = h.settle(minutes=3)
    assert the_refund(settled)["rma"] == "RMA-X"
    assert h.order("1234").returns["RMA-X"].status == "CLOSED"


def test_without_a_window_nothing_waits() -> None:
    h = window(0)
    assert rejection(h.ret("1234", [{"line_number": 1}])) == "LINE_NOT_SHIPPED"
    refund = the_refund(upstream(h, [{"order_line": "1", "gross": "82.50"}]))
    assert refund["refund_type"] == "cancellation"
    assert "reorder window" not in refund["lines"][0]["explanation"]


def test_a_redelivered_waiting_message_is_a_duplicate() -> None:
    h = window()
    params = {
        "return": {
            "sales_channel_id": "OCTO",
            "order_id": "1234",
            "source_id": "DEFAULT",
            "lines": [{"id": "L1", "sku": "x", "reason": "R", "reason_description": "d", "line_number": 1}],
        }
    }
    assert h.send(names.RETURN_AUTHORIZE, params, message_id="r1").status == "held"
    assert h.send(names.RETURN_AUTHORIZE, params, message_id="r1").status == "duplicate"
    h.ship("1234", [(1, 1)])
    assert h.send(names.RETURN_AUTHORIZE, params, message_id="r1").status == "duplicate"
    assert h.order("1234").lines[1].returned == 1
