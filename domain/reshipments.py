"""Reshipment: the original lines are returned without a refund (a CLOSED return), and a child order with
origin RE, a zero-amount ZEROPAY payment and its shipment request are published (docs/contract.md,
"Inbound messages")."""

from __future__ import annotations

from typing import Any

from domain import jsontext, names
from domain.child_orders import ZERO_PRICE, ChildLine, ChildRequest, child_order, shipment_request
from domain.commands import Reshipment, ReshipmentLine
from domain.orders import emit_order
from domain.outcome import Refused
from domain.returns import claim_goods, emit_return, new_rma, unique_lines
from domain.state import LineState, ReturnLineState, ReturnState
from domain.work import Work


def reship(work: Work, cmd: Reshipment, user: str | None) -> None:
    state = work.order
    if state.cancelled:
        raise Refused("ORDER_CANCELLED", f"order {state.order_id} is cancelled")
    requests = unique_lines(cmd.lines, "reshipment")
    taken: list[tuple[LineState, int, ReshipmentLine]] = []
    for line_number, request in requests.items():
        units = claim_goods(work, line_number, request.quantity, what="reship")
        line = state.lines[line_number]
        if line.kind != "PHYSICAL":
            raise Refused("NOT_ALLOWED", f"line {line_number} is not a physical line and cannot be reshipped")
        taken.append((line, units, request))
    ret = ReturnState(
        rma=new_rma(work),
        source_id=taken[0][0].shipped_from or taken[0][0].source,
        status="CLOSED",
        user=user,
        reshipment=True,
        refunded=True,
    )
    for line, units, request in taken:
        line.claimed += units
        line.reshipped += units
        ret.lines.append(
            ReturnLineState(
                line_number=line.line_number,
                sku=line.sku,
                quantity=units,
                status="CLOSED",
                reason=request.reason,
                reason_description=request.reason_description,
                stock_done=True,
            )
        )
    state.returns[ret.rma] = ret
    state.child_seq += 1
    child_id = cmd.new_order_id or f"R{state.order_id}-{state.child_seq}"
    original: dict[str, Any] = jsontext.read_exact(state.upstream_json or "{}")
    about = ChildRequest(child_id, "RE", cmd.new_shipping_method, cmd.new_shipping_address)
    lines = [ChildLine(line, units, line.sku, ZERO_PRICE) for line, units, _request in taken]
    child = child_order(work, original, about, lines)
    emit_return(work, ret)
    work.emit(names.ORDER_CREATED, {"order": child})
    source = taken[0][0].shipped_from or taken[0][0].source
    work.emit(names.SHIPMENT_REQUESTED, {"shipment_request": shipment_request(work, child, source)})
    emit_order(work)
