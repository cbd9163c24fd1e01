"""Reshipment: the original lines are returned without a refund (a CLOSED return), and a child order with
origin RE, a zero-amount ZEROPAY payment and its shipment request are published (docs/contract.md,
"Inbound messages")."""

from __future__ import annotations

from typing import Any

from domain import jsontext, names
from domain.commands import Reshipment, ReshipmentLine
from domain.orders import emit_order
from domain.outcome import Refused
from domain.returns import claim_goods, emit_return, new_rma
from domain.state import LineState, ReturnLineState, ReturnState
from domain.work import Work

ZERO_PRICE: dict[str, Any] = {"net_amount": 0, "gross_amount": 0, "tax_amount": 0, "tax_rate": 0, "taxes": []}


def _merge(lines: tuple[ReshipmentLine, ...]) -> dict[int, ReshipmentLine]:
    merged: dict[int, ReshipmentLine] = {}
    for request in lines:
        if request.line_number in merged:
            raise Refused("NOT_ALLOWED", f"line {request.line_number} appears twice in the reshipment")
        merged[request.line_number] = request
    return merged


def _address(order: dict[str, Any], reference: str | None) -> dict[str, Any] | None:
    for address in order.get("addresses") or []:
        if isinstance(address, dict) and address.get("reference") == reference:
            return address
    return None


def reship(work: Work, cmd: Reshipment, user: str | None) -> None:
    state = work.order
    if state.cancelled:
        raise Refused("ORDER_CANCELLED", f"order {state.order_id} is cancelled")
    requests = _merge(cmd.lines)
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
    child = _child_order(work, original, child_id, cmd, taken)
    emit_return(work, ret)
    work.emit(names.ORDER_CREATED, {"order": child})
    work.emit(names.SHIPMENT_REQUESTED, {"shipment_request": _shipment_request(work, child, taken)})
    emit_order(work)


def _child_order(
    work: Work,
    original: dict[str, Any],
    child_id: str,
    cmd: Reshipment,
    taken: list[tuple[LineState, int, ReshipmentLine]],
) -> dict[str, Any]:
    state = work.order
    currency = state.currency
    addresses = [a for a in original.get("addresses") or [] if isinstance(a, dict)]
    first = taken[0][0]
    ship_ref = first.shipping_address_reference
    if cmd.new_shipping_address:
        ship_ref = f"{child_id}-SHIP"
        base = _address(original, first.shipping_address_reference) or {}
        addresses.append(
            {
                "reference": ship_ref,
                "address_type": "customer",
                **{k: v for k, v in cmd.new_shipping_address.items() if v is not None},
                "country_code": cmd.new_shipping_address.get("country_code") or base.get("country_code"),
            }
        )
    lines: list[dict[str, Any]] = []
    for number, (line, units, _request) in enumerate(taken, start=1):
        lines.append(
            {
                "id": f"{child_id}-{number}",
                "line_number": number,
                "original_line_number": line.line_number,
                "product_type": line.product_type,
                "sku": line.sku,
                "quantity": units,
                "shipping_address_reference": ship_ref,
                "payment_reference": "ZEROPAY",
                "source_location": line.shipped_from or line.source,
                "amount": {**ZERO_PRICE, "currency": currency},
            }
        )
    shipping_sku = cmd.new_shipping_method or _original_shipping_sku(state.lines.values(), first)
    if shipping_sku:
        number = len(lines) + 1
        lines.append(
            {
                "id": f"{child_id}-{number}",
                "line_number": number,
                "product_type": "SHIPPING",
                "sku": shipping_sku,
                "quantity": 1,
                "shipping_address_reference": ship_ref,
                "payment_reference": "ZEROPAY",
                "amount": {**ZERO_PRICE, "currency": currency},
            }
        )
    billing_ref = next(
        (a.get("reference") for a in addresses if a.get("address_type") == "billing"),
        addresses[0].get("reference") if addresses else None,
    )
    return {
        "id": child_id,
        "original_order_id": state.order_id,
        "store": state.store or state.sales_channel,
        "status": "NEW",
        "ip": original.get("ip"),
        "language": original.get("language"),
        "vat_country": original.get("vat_country"),
        "origin": "RE",
        "origin_date": work.now,
        "customer": original.get("customer"),
        "addresses": addresses,
        "lines": lines,
        "payments": [
            {
                "reference": "ZEROPAY",
                "currency": currency,
                "transactions": [
                    {
                        "payment_method": "ZEROPAY",
                        "amount": 0,
                        "gateway_information": {
                            "gateway_id": "ZEROPAY",
                            "account": "ZEROPAY",
                            "transaction_id": child_id,
                        },
                        "billing_address_reference": billing_ref,
                    }
                ],
            }
        ],
    }


def _original_shipping_sku(lines: Any, first: LineState) -> str | None:
    for line in lines:
        if line.kind == "SHIPPING" and (
            line.line_number == first.shipping_line_number
            or (
                first.shipping_line_number is None
                and line.shipping_address_reference == first.shipping_address_reference
            )
        ):
            return str(line.sku)
    return None


def _shipment_request(
    work: Work, child: dict[str, Any], taken: list[tuple[LineState, int, ReshipmentLine]]
) -> dict[str, Any]:
    addresses = child["addresses"]
    ship_ref = child["lines"][0]["shipping_address_reference"]
    shipping = next((a for a in addresses if a.get("reference") == ship_ref), None)
    billing_ref = child["payments"][0]["transactions"][0]["billing_address_reference"]
    billing = next((a for a in addresses if a.get("reference") == billing_ref), None)
    customer = child.get("customer") or {}
    return {
        "id": f"{child['store']}-{child['id']}-01",
        "order_id": child["id"],
        "source_id": taken[0][0].shipped_from or taken[0][0].source,
        "customer_id": customer.get("id") if isinstance(customer, dict) else None,
        "store": child["store"],
        "language": child.get("language"),
        "vat_country": child.get("vat_country"),
        "origin": "RE",
        "origin_date": work.now,
        "created_at": work.now,
        "status": "NEW",
        "items": [
            {
                "order_line_id": line["id"],
                "order_line_number": line["line_number"],
                "item_type": line["product_type"],
                "sku": line["sku"],
                "status": "NEW",
                "status_reason": "ITEM_PENDING_PICKING",
                "status_date": work.now,
            }
            for line in child["lines"]
        ],
        "addresses": addresses,
        "shipping_address": shipping,
        "billing_address": billing,
        "status_date": work.now,
    }
