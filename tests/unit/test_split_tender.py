"""Split tender: a credit note goes back to the payments the order was paid with."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import names
from tests.unit.harness import Harness, appeasement, events, line, order, rejection, the_refund

# Line 1 (110.00) was paid with the gift card, line 2 (55.00) and the shipping (11.00) with the card.
GIFT_CARD = "50.00"


def split_order(order_id: str = "1", gift_card: str = GIFT_CARD) -> dict[str, Any]:
    lines = [
        line(1, "A", "100.00", qty=2, payment_reference="GC-1"),
        line(2, "B", "50.00", payment_reference="CARD-1"),
        line(3, "SHIP", "10.00", kind="SHIPPING", payment_reference="CARD-1"),
    ]
    params = order(order_id, lines)
    total = sum((Decimal(ln["amount"]["gross_amount"]) for ln in lines), Decimal(0))
    card = dict(params["order"]["payments"][0])
    card["reference"] = "CARD-1"
    card["transactions"] = [{**card["transactions"][0], "amount": str(total - Decimal(gift_card))}]
    gift = {
        "reference": "GC-1",
        "currency": "AUD",
        "transactions": [{**card["transactions"][0], "payment_method": "giftcard", "amount": gift_card}],
    }
    params["order"]["payments"] = [card, gift]
    return params


def shares(refund: dict[str, Any]) -> dict[str, str]:
    return {share["ref"]: share["amount"] for share in refund["payments"]}


def shipped(h: Harness, order_id: str = "1") -> None:
    h.create(split_order(order_id))
    h.ship(order_id, [(1, 2), (2, 1)])


def test_each_line_goes_back_to_its_payment_and_what_it_cannot_take_follows_the_tender_order() -> None:
    h = Harness.with_rules(reorder_window_seconds=0, shipping_refund_rule="never")
    shipped(h)
    # Line 2 was paid by card: all of it back to the card.
    assert shares(the_refund(h.ret("1", [{"line_number": 2}]))) == {"CARD-1": "55.00"}
    # Line 1 (110.00) was paid by the gift card, which paid only 50.00: the rest goes to the card.
    assert shares(the_refund(h.ret("1", [{"line_number": 1}]))) == {"GC-1": "50.00", "CARD-1": "60.00"}
    ledger = [(t.reference, t.amount) for t in h.order("1").transactions if t.type == "REFUND"]
    assert ledger == [
        ("CARD-1", Decimal("-55.00")),
        ("CARD-1", Decimal("-60.00")),
        ("GC-1", Decimal("-50.00")),
    ]


def test_an_appeasement_is_tied_to_no_payment_and_goes_to_the_gift_card_first() -> None:
    h = Harness.with_rules(reorder_window_seconds=0)
    shipped(h)
    refund = the_refund(h.send(names.APPEASEMENT_CREATE, appeasement("1", [(2, "20.00")])))
    assert refund["payments"] == [{"ref": "GC-1", "payment_method": "giftcard", "amount": "20.00"}]
    refund = the_refund(h.send(names.APPEASEMENT_CREATE, appeasement("1", [(1, "40.00")])))
    assert shares(refund) == {"GC-1": "30.00", "CARD-1": "10.00"}


def test_a_channel_can_put_the_card_first() -> None:
    h = Harness.with_rules(reorder_window_seconds=0, refund_tender_order=["CARD"])
    shipped(h)
    refund = the_refund(h.send(names.APPEASEMENT_CREATE, appeasement("1", [(2, "20.00")])))
    assert shares(refund) == {"CARD-1": "20.00"}


def upstream(order_id: str, split: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "refund": {
            "client": "pos",
            "order_id": order_id,
            "store_id": "OCTO",
            "status": {"date": "2026-11-01"},
            "refund_mode": "AMOUNT_ONLY",
            "lines": [
                {
                    "order_line": "1",
                    "reason_description": "split",
                    "payments": [{"ref": ref, "details": {"cost_gross": amount}} for ref, amount in split],
                }
            ],
        }
    }


def test_an_upstream_refund_keeps_its_split_and_no_payment_gives_more_than_it_has() -> None:
    h = Harness.with_rules(reorder_window_seconds=0)
    shipped(h)
    refund = the_refund(h.send(names.REFUND_CREATE, upstream("1", [("GC-1", "30.00"), ("CARD-1", "10.00")])))
    assert shares(refund) == {"CARD-1": "10.00", "GC-1": "30.00"}
    refused = h.send(names.REFUND_CREATE, upstream("1", [("GC-1", "20.01")]))
    assert rejection(refused) == "OVER_REFUND" and "GC-1" in events(refused, names.ERROR_NOTIFY)[0]["message"]
    # A reference the order does not know is tied to no payment.
    refund = the_refund(h.send(names.REFUND_CREATE, upstream("1", [("POS-CASH", "25.00")])))
    assert shares(refund) == {"GC-1": "20.00", "CARD-1": "5.00"}


def test_a_single_payment_order_refunds_as_before() -> None:
    h = Harness.with_rules(reorder_window_seconds=0)
    h.create(order("9", [line(1, "A", "10.00")]))
    h.ship("9", [(1, 1)])
    refund = the_refund(h.ret("9", [{"line_number": 1}], store="OCTO"))
    assert refund["payments"] == [{"ref": "PAY1", "payment_method": "CARD", "amount": "11.00"}]


@settings(max_examples=80, deadline=None)
@given(
    gift_card=st.sampled_from(["0.01", "20.00", "50.00", "110.00", "176.00"]),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["return", "appease", "upstream", "cancel"]),
            st.integers(1, 3),
            st.sampled_from(["0.01", "7.77", "33.30", "60.00", "200.00"]),
        ),
        max_size=10,
    ),
)
def test_no_payment_ever_gets_back_more_than_it_paid_and_every_note_is_split_exactly(
    gift_card: str, steps: list[tuple[str, int, str]]
) -> None:
    h = Harness.with_rules(reorder_window_seconds=0, auto_release_refund=False)
    h.create(split_order(gift_card=gift_card))
    h.ship("1", [(1, 2), (2, 1)])
    paid = {"GC-1": Decimal(gift_card), "CARD-1": Decimal("176.00") - Decimal(gift_card)}
    notes: list[str] = []
    for kind, number, amount in steps:
        if kind == "return":
            outcome = h.ret("1", [{"line_number": min(number, 2), "quantity": 1}])
        elif kind == "appease":
            outcome = h.send(names.APPEASEMENT_CREATE, appeasement("1", [(number, amount)]))
        elif kind == "upstream":
            outcome = h.send(names.REFUND_CREATE, upstream("1", [("GC-1", amount)]))
        else:
            if not notes:
                continue
            cancel = {
                "sales_channel_id": "OCTO",
                "order_id": "1",
                "credit_note_number": notes[number % len(notes)],
            }
            h.send(names.REFUND_CANCEL, cancel)
            continue
        for params in events(outcome, names.REFUND_UPDATED):
            note = params["refund"]
            notes.append(note["credit_note_number"])
            given = sum((Decimal(share["amount"]) for share in note["payments"]), Decimal(0))
            assert given == Decimal(note["totals"]["cost_gross"])
            assert all(Decimal(share["amount"]) > 0 for share in note["payments"])
    state = h.order("1")
    back: dict[str, Decimal] = {}
    for transaction in state.transactions:
        if transaction.type == "REFUND":
            assert transaction.reference is not None
            back[transaction.reference] = back.get(transaction.reference, Decimal(0)) - transaction.amount
    assert set(back) <= set(paid)
    assert all(back[ref] <= paid[ref] for ref in back), (back, paid)
    assert sum(back.values(), Decimal(0)) == state.refunded_gross <= state.paid
