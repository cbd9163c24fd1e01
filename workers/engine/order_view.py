"""One order's post-sales state as an operator reads it (the worker's API and `orders show`), without
personal data unless asked."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from domain import return_window
from domain.rules import ChannelRules
from domain.state import LineState, OrderState
from domain.timeutil import iso
from workers.engine.codec import loads


def _money(value: Decimal) -> str:
    return format(value, "f")


def order_view(
    order: OrderState,
    *,
    with_personal_data: bool = False,
    rules: ChannelRules | None = None,
    rules_version: str | None = None,
) -> dict[str, Any]:
    """Counts, returns, credit notes, ledger and held messages; with the channel's `rules`, each line's
    return deadline (None: no window, or a line not shipped yet under a shipment window) and the
    final-sale pattern naming its SKU (None: returnable). Return fees kept, per line. Personal data
    (the upstream order with its customer, addresses and contacts, return users and free-text reasons,
    held payloads) only when `with_personal_data`."""
    view: dict[str, Any] = {
        "key": order.key,
        "sales_channel": order.sales_channel,
        "order_id": order.order_id,
        "known": order.known,
        "skipped_before_integration": order.skipped_before_integration,
        "store": order.store,
        "currency": order.currency,
        "cancelled": order.cancelled,
        # The rule set the order's next message would be decided by (its deadlines are under it).
        **({"rules_version": rules_version} if rules_version is not None else {}),
        "lines": [
            {
                "line_number": line.line_number,
                "kind": line.kind,
                "sku": line.sku,
                "quantity": line.quantity,
                "open": line.open_units,
                "shipped": line.shipped,
                "cancelled": line.cancelled,
                "returned": line.returned,
                "refunded": line.refunded_units,
                "reshipped": line.reshipped,
                "exchanged": line.exchanged,
                "restocked": line.restocked,
                "written_off": line.written_off,
                "gross": _money(line.gross),
                "refunded_gross": _money(line.refunded_gross),
            }
            | ({"fees_kept": _money(line.fees.gross)} if line.fees is not None and line.fees.gross else {})
            | (
                {
                    "return_deadline": _deadline(rules, order, line),
                    # The final_sale_skus pattern that refuses a return of the line, if one does.
                    "final_sale": rules.final_sale.match(line.sku),
                }
                if rules is not None
                else {}
            )
            for line in sorted(order.lines.values(), key=lambda item: item.line_number)
        ],
        "returns": [
            {
                "rma": ret.rma,
                "status": ret.status,
                "source_id": ret.source_id,
                "refund_mode": ret.refund_mode,
                "reshipment": ret.reshipment,
                "refunded": ret.refunded,
                # An exchange's child order, and whether its shipment waits for this return's goods.
                "exchange_order_id": ret.exchange_order_id,
                "exchange_ships_on_receipt": ret.exchange_child_json is not None,
                "lines": [
                    {
                        "line_number": line.line_number,
                        "sku": line.sku,
                        "quantity": line.quantity,
                        "status": line.status,
                        "reason": line.reason,
                        "condition": line.condition,
                        "added_by_rule": line.added_by_rule,
                        "restock": line.restock,
                        "new_sku": line.new_sku,
                    }
                    | ({"reason_description": line.reason_description} if with_personal_data else {})
                    for line in ret.lines
                ],
            }
            | ({"user": ret.user} if with_personal_data else {})
            for ret in order.returns.values()
        ],
        "credit_notes": list(order.credit_notes),
        # Of those, waiting for refund_management.release or .cancel, and cancelled.
        "pending_release": list(order.pending_notes),
        "cancelled_notes": list(order.cancelled_notes),
        "ledger": {
            "paid": _money(order.paid),
            "refunded": _money(order.refunded_gross),
            "refundable": _money(order.refundable),
            "transactions": [
                {
                    "type": t.type,
                    "amount": _money(t.amount),
                    "reference": t.reference,
                    "credit_note_number": t.credit_note_number,
                    "payment_method": t.method,
                }
                for t in order.transactions
            ],
        },
        "held": [
            {
                "message_name": h.message_name,
                "message_id": h.message_id,
                "arrived": h.arrived,
                "deadline": h.deadline,
            }
            | ({"params": loads(h.params_json)} if with_personal_data else {})
            for h in order.held
        ],
    }
    if with_personal_data:
        view["upstream_order"] = loads(order.upstream_json) if order.upstream_json else None
    return view


def _deadline(rules: ChannelRules, order: OrderState, line: LineState) -> str | None:
    if rules.return_window_from == "shipment" and not line.shipped and line.kind == "PHYSICAL":
        return None  # the window starts when the line ships
    last = return_window.deadline(rules, order, line)
    return iso(last) if last is not None else None
