"""Orders: create and re-send, shipment, cancellation, reshipment, appeasement, holds, idempotency."""

from decimal import Decimal

from domain import names
from domain.commands import SourceSnapshot
from domain.stock import snapshot_movements
from tests.mom_examples import documented_reshipment
from tests.unit.harness import OCTOPUS, Harness, events, line, order, refund_lines, rejection, the_refund


def test_create_reserves_physical_lines_at_their_source_and_emits_stock_only() -> None:
    h = Harness.with_rules(default_source="WH")
    outcome = h.create(
        order(
            "1",
            [
                line(1, "A", "10", qty=3),
                line(2, "B", "5", source_location="STORE-9"),
                line(3, "SHIP", "4", kind="SHIPPING"),
            ],
        )
    )
    assert outcome.events == []
    assert [(m.key, m.reason, m.reserved_delta) for m in outcome.movements] == [
        ("WH:A", "RESERVATION", 3),
        ("STORE-9:B", "RESERVATION", 1),
    ]
    assert h.ats("WH", "A") == -3


def test_shipment_moves_reserved_to_shipped_and_keeps_ats() -> None:
    h = Harness()
    h.create(order("1", [line(1, "A", "10", qty=2)]))
    h.ship("1", [(1, 1)])
    item = h.stock["DEFAULT:A"]
    assert (item.on_hand, item.reserved, item.available_to_sell) == (-1, 1, -2)
    assert rejection(h.ship("1", [(1, 2)])) == "NOT_ALLOWED"  # only one unit left to ship
    assert rejection(h.ship("1", [(7, 1)])) == "UNKNOWN_LINE"


def test_resent_create_replaces_upstream_fields_and_keeps_postsales_history() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(2, 2)])
    h.ret("1234", [{"line_number": 2}])
    resent = order(
        "1234", [line(1, "WE234", "75", qty=2), line(2, "MS232", "246", qty=2), line(3, "CD785", "25")]
    )
    h.create(resent)
    state = h.order("1234")
    assert state.lines[1].quantity == 2 and state.lines[1].reserved == 2
    assert state.lines[2].returned == 2 and state.refunded_gross == Decimal("270.60")
    assert h.ats("DEFAULT", "WE234") == -2


def test_cancel_before_shipment_releases_and_refunds_everything() -> None:
    h = Harness()
    h.create(
        order("2", [line(1, "A", "75"), line(2, "B", "50", qty=2), line(3, "SHIP", "10", kind="SHIPPING")])
    )
    outcome = h.send(names.ORDER_CANCEL, {"order_id": "2", "sales_channel_id": "OCTO", "reason": "CUSTOMER"})
    refund = the_refund(outcome)
    assert refund["refund_type"] == "cancellation" and refund["document_type"] == "CREDIT_MEMO"
    assert refund["totals"]["cost_gross"] == "148.50"
    assert set(refund_lines(refund)) == {"1", "2", "3"}
    assert h.ats("DEFAULT", "A") == 0 and h.ats("DEFAULT", "B") == 0
    assert events(outcome, names.ORDER_UPDATED)[0]["order"]["postsales"]["status"] == "FULLY_REFUNDED"
    assert (
        rejection(h.send(names.ORDER_CANCEL, {"order_id": "2", "sales_channel_id": "OCTO"}))
        == "ORDER_CANCELLED"
    )


def test_cancel_after_partial_shipment_cancels_only_open_units_and_keeps_shipping() -> None:
    h = Harness()
    h.create(
        order("3", [line(1, "A", "30", qty=3, rate="0"), line(2, "SHIP", "10", kind="SHIPPING", rate="0")])
    )
    h.ship("3", [(1, 1)])
    refund = the_refund(h.send(names.ORDER_CANCEL, {"order_id": "3", "sales_channel_id": "OCTO"}))
    assert refund_lines(refund) == {"1": refund_lines(refund)["1"]}
    assert refund["lines"][0]["quantity"] == 2 and refund["totals"]["cost_gross"] == "20.00"
    assert (
        rejection(h.send(names.ORDER_CANCEL, {"order_id": "3", "sales_channel_id": "OCTO"}))
        == "ALREADY_SHIPPED"
    )


def test_cancel_line_partial_then_whole_line_takes_its_service_along() -> None:
    h = Harness()
    h.create(
        order(
            "4",
            [
                line(1, "A", "20", qty=2, rate="0"),
                line(2, "WRAP", "3", kind="SERVICE", parent_line_number=1, rate="0"),
                line(3, "B", "7", rate="0"),
            ],
        )
    )
    first = the_refund(
        h.send(
            names.ORDER_CANCEL_LINE,
            {"order_id": "4", "sales_channel_id": "OCTO", "line_number": 1, "reason": "OOS", "quantity": 1},
        )
    )
    assert first["totals"]["cost_gross"] == "10.00"
    second = the_refund(
        h.send(
            names.ORDER_CANCEL_LINE,
            {"order_id": "4", "sales_channel_id": "OCTO", "line_number": 1, "reason": "OOS"},
        )
    )
    assert (
        refund_lines(second)["2"]["cost_gross"] == "3.00"
        and refund_lines(second)["1"]["cost_gross"] == "10.00"
    )
    assert h.order("4").cancelled is False
    cancel_again = {"order_id": "4", "sales_channel_id": "OCTO", "line_number": 1, "reason": "OOS"}
    assert rejection(h.send(names.ORDER_CANCEL_LINE, cancel_again)) == "NOT_ALLOWED"


def test_the_documented_reshipment_yields_child_order_and_shipment_request_without_refund() -> None:
    h = Harness()
    h.create(order("12345", [line(1, "24-MB01", "34"), line(2, "24-MB04", "32.47")], store="ST1"))
    h.ship("12345", [(1, 1), (2, 1)], store="ST1")
    seed = documented_reshipment(new_order_id="R00000548")
    outcome = h.send(names.RESHIPMENT_CREATE_SEED, seed)
    assert events(outcome, names.REFUND_UPDATED) == []
    (request,) = events(outcome, names.SHIPMENT_REQUESTED)
    assert request["shipment_request"]["id"] == "ST1-R00000548-01"
    items = request["shipment_request"]["items"]
    assert [(i["sku"], i["item_type"], i["status_reason"]) for i in items] == [
        ("24-MB04", "PHYSICAL", "ITEM_PENDING_PICKING"),
        ("flatrate Fixed", "SHIPPING", "ITEM_PENDING_PICKING"),
    ]
    (child,) = events(outcome, names.ORDER_CREATED)
    assert child["order"]["origin"] == "RE" and child["order"]["original_order_id"] == "12345"
    assert child["order"]["payments"][0]["transactions"][0] == {
        **child["order"]["payments"][0]["transactions"][0],
        "payment_method": "ZEROPAY",
        "amount": 0,
    }
    (closed,) = events(outcome, names.RETURN_UPDATED)
    assert closed["return"]["status"]["code"] == "CLOSED"
    # The reshipped unit is gone from what can be returned, and nothing was refunded.
    assert rejection(h.ret("12345", [{"line_number": 2}], store="ST1")) == "OVER_RETURN"
    assert h.order("12345", "ST1").refunded_gross == 0
    # Without new_order_id the child is R<order id>-<n>; the spec spelling is accepted too.
    h.ship("12345", [], store="ST1")
    again = h.send(
        names.RESHIPMENT_CREATE,
        {"reshipment": {"sales_channel_id": "ST1", "order_id": "12345", "lines": [{"line_number": 1}]}},
    )
    assert events(again, names.ORDER_CREATED)[0]["order"]["id"] == "R12345-2"


def test_appeasement_is_money_only_and_bounded() -> None:
    h = Harness()
    h.create(OCTOPUS)
    appease = {
        "appeasement": {
            "sales_channel_id": "OCTO",
            "order_id": "1234",
            "user": "cs",
            "lines": [{"line_number": 1, "amount": "11.00", "reason": "R", "reason_description": "scratch"}],
        }
    }
    refund = the_refund(h.send(names.APPEASEMENT_CREATE, appease))
    assert refund["document_type"] == "CREDIT_MEMO" and refund["refund_type"] == "appeasement"
    assert refund_lines(refund)["1"]["cost_vat"] == "1.00" and refund["lines"][0]["restock"] is None
    too_much = {
        "appeasement": {
            **appease["appeasement"],
            "lines": [{"line_number": 1, "amount": "71.51", "reason": "R", "reason_description": "x"}],
        }
    }
    assert rejection(h.send(names.APPEASEMENT_CREATE, too_much)) == "OVER_REFUND"
    # A later return of the unit refunds only what is left on the line.
    h.ship("1234", [(1, 1)])
    after = the_refund(h.ret("1234", [{"line_number": 1}]))
    assert after["totals"]["cost_gross"] == "71.50"
    assert "capped" in after["lines"][0]["explanation"]


def test_redelivered_message_produces_nothing() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(2, 2)])
    params = {"return": {"sales_channel_id": "OCTO", "order_id": "1234", "lines": [{"line_number": 2}]}}
    first = h.send(names.RETURN_AUTHORIZE, params, message_id="same")
    second = h.send(names.RETURN_AUTHORIZE, params, message_id="same")
    assert first.events and second.status == "duplicate" and second.events == [] and second.movements == []


def test_orders_before_the_integration_date_are_skipped_with_their_postsales() -> None:
    h = Harness.with_rules(integration_date="2026-06-01")
    skipped = h.create(order("old", [line(1, "A", "1")], origin_date="2026-05-31T23:59:59Z"))
    assert skipped.status == "skipped" and skipped.movements == []
    later = h.ret("old", [{"line_number": 1}])
    assert later.status == "skipped" and later.events == []


def test_messages_for_an_unknown_order_wait_for_it() -> None:
    h = Harness()
    held = h.ret("77", [{"line_number": 1}])
    assert held.status == "held" and held.events == []
    created = h.create(order("77", [line(1, "A", "10")]))
    # The return waited for the order; nothing is shipped yet, so now it waits for the shipment.
    assert events(created, names.ERROR_NOTIFY) == []
    assert [m.waits_for for m in h.order("77").held] == ["LINE_NOT_SHIPPED"]
    (late,) = h.settle(minutes=1)
    assert [e.params["code"] for e in late.events] == ["LINE_NOT_SHIPPED"]
    assert h.order("77").held == []
    w = Harness.with_rules(reorder_window_seconds=600)
    w.ret("78", [{"line_number": 1}])
    w.create(order("78", [line(1, "A", "10")]))
    shipped = w.ship("78", [(1, 1)])
    # The shipment let the waiting return through: its return and refund follow the shipment's update.
    assert [e.name for e in shipped.events] == [
        names.ORDER_UPDATED,
        names.RETURN_UPDATED,
        names.RETURN_UPDATED,
        names.REFUND_UPDATED,
        names.ORDER_UPDATED,
    ]
    assert w.order("78").held == []


def test_held_messages_past_the_deadline_are_refused_or_refunded_standalone() -> None:
    h = Harness.with_rules(unknown_order_hold_minutes=30)
    h.ret("88", [{"line_number": 1}])
    assert [o.events for o in h.settle(minutes=10)] == [[]]
    (late,) = h.settle(minutes=30)
    assert [e.params["code"] for e in late.events] == ["UNKNOWN_ORDER"]

    s = Harness.with_rules(unknown_order="standalone")
    s.send(
        names.APPEASEMENT_CREATE,
        {
            "appeasement": {
                "sales_channel_id": "POS",
                "order_id": "99",
                "user": "pos",
                "lines": [{"line_number": 1, "amount": "17.00", "reason": "V", "reason_description": "void"}],
            }
        },
    )
    s.ret("99", [{"line_number": 1}], store="POS")
    (settled,) = s.settle(everything=True)
    names_out = [e.name for e in settled.events]
    assert names_out == [names.REFUND_UPDATED, names.ERROR_NOTIFY]
    refund = settled.events[0].params["refund"]
    assert refund["standalone"] is True and refund["totals"]["cost_gross"] == "17.00"
    assert settled.events[1].params["code"] == "UNKNOWN_ORDER"  # a return carries no amounts


def test_credit_note_numbers_are_sequential_per_store_series() -> None:
    h = Harness()
    h.create(OCTOPUS)
    h.ship("1234", [(1, 1), (2, 2), (3, 1)])
    numbers = [
        the_refund(h.ret("1234", [{"line_number": n, "quantity": 1}]))["credit_note_number"]
        for n in (1, 2, 2, 3)
    ]
    assert numbers == [f"CN-OCTO-0-{i:06d}" for i in (1, 2, 3, 4)]


def test_snapshot_modes() -> None:
    def snap(mode: str, stock: list[tuple[str, int]]) -> dict[str, int | None]:
        snapshot = SourceSnapshot.model_validate(
            {"source_id": "S", "mode": mode, "stock": [{"sku": s, "quantity": q} for s, q in stock]}
        )
        return {m.sku: m.set_on_hand for m in snapshot_movements(snapshot, "id", "t", ["A", "B", "C"])}

    assert snap("FULL", [("A", 5)]) == {"A": 5, "B": 0, "C": 0}
    assert snap("NONZERO", [("A", 5), ("D", 1)]) == {"A": 5, "D": 1, "B": 0, "C": 0}
    assert snap("DELTA", [("B", 2)]) == {"B": 2}


def test_an_order_placed_exactly_at_the_integration_date_is_applied() -> None:
    h = Harness.with_rules(integration_date="2026-06-01")
    edge = h.create(order("edge", [line(1, "A", "1")], origin_date="2026-06-01T00:00:00Z"))
    assert edge.status == "applied"
    assert [(m.key, m.reserved_delta) for m in edge.movements] == [("DEFAULT:A", 1)]


def test_appeasement_tax_is_the_cumulative_share_of_the_line() -> None:
    """Three appeasements of 3.33 on a line of 11.67 (1.67 tax): the tax of the first k appeasements is
    round(1.67 x 3.33k / 11.67), so 0.48, 0.47, 0.48 (1.43 in all), not 0.48 three times."""
    h = Harness()
    h.create(order("tax", [line(1, "A", "10.00", rate="16.7")]))
    taxes = []
    for n in range(3):
        appease = {
            "appeasement": {
                "sales_channel_id": "OCTO",
                "order_id": "tax",
                "user": "cs",
                "lines": [{"line_number": 1, "amount": "3.33", "reason": "R", "reason_description": "x"}],
            }
        }
        refund = the_refund(h.send(names.APPEASEMENT_CREATE, appease, message_id=f"appease-{n}"))
        taxes.append(refund_lines(refund)["1"]["cost_vat"])
    assert taxes == ["0.48", "0.47", "0.48"]


def test_a_reshipment_child_order_carries_no_price() -> None:
    h = Harness()
    h.create(order("12345", [line(1, "24-MB01", "34"), line(2, "24-MB04", "32.47")], store="ST1"))
    h.ship("12345", [(1, 1), (2, 1)], store="ST1")
    outcome = h.send(names.RESHIPMENT_CREATE_SEED, documented_reshipment(new_order_id="R1"))
    (child,) = events(outcome, names.ORDER_CREATED)
    amounts = [ln["amount"] for ln in child["order"]["lines"]]
    assert len(amounts) == 2  # the reshipped line and its shipping
    for amount in amounts:
        assert [Decimal(str(amount[k])) for k in ("gross_amount", "net_amount", "tax_amount")] == [0, 0, 0]
        assert amount["taxes"] == []
