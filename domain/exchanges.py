"""Exchange (`exchange_management.create`): units of an order's lines come back without a refund (a
return numbered as returns are, its lines marked `exchange`), and a child order with origin EX carries
the new SKUs at the original lines' amounts with a zero-amount ZEROPAY payment.

The child is an order like any other: besides publishing it, the exchange makes the child's own
`order_management.create` (a follow-up message, domain/outcome.py), so the new SKU is reserved at the
source and the child can be shipped, cancelled and returned. Channel `exchange_ships` decides when its
shipment request goes out: with the exchange (`at_once`), or when the returned units arrive in a
restocking condition (`on_receipt`); a receipt in another condition cancels the child instead, which
releases its reservation, and leaves any refund to upstream.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from domain import final_sale, jsontext, names, return_window
from domain.child_orders import ChildLine, ChildRequest, child_order, shipment_request
from domain.commands import Exchange, ExchangeLine
from domain.money import cumulative_share
from domain.orders import emit_order
from domain.outcome import Refused
from domain.returns import approve, claim_goods, emit_return, new_rma, unique_lines
from domain.state import LineState, ReturnLineState, ReturnState
from domain.work import Work


def _amount(line: LineState, units: int, places: int) -> dict[str, Any]:
    """The original line's amounts for `units` of its units (pro rata, each figure rounded half up)."""
    gross = cumulative_share(line.gross, units, line.quantity, places)
    shares = [cumulative_share(tax.amount, units, line.quantity, places) for tax in line.taxes]
    taxes = [
        {"type": tax.type, "rate": tax.rate, "amount": share}
        for tax, share in zip(line.taxes, shares, strict=True)
    ]
    vat = sum(shares, Decimal(0))
    return {
        "net_amount": gross - vat,
        "gross_amount": gross,
        "tax_amount": vat,
        "tax_rate": line.tax_rate if line.tax_rate is not None else 0,
        "taxes": taxes,
    }


def exchange(work: Work, cmd: Exchange) -> None:
    state = work.order
    if state.cancelled:
        raise Refused("ORDER_CANCELLED", f"order {state.order_id} is cancelled")
    taken: list[tuple[LineState, int, ExchangeLine]] = []
    for line_number, request in unique_lines(cmd.lines, "exchange").items():
        line = state.lines.get(line_number)
        if line is not None and (line.exchanged or line.reshipped):
            done = "exchanged" if line.exchanged else "reshipped"
            raise Refused(
                "ALREADY_EXCHANGED", f"line {line_number} was already {done}: it is not exchanged again"
            )
        if line is not None:
            # Before the shipment check, as for returns: such an exchange never becomes valid.
            final_sale.refuse(work.rules, line, "exchanged")
        units = claim_goods(work, line_number, request.quantity, what="exchange")
        line = state.lines[line_number]
        if line.kind != "PHYSICAL":
            raise Refused("NOT_ALLOWED", f"line {line_number} is not a physical line and cannot be exchanged")
        closed = return_window.closed_at(work.rules, state, line, work.meta.now)
        if closed is not None:
            raise Refused(
                "RETURN_WINDOW_CLOSED", f"line {line_number}: {return_window.describe(work.rules, closed)}"
            )
        taken.append((line, units, request))
    state.child_seq += 1
    child_id = cmd.new_order_id or f"E{state.order_id}-{state.child_seq}"
    first = taken[0][0]
    source = first.shipped_from or first.source
    ret = ReturnState(rma=new_rma(work), source_id=source, status="REQUESTED", user=cmd.user)
    ret.exchange_order_id = child_id
    for line, units, request in taken:
        line.claimed += units
        line.exchanged += units
        ret.lines.append(
            ReturnLineState(
                line_number=line.line_number,
                sku=line.sku,
                quantity=units,
                status="REQUESTED",
                reason=request.reason,
                reason_description=request.reason_description,
                new_sku=request.new_sku,
            )
        )
    state.returns[ret.rma] = ret
    original: dict[str, Any] = jsontext.read_exact(state.upstream_json or "{}")
    about = ChildRequest(child_id, "EX", cmd.new_shipping_method, cmd.new_shipping_address)
    lines = [
        ChildLine(line, units, ask.new_sku, _amount(line, units, work.places)) for line, units, ask in taken
    ]
    child = child_order(work, original, about, lines)
    if work.rules.auto_approve_return:
        approve(work, ret)
    else:
        emit_return(work, ret)
    work.emit(names.ORDER_CREATED, {"order": child})
    work.follow(names.ORDER_CREATE, "exchange-order", child["store"], child_id, {"order": child})
    if work.rules.exchange_ships == "at_once":
        work.emit(names.SHIPMENT_REQUESTED, {"shipment_request": shipment_request(work, child, source)})
    else:
        ret.exchange_child_json = json.dumps(child, default=str, separators=(",", ":"))
    emit_order(work)
