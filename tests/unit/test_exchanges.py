"""exchange_management.create: units come back without a refund and a child order (origin EX) carries the
new SKUs, reserved at the source; on_receipt channels ship it only once the goods are back restockable."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from domain import names
from tests.unit.harness import Harness, events, line, order, rejection, return_of


def exchange(order_id: str, lines: list[dict[str, Any]], **header: Any) -> dict[str, Any]:
    return {"exchange": {"sales_channel_id": "OCTO", "order_id": order_id, "lines": lines, **header}}


def shipped(h: Harness, *, qty: int = 2) -> None:
    h.create(order("1", [line(1, "RED-M", "40.00", qty=qty), line(2, "CAP", "10.00")]))
    h.ship("1", [(1, qty), (2, 1)])


def test_an_exchange_returns_the_units_without_money_and_sends_a_reserved_child_order() -> None:
    h = Harness()
    shipped(h)
    before = h.ats("DEFAULT", "BLUE-M")
    done = h.send(
        names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M", "reason": "SIZE"}])
    )
    assert done.status == "applied"
    (ret,) = [params["return"] for params in events(done, names.RETURN_UPDATED)]
    assert ret["rma"] == "OCTO-1-R01" and ret["exchange_order_id"] == "E1-1"
    assert [
        (ln["line_number"], ln["quantity"], ln.get("exchange"), ln.get("new_sku")) for ln in ret["lines"]
    ] == [(1, 2, True, "BLUE-M")]
    (created,) = [params["order"] for params in events(done, names.ORDER_CREATED)]
    assert (created["id"], created["original_order_id"], created["origin"]) == ("E1-1", "1", "EX")
    goods = created["lines"][0]
    assert (goods["sku"], goods["quantity"], goods["original_line_number"]) == ("BLUE-M", 2, 1)
    # The new SKU at the original line's amounts, paid by a zero-amount payment.
    assert Decimal(goods["amount"]["gross_amount"]) == Decimal("44.00")
    assert Decimal(goods["amount"]["tax_amount"]) == Decimal("4.00")
    assert [t["amount"] for t in created["payments"][0]["transactions"]] == [0]
    (request,) = [params["shipment_request"] for params in events(done, names.SHIPMENT_REQUESTED)]
    assert (request["order_id"], request["origin"]) == ("E1-1", "EX")
    assert [item["sku"] for item in request["items"]] == ["BLUE-M"]
    assert not events(done, names.REFUND_UPDATED)
    # The child is an order of its own, whose units are reserved at the source.
    child = h.order("E1-1")
    assert child.known and child.lines[1].sku == "BLUE-M" and child.lines[1].reserved == 2
    assert h.ats("DEFAULT", "BLUE-M") == before - 2
    original = h.order("1")
    assert (original.lines[1].exchanged, original.lines[1].claimed) == (2, 2)
    # The goods arrive: restocked, still no money.
    received = h.ret(
        "1", [{"line_number": 1, "condition": "GOOD"}], name=names.RETURN_RECEIVED, rma="OCTO-1-R01"
    )
    assert received.status == "applied"
    assert not events(received, names.REFUND_UPDATED) and not events(received, names.SHIPMENT_REQUESTED)
    assert events(received, names.RETURN_UPDATED)[-1]["return"]["status"]["code"] == "CLOSED"
    assert h.order("1").refunded_gross == 0
    assert h.stock["DEFAULT:RED-M"].on_hand == 0  # -2 shipped, +2 restocked
    order_doc = events(done, names.ORDER_UPDATED)[-1]["order"]
    assert order_doc["postsales"]["lines"][0]["exchanged"] == 2


def test_part_of_a_line_is_exchanged_at_its_share_of_the_amounts_and_the_child_id_can_be_given() -> None:
    h = Harness()
    h.create(order("1", [line(1, "RED-M", "100.00", qty=3)]))
    h.ship("1", [(1, 3)])
    done = h.send(
        names.EXCHANGE_CREATE,
        exchange("1", [{"line_number": 1, "new_sku": "BLUE-M", "quantity": 1}], new_order_id="X-9"),
    )
    (created,) = [params["order"] for params in events(done, names.ORDER_CREATED)]
    amount = created["lines"][0]["amount"]
    # 110.00 for 3 units: one unit's share, rounded half up to the cent.
    assert (created["id"], Decimal(amount["gross_amount"]), Decimal(amount["tax_amount"])) == (
        "X-9",
        Decimal("36.67"),
        Decimal("3.33"),
    )
    assert Decimal(amount["net_amount"]) + Decimal(amount["tax_amount"]) == Decimal(amount["gross_amount"])
    assert h.order("X-9").lines[1].quantity == 1
    # The rest of the line can still be returned for money.
    rest = h.ret("1", [{"line_number": 1, "quantity": 2, "condition": "GOOD"}], name=names.RETURN_RECEIVED)
    assert rest.status == "applied" and events(rest, names.REFUND_UPDATED)


def test_a_line_is_exchanged_once_and_a_reshipped_line_is_not_exchanged() -> None:
    h = Harness()
    shipped(h)
    first = h.send(
        names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M", "quantity": 1}])
    )
    assert first.status == "applied"
    again = h.send(
        names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "GREEN-M", "quantity": 1}])
    )
    assert rejection(again) == "ALREADY_EXCHANGED"
    h.send(
        names.RESHIPMENT_CREATE,
        {"reshipment": {"sales_channel_id": "OCTO", "order_id": "1", "lines": [{"line_number": 2}]}},
    )
    reshipped = h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 2, "new_sku": "HAT"}]))
    assert rejection(reshipped) == "ALREADY_EXCHANGED"


def test_the_same_exchange_delivered_twice_makes_one_child() -> None:
    h = Harness()
    shipped(h)
    params = exchange("1", [{"line_number": 1, "new_sku": "BLUE-M"}])
    h.send(names.EXCHANGE_CREATE, params, message_id="ex-1")
    before = h.ats("DEFAULT", "BLUE-M")
    again = h.send(names.EXCHANGE_CREATE, params, message_id="ex-1")
    assert again.status == "duplicate" and not again.events and not again.follow_ups
    assert h.ats("DEFAULT", "BLUE-M") == before


def test_a_child_create_delivered_twice_reserves_once() -> None:
    """The worker may send a follow-up twice (a crash after delivery, before its cause was stored)."""
    h = Harness()
    shipped(h)
    done = h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M"}]))
    (follow,) = done.follow_ups
    before = h.ats("DEFAULT", "BLUE-M")
    again = h.send(
        follow.name, json.loads(json.dumps(follow.params, default=str)), message_id=follow.message_id
    )
    assert again.status == "duplicate"
    assert h.ats("DEFAULT", "BLUE-M") == before


def test_on_receipt_the_child_ships_once_the_goods_are_back_restockable() -> None:
    h = Harness.with_rules(exchange_ships="on_receipt")
    shipped(h)
    done = h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M"}]))
    assert events(done, names.ORDER_CREATED) and not events(done, names.SHIPMENT_REQUESTED)
    assert h.order("E1-1").lines[1].reserved == 2
    back = h.ret("1", [{"line_number": 1, "condition": "GOOD"}], name=names.RETURN_RECEIVED, rma="OCTO-1-R01")
    (request,) = [params["shipment_request"] for params in events(back, names.SHIPMENT_REQUESTED)]
    assert request["order_id"] == "E1-1" and [i["sku"] for i in request["items"]] == ["BLUE-M"]
    assert not h.order("E1-1").cancelled


def test_on_receipt_goods_back_in_another_condition_cancel_the_child_and_release_its_stock() -> None:
    h = Harness.with_rules(exchange_ships="on_receipt")
    shipped(h)
    before = h.ats("DEFAULT", "BLUE-M")
    h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M"}]))
    back = h.ret(
        "1", [{"line_number": 1, "condition": "DAMAGED"}], name=names.RETURN_RECEIVED, rma="OCTO-1-R01"
    )
    assert not events(back, names.SHIPMENT_REQUESTED) and not events(back, names.REFUND_UPDATED)
    assert h.order("E1-1").cancelled
    assert h.ats("DEFAULT", "BLUE-M") == before
    # Nothing refunded for the child (it was paid nothing); the refund is upstream's choice.
    assert not [e for e in h.follow_ups[-1].events if e.name == names.REFUND_UPDATED]


def test_on_receipt_a_cancelled_exchange_return_cancels_the_child_and_the_line_may_be_exchanged_again() -> (
    None
):
    h = Harness.with_rules(exchange_ships="on_receipt", auto_approve_return=False)
    shipped(h)
    before = h.ats("DEFAULT", "BLUE-M")
    h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M"}]))
    cancelled = h.send(names.RETURN_CANCEL, return_of("1", [{"line_number": 1}], rma="OCTO-1-R01"))
    assert cancelled.status == "applied"
    assert h.order("E1-1").cancelled and h.ats("DEFAULT", "BLUE-M") == before
    assert (h.order("1").lines[1].exchanged, h.order("1").lines[1].claimed) == (0, 0)
    again = h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "GREEN-M"}]))
    assert again.status == "applied"
    assert events(again, names.ORDER_CREATED)[0]["order"]["id"] == "E1-2"


def test_an_exchange_before_the_shipment_waits_for_it() -> None:
    h = Harness.with_rules(reorder_window_seconds=600)
    h.create(order("1", [line(1, "RED-M", "40.00")]))
    early = h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M"}]))
    assert early.status == "held"
    shipped_now = h.ship("1", [(1, 1)])
    assert events(shipped_now, names.ORDER_CREATED)[0]["order"]["origin"] == "EX"
    assert h.order("E1-1").known


def test_an_exchange_past_the_return_window_is_refused() -> None:
    h = Harness.with_rules(return_window_days=30)
    shipped(h)
    late = h.send(
        names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M"}]), minutes=31 * 24 * 60
    )
    assert rejection(late) == "RETURN_WINDOW_CLOSED"
    assert not late.follow_ups


def test_exchanges_of_lines_that_cannot_be_exchanged_are_refused_with_their_reason() -> None:
    h = Harness()
    shipped(h)
    unknown = h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 9, "new_sku": "X"}]))
    assert rejection(unknown) == "UNKNOWN_LINE"
    twice = h.send(
        names.EXCHANGE_CREATE,
        exchange("1", [{"line_number": 1, "new_sku": "X"}, {"line_number": 1, "new_sku": "Y"}]),
    )
    assert rejection(twice) == "NOT_ALLOWED"
    too_many = h.send(
        names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "X", "quantity": 3}])
    )
    assert rejection(too_many) == "OVER_RETURN"
    h.ret("1", [{"line_number": 2}])
    returned = h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 2, "new_sku": "HAT"}]))
    assert rejection(returned) == "OVER_RETURN"
    assert not any(outcome.follow_ups for outcome in (unknown, twice, too_many, returned))


def test_a_return_of_the_child_moves_the_goods_and_no_money() -> None:
    """The child was paid nothing: what the customer paid is on the original order, refunded there."""
    h = Harness()
    shipped(h)
    h.send(names.EXCHANGE_CREATE, exchange("1", [{"line_number": 1, "new_sku": "BLUE-M"}]))
    h.ship("E1-1", [(1, 2)])
    back = h.ret("E1-1", [{"line_number": 1, "condition": "GOOD"}], name=names.RETURN_RECEIVED)
    (refund,) = [params["refund"] for params in events(back, names.REFUND_UPDATED)]
    assert refund["totals"]["cost_gross"] == "0.00" and refund["payments"] == []
    assert "original order" in refund["lines"][0]["explanation"]
    assert h.order("E1-1").refunded_gross == 0 and h.stock["DEFAULT:BLUE-M"].on_hand == 0
    # The original line's money is still refundable there, by upstream.
    assert h.order("1").lines[1].refunded_gross == 0
