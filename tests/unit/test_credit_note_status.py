"""Credit notes issued PENDINGRELEASE are released or cancelled by message; a standalone POS refund
(its order never seen) is refunded with only its negative transaction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import names
from domain.state import OrderState
from tests.unit.harness import Harness, appeasement, events, line, order, rejection, the_refund

CHANNEL = {"auto_release_refund": False, "reorder_window_seconds": 0}


def note_command(order_id: str, number: str, **extra: Any) -> dict[str, Any]:
    return {
        "sales_channel_id": "OCTO",
        "order_id": order_id,
        "credit_note_number": number,
        "user": "fin",
        **extra,
    }


def shipped_order(h: Harness, order_id: str = "1") -> None:
    h.create(order(order_id, [line(1, "A", "100.00", qty=2), line(2, "B", "30.00", rate="21")]))
    h.ship(order_id, [(1, 2), (2, 1)])


def refunded(state: OrderState) -> tuple[Decimal, list[Decimal], int, Decimal, Decimal]:
    """Everything a credit note may have taken from line 1 and from the order's ledger."""
    first = state.lines[1]
    return (
        first.refunded_gross,
        list(first.refunded_tax),
        first.refunded_units,
        first.amount_only_gross,
        state.refunded_gross,
    )


def test_a_pending_note_is_released_once_and_its_document_published_again() -> None:
    h = Harness.with_rules(**CHANNEL)
    shipped_order(h)
    issued = the_refund(h.ret("1", [{"line_number": 1, "quantity": 1}]))
    assert issued["status"]["code"] == "PENDINGRELEASE"
    number = issued["credit_note_number"]
    assert h.order("1").pending_notes

    released = h.send(names.REFUND_RELEASE, note_command("1", number, offline=True))
    note = the_refund(released)
    assert note["status"] == {
        "code": "RELEASED",
        "date": "2026-11-01T09:04:00Z",
        "user": "fin",
        "offline": True,
    }
    assert {k: v for k, v in note.items() if k != "status"} == {
        k: v for k, v in issued.items() if k != "status"
    }
    assert [e.name for e in released.events] == [names.REFUND_UPDATED, names.ORDER_UPDATED]
    assert h.order("1").pending_notes == {}

    again = h.send(names.REFUND_RELEASE, note_command("1", number))
    assert again.status == "skipped" and again.events == [] and "already released" in again.detail
    assert rejection(h.send(names.REFUND_CANCEL, note_command("1", number))) == "NOT_ALLOWED"


def test_a_cancelled_note_gives_back_every_figure_it_took_and_goods_stay_moved() -> None:
    h = Harness.with_rules(**CHANNEL)
    shipped_order(h)
    before = refunded(h.order("1"))
    issued = the_refund(h.ret("1", [{"line_number": 1, "quantity": 1}]))
    assert refunded(h.order("1")) != before
    returned = h.order("1").lines[1].returned

    cancelled = h.send(names.REFUND_CANCEL, note_command("1", issued["credit_note_number"]))
    assert the_refund(cancelled)["status"]["code"] == "CANCELLED"
    state = h.order("1")
    assert refunded(state) == before
    assert not [t for t in state.transactions if t.credit_note_number == issued["credit_note_number"]]
    assert state.lines[1].returned == returned  # the parcel stays received
    (order_doc,) = events(cancelled, names.ORDER_UPDATED)
    assert order_doc["order"]["id"] == "1"

    assert h.send(names.REFUND_CANCEL, note_command("1", issued["credit_note_number"])).status == "skipped"
    assert (
        rejection(h.send(names.REFUND_RELEASE, note_command("1", issued["credit_note_number"])))
        == "NOT_ALLOWED"
    )
    # What the note took is refundable again, to the cent.
    again = the_refund(h.send(names.APPEASEMENT_CREATE, appeasement("1", [(1, "100.00")])))
    assert again["totals"]["cost_gross"] == "100.00"


def test_a_released_note_on_an_auto_release_channel_cannot_be_cancelled() -> None:
    h = Harness.with_rules(reorder_window_seconds=0)
    shipped_order(h)
    issued = the_refund(h.ret("1", [{"line_number": 2}]))
    assert issued["status"]["code"] == "RELEASED"
    assert (
        rejection(h.send(names.REFUND_CANCEL, note_command("1", issued["credit_note_number"])))
        == "NOT_ALLOWED"
    )
    assert h.send(names.REFUND_RELEASE, note_command("1", issued["credit_note_number"])).status == "skipped"


def test_an_unknown_number_waits_for_the_reorder_window_then_is_refused() -> None:
    h = Harness.with_rules(auto_release_refund=False, reorder_window_seconds=60)
    shipped_order(h)
    held = h.send(names.REFUND_RELEASE, note_command("1", "CN-NOPE"))
    assert held.status == "held" and "UNKNOWN_REFUND" in held.detail
    (late,) = h.settle(minutes=5)
    assert [e.params["code"] for e in late.events] == ["UNKNOWN_REFUND"]


def test_a_pending_note_keeps_the_order_in_state_until_it_is_settled() -> None:
    h = Harness.with_rules(**CHANNEL, retain_days=2)
    shipped_order(h)
    issued = the_refund(h.ret("1", [{"line_number": 2}]))
    h.send(names.APPEASEMENT_CREATE, appeasement("1", [(1, "1.00")]), minutes=60 * 24 * 5)
    assert h.order("1").credit_notes[0] == issued["credit_note_number"]  # not forgotten: a note is pending


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["return", "appease", "cancel", "release"]), st.integers(0, 5)),
        min_size=1,
        max_size=12,
    )
)
def test_any_mix_of_notes_and_cancels_keeps_the_ledger_equal_to_the_live_notes(
    steps: list[tuple[str, int]],
) -> None:
    """Whatever is issued, released and cancelled: the order's refunded total is the sum of the notes
    not cancelled, each line's refunded figures never go below zero nor beyond the line."""
    h = Harness.with_rules(**CHANNEL)
    shipped_order(h)
    issued: dict[str, Decimal] = {}
    cancelled: set[str] = set()
    for kind, pick in steps:
        if kind == "return":
            outcome = h.ret("1", [{"line_number": 1 + pick % 2, "quantity": 1}])
        elif kind == "appease":
            outcome = h.send(names.APPEASEMENT_CREATE, appeasement("1", [(1 + pick % 2, f"{pick + 1}.50")]))
        else:
            if not issued:
                continue
            number = sorted(issued)[pick % len(issued)]
            name = names.REFUND_CANCEL if kind == "cancel" else names.REFUND_RELEASE
            outcome = h.send(name, note_command("1", number))
            if kind == "cancel" and outcome.status == "applied":
                cancelled.add(number)
            continue
        for event in events(outcome, names.REFUND_UPDATED):
            issued[event["refund"]["credit_note_number"]] = Decimal(event["refund"]["totals"]["cost_gross"])
    state = h.order("1")
    assert state.refunded_gross == sum((g for n, g in issued.items() if n not in cancelled), Decimal(0))
    for ln in state.lines.values():
        assert 0 <= ln.refunded_gross <= ln.gross
        assert all(t >= 0 for t in ln.refunded_tax) and 0 <= ln.refunded_units <= ln.quantity
        assert 0 <= ln.amount_only_gross <= ln.refunded_gross


def pos_refund(order_id: str, *, restock: bool, sku: str | None = "CUP-1") -> dict[str, Any]:
    refund_line: dict[str, Any] = {
        "order_line": "1",
        "quantity": 2,
        "restock": restock,
        "reason_description": "cold",
        "payments": [{"ref": "CASH-1", "details": {"cost_gross": "9.00"}}],
    }
    if sku:
        refund_line["sku"] = sku
    return {
        "refund": {
            "client": "pos",
            "order_id": order_id,
            "store_id": "POS",
            "source_id": "VENUE-1",
            "status": {"date": "2026-11-01"},
            "lines": [refund_line],
        }
    }


def test_a_pos_refund_of_an_order_never_seen_is_refunded_standalone_after_its_hold() -> None:
    h = Harness.with_rules(unknown_order="standalone", unknown_order_hold_minutes=30)
    assert h.send(names.REFUND_CREATE, pos_refund("P1", restock=False)).status == "held"
    (settled,) = h.settle(minutes=31)
    refund = the_refund(settled)
    assert refund["standalone"] is True and refund["totals"]["cost_gross"] == "9.00"
    assert refund["lines"][0]["sku"] == "CUP-1" and refund["lines"][0]["quantity"] == 2
    assert refund["document_type"] == "CREDIT_MEMO"
    assert settled.movements == [] and h.ats("VENUE-1", "CUP-1") == 0


def test_a_standalone_refund_restocks_only_what_it_names() -> None:
    h = Harness.with_rules(unknown_order="standalone", unknown_order_hold_minutes=0)
    h.send(names.REFUND_CREATE, pos_refund("P2", restock=True))
    (settled,) = h.settle(minutes=1)
    refund = the_refund(settled)
    assert refund["document_type"] == "INVENTORY_CREDIT_MEMO"
    assert h.stock["VENUE-1:CUP-1"].on_hand == 2
    h.send(names.REFUND_CREATE, pos_refund("P3", restock=True, sku=None))
    (settled,) = h.settle(minutes=1)
    assert "not restocked" in the_refund(settled)["lines"][0]["explanation"] and settled.movements == []


def test_a_standalone_note_pending_release_is_released_without_its_order() -> None:
    h = Harness.with_rules(
        unknown_order="standalone", unknown_order_hold_minutes=0, auto_release_refund=False
    )
    h.send(names.REFUND_CREATE, pos_refund("P4", restock=False))
    (settled,) = h.settle(minutes=1)
    number = the_refund(settled)["credit_note_number"]
    released = h.send(names.REFUND_RELEASE, {**note_command("P4", number), "sales_channel_id": "POS"})
    assert the_refund(released)["status"]["code"] == "RELEASED"
    assert [e.name for e in released.events] == [names.REFUND_UPDATED]  # no order to publish
