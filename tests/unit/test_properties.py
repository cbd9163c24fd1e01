"""Property tests: random orders and random post-sales sequences keep the money and stock invariants."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as record_label
from hypothesis import strategies as st

from domain import names
from domain.money import prorate_step
from domain.state import LineState, OrderState
from tests.unit.harness import Harness, line, order

CENTS = st.integers(min_value=1, max_value=99_999).map(lambda c: f"{Decimal(c) / 100:.2f}")
RATES = st.sampled_from(["0", "5", "10", "19", "21"])


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    physical = draw(st.integers(min_value=1, max_value=4))
    lines = [
        line(n, f"SKU{n % 3}", draw(CENTS), qty=draw(st.integers(1, 4)), rate=draw(RATES))
        for n in range(1, physical + 1)
    ]
    if draw(st.booleans()):
        lines.append(line(physical + 1, "SHIP", draw(CENTS), kind="SHIPPING", rate=draw(RATES)))
    if draw(st.booleans()):
        lines.append(line(physical + 2, "WRAP", draw(CENTS), kind="SERVICE", parent_line_number=1))
    if draw(st.booleans()):
        taxed = lines[0]
        taxed["amount"]["taxes"].append({"type": "LEVY", "amount": "0.07", "rate": "1"})
        gross = Decimal(taxed["amount"]["gross_amount"]) + Decimal("0.07")
        taxed["amount"]["gross_amount"] = str(gross)
    return order("P1", lines)


actions = st.lists(
    st.tuples(
        # Weighted so that shipments and returns happen before a whole-order cancel ends the story.
        st.sampled_from(
            ["ship"] * 4
            + ["return"] * 3
            + ["receive"] * 2
            + ["upstream"] * 2
            + ["appease", "cancel_line", "cancel_return", "cancel"]
            + ["exchange"] * 2
        ),
        st.integers(1, 4),  # line number
        st.integers(1, 4),  # units
        st.integers(1, 100),  # percent of what is left (money)
        st.sampled_from(["QUANTITY_AND_AMOUNT", "QUANTITY_ONLY", "AMOUNT_ONLY"]),
        st.booleans(),
    ),
    max_size=30,
)

channel_rules = st.fixed_dictionaries(
    {
        "shipping_refund_rule": st.sampled_from(["onFirst", "onLast", "never"]),
        "return_service_line": st.booleans(),
        "return_service_order": st.booleans(),
        "auto_approve_return": st.booleans(),
        "refund_on": st.sampled_from(["approval", "receipt"]),
        "exchange_ships": st.sampled_from(["at_once", "on_receipt"]),
        "restocking_fee_percent": st.one_of(st.none(), st.sampled_from(["10", "15", "33.33", "100"])),
        "return_shipping_fee": st.one_of(st.none(), st.sampled_from(["0.99", "5.95", "500.00"])),
    }
)


def _send(h: Harness, kind: str, n: int, units: int, percent: int, mode: str, flag: bool) -> None:
    state = h.order("P1")
    target = state.lines.get(n)
    left = target.remaining_gross if target else Decimal("1.00")
    amount = f"{(left * percent / 100).quantize(Decimal('0.01')):.2f}"
    if kind == "ship":
        h.ship("P1", [(n, units)])
    elif kind == "return":
        header = {"refund_mode": "QUANTITY_ONLY"} if mode == "QUANTITY_ONLY" else {}
        quantity = units if units < 3 else None  # None: every unit not yet returned
        h.ret(
            "P1",
            [{"line_number": n, "quantity": quantity, "condition": "GOOD" if flag else "DAMAGED"}],
            **header,
        )
    elif kind == "receive":
        open_rmas = [r.rma for r in state.returns.values() if r.is_open]
        h.send(
            names.RETURN_RECEIVED,
            {
                "return": {
                    "sales_channel_id": "OCTO",
                    "order_id": "P1",
                    "source_id": "DEFAULT",
                    "user": "u",
                    "rma": open_rmas[0] if open_rmas else None,
                    "lines": [
                        {
                            "id": "x",
                            "line_number": n,
                            "sku": "x",
                            "reason": "r",
                            "reason_description": "d",
                            "condition": "GOOD" if flag else None,
                        }
                    ],
                }
            },
        )
    elif kind == "cancel_return":
        open_rmas = [r.rma for r in state.returns.values() if r.is_open]
        h.send(
            names.RETURN_CANCEL,
            {
                "return": {
                    "sales_channel_id": "OCTO",
                    "order_id": "P1",
                    "source_id": "D",
                    "rma": open_rmas[0] if open_rmas else "none",
                }
            },
        )
    elif kind == "appease":
        h.send(
            names.APPEASEMENT_CREATE,
            {
                "appeasement": {
                    "sales_channel_id": "OCTO",
                    "order_id": "P1",
                    "user": "u",
                    "lines": [{"line_number": n, "amount": amount, "reason": "r", "reason_description": "d"}],
                }
            },
        )
    elif kind == "cancel_line":
        h.send(
            names.ORDER_CANCEL_LINE,
            {
                "order_id": "P1",
                "sales_channel_id": "OCTO",
                "line_number": n,
                "reason": "r",
                "quantity": units,
            },
        )
    elif kind == "cancel":
        h.send(names.ORDER_CANCEL, {"order_id": "P1", "sales_channel_id": "OCTO"})
    elif kind == "exchange":
        swap = {"line_number": n, "new_sku": f"NEW-{n}", "quantity": units if units < 3 else None}
        h.send(
            names.EXCHANGE_CREATE,
            {"exchange": {"sales_channel_id": "OCTO", "order_id": "P1", "lines": [swap]}},
        )
    else:
        h.send(
            names.REFUND_CREATE,
            {
                "refund": {
                    "client": "shop",
                    "order_id": "P1",
                    "store_id": "OCTO",
                    "status": {"date": "2026-11-05"},
                    "refund_mode": mode,
                    "lines": [
                        {
                            "order_line": str(n),
                            "quantity": units,
                            "restock": flag,
                            "reason_description": "d",
                            "payments": [{"ref": "PAY1", "details": {"cost_gross": amount}}],
                        }
                    ],
                }
            },
        )


def _check_line(line_state: LineState) -> None:
    assert Decimal(0) <= line_state.refunded_gross <= line_state.gross
    for index, tax in enumerate(line_state.taxes):
        assert Decimal(0) <= line_state.refunded_tax[index] <= tax.amount
    assert 0 <= line_state.cancelled <= line_state.quantity
    if line_state.kind == "PHYSICAL":
        assert line_state.shipped + line_state.cancelled <= line_state.quantity
        assert 0 <= line_state.claimed <= line_state.shipped
        assert 0 <= line_state.returned + line_state.reshipped <= line_state.claimed
        assert line_state.reserved == line_state.open_units
        assert 0 <= line_state.exchanged <= line_state.shipped
    assert 0 <= line_state.refunded_units <= line_state.quantity


def _check_order(h: Harness, state: OrderState) -> None:
    for line_state in state.lines.values():
        _check_line(line_state)
        if line_state.kind == "PHYSICAL":
            waiting = sum(
                rl.quantity
                for r in state.returns.values()
                if r.status == "REQUESTED"
                for rl in r.lines
                if rl.line_number == line_state.line_number
            )
            assert line_state.claimed == line_state.returned + line_state.reshipped + waiting
    assert Decimal(0) <= state.refunded_gross <= state.paid
    # What the credit notes say equals what the state booked, line by line.
    per_line: dict[str, Decimal] = defaultdict(Decimal)
    fees: dict[str, Decimal] = defaultdict(Decimal)
    numbers = []
    for event in h.log:
        if event.name == names.REFUND_UPDATED:
            refund = event.params["refund"]
            numbers.append(refund["credit_note_number"])
            assert Decimal(refund["totals"]["cost_gross"]) >= 0
            for ln in refund["lines"]:
                details = ln["payments"][0]["details"]
                if "fee" in ln:  # a return fee kept: negative, booked apart from the line's refunds
                    assert Decimal(details["cost_gross"]) <= 0
                    fees[ln["order_line"]] -= Decimal(details["cost_gross"])
                    continue
                per_line[ln["order_line"]] += Decimal(details["cost_gross"])
                # docs/contract.md rounds the gross and each tax component on their own, so on a line worth a
                # few cents a unit's tax can run a cent per component ahead of its gross; never more.
                noise = Decimal("0.01") * len(details["vat_detail"])
                assert Decimal(details["cost_net"]) >= -noise, details
    for line_state in state.lines.values():
        assert per_line[str(line_state.line_number)] == line_state.refunded_gross
        kept = line_state.fees.gross if line_state.fees is not None else Decimal(0)
        assert fees[str(line_state.line_number)] == kept <= line_state.refunded_gross
    assert numbers == [f"CN-OCTO-0-{i:06d}" for i in range(1, len(numbers) + 1)]  # gap-free
    # Available to sell is on hand − reserved, and every change of it was published.
    published: Counter[str] = Counter()
    for event in h.log:
        if event.name == names.STOCK_ADJUSTED:
            adjustment = event.params["adjustment"]
            for item in adjustment["adjustments"]:
                key = f"{adjustment['source_id']}:{item['sku']}"
                published[key] += item["quantity"]
                assert item["available_to_sell"] == item["on_hand"] - item["reserved"]
    for key, item in h.stock.items():
        assert item.available_to_sell == item.on_hand - item.reserved == published[key]
    # Exchanges move no money: their child orders were paid nothing and refunded nothing; each reserves
    # what it has still to ship. A line stays exchanged while its child is not cancelled (a child
    # cancelled with its return gives the line back; one cancelled at a bad receipt does not).
    children = [o for k, o in h.orders.items() if k != state.key]
    exchanged_lines = sum(1 for ln in state.lines.values() if ln.exchanged)
    assert sum(1 for child in children if not child.cancelled) <= exchanged_lines <= len(children)
    for child in children:
        assert child.paid == 0 and child.refunded_gross == 0
        for line_state in child.lines.values():
            if line_state.kind == "PHYSICAL":
                assert line_state.reserved == line_state.open_units


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(orders(), channel_rules, actions, st.booleans())
def test_random_post_sales_sequences_keep_money_and_stock_invariants(
    created: dict[str, Any],
    rules: dict[str, Any],
    steps: list[tuple[str, int, int, int, str, bool]],
    ship_first: bool,
) -> None:
    h = Harness.with_rules(**rules)
    h.create(created)
    if ship_first:
        h.ship("P1", [(ln["line_number"], ln["quantity"]) for ln in created["order"]["lines"]])
    for step in steps:
        before = len(h.log)
        _send(h, *step)
        new = h.log[before:]
        refunded = any(e.name == names.REFUND_UPDATED for e in new)
        label = "refund" if refunded else new[0].params.get("code", "other") if new else "nothing"
        record_label(f"{step[0]} -> {label}")
        _check_order(h, h.order("P1"))


@settings(max_examples=150, deadline=None)
@given(orders(), st.data())
def test_refunds_of_a_line_returned_in_random_chunks_sum_exactly_to_the_line(
    created: dict[str, Any], data: st.DataObject
) -> None:
    h = Harness.with_rules(shipping_refund_rule="onLast", return_service_line=True, return_service_order=True)
    h.create(created)
    physical = [ln for ln in created["order"]["lines"] if ln["product_type"] == "PHYSICAL"]
    h.ship("P1", [(ln["line_number"], ln["quantity"]) for ln in physical])
    for ln in physical:
        left = ln["quantity"]
        while left:
            chunk = data.draw(st.integers(1, left))
            assert h.ret("P1", [{"line_number": ln["line_number"], "quantity": chunk}]).status == "applied"
            left -= chunk
    state = h.order("P1")
    for line_state in state.lines.values():
        assert line_state.refunded_gross == line_state.gross
        assert line_state.refunded_tax == [tax.amount for tax in line_state.taxes]
    assert state.refunded_gross == state.paid
    _check_order(h, state)


@settings(max_examples=150, deadline=None)
@given(orders(), st.data())
def test_mixed_upstream_refunds_and_returns_sum_exactly_and_never_exceed_what_was_paid(
    created: dict[str, Any], data: st.DataObject
) -> None:
    """Each line refunded in random chunks, each chunk either a return or an upstream refund whose gross
    is the chunk's pro-rata share (what a storefront computes) and whose tax the worker derives."""
    h = Harness.with_rules(shipping_refund_rule="never", return_service_line=False)
    h.create(created)
    physical = [ln for ln in created["order"]["lines"] if ln["product_type"] == "PHYSICAL"]
    h.ship("P1", [(ln["line_number"], ln["quantity"]) for ln in physical])
    for ln in physical:
        left, done = ln["quantity"], 0
        gross = Decimal(ln["amount"]["gross_amount"])
        while left:
            chunk = data.draw(st.integers(1, left))
            share = prorate_step(gross, done, done + chunk, ln["quantity"], 2)
            if data.draw(st.booleans()):
                outcome = h.ret("P1", [{"line_number": ln["line_number"], "quantity": chunk}])
            else:
                outcome = h.send(
                    names.REFUND_CREATE,
                    {
                        "refund": {
                            "client": "shop",
                            "order_id": "P1",
                            "store_id": "OCTO",
                            "status": {"date": "2026-11-05"},
                            "lines": [
                                {
                                    "order_line": str(ln["line_number"]),
                                    "quantity": chunk,
                                    "reason_description": "d",
                                    "payments": [{"ref": "PAY1", "details": {"cost_gross": str(share)}}],
                                }
                            ],
                        }
                    },
                )
            assert outcome.status == "applied", outcome.events[0].params if outcome.events else outcome
            left, done = left - chunk, done + chunk
        overpay = h.send(
            names.APPEASEMENT_CREATE,
            {
                "appeasement": {
                    "sales_channel_id": "OCTO",
                    "order_id": "P1",
                    "user": "u",
                    "lines": [
                        {
                            "line_number": ln["line_number"],
                            "amount": "0.01",
                            "reason": "r",
                            "reason_description": "d",
                        }
                    ],
                }
            },
        )
        assert overpay.status == "rejected"  # nothing is left to refund on the line
    state = h.order("P1")
    for line_state in state.lines.values():
        if line_state.kind == "PHYSICAL":
            assert line_state.refunded_gross == line_state.gross
            assert line_state.refunded_tax == [tax.amount for tax in line_state.taxes]
    assert state.refunded_gross <= state.paid
    _check_order(h, state)
