"""The child order a reshipment or an exchange sends out: the order document linked to the original
(`original_order_id`, origin RE or EX) with a zero-amount ZEROPAY payment, and its shipment request
(docs/contract.md, "Outbound messages")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from domain import jsontext, names
from domain.state import LineState, ReturnState
from domain.work import Work

ZERO_PRICE: dict[str, Any] = {"net_amount": 0, "gross_amount": 0, "tax_amount": 0, "tax_rate": 0, "taxes": []}


@dataclass(frozen=True)
class ChildLine:
    """One line of the child order: units of an original line, as `sku`, at `amount`."""

    line: LineState
    units: int
    sku: str
    amount: dict[str, Any]


@dataclass(frozen=True)
class ChildRequest:
    child_id: str
    origin: str
    new_shipping_method: str | None
    new_shipping_address: dict[str, Any] | None


def _address(order: dict[str, Any], reference: str | None) -> dict[str, Any] | None:
    for address in order.get("addresses") or []:
        if isinstance(address, dict) and address.get("reference") == reference:
            return address
    return None


def child_order(
    work: Work, original: dict[str, Any], request: ChildRequest, taken: list[ChildLine]
) -> dict[str, Any]:
    state = work.order
    child_id = request.child_id
    currency = state.currency
    addresses = [a for a in original.get("addresses") or [] if isinstance(a, dict)]
    first = taken[0].line
    ship_ref = first.shipping_address_reference
    if request.new_shipping_address:
        ship_ref = f"{child_id}-SHIP"
        base = _address(original, first.shipping_address_reference) or {}
        addresses.append(
            {
                "reference": ship_ref,
                "address_type": "customer",
                **{k: v for k, v in request.new_shipping_address.items() if v is not None},
                "country_code": request.new_shipping_address.get("country_code") or base.get("country_code"),
            }
        )
    lines: list[dict[str, Any]] = []
    for number, child in enumerate(taken, start=1):
        lines.append(
            {
                "id": f"{child_id}-{number}",
                "line_number": number,
                "original_line_number": child.line.line_number,
                "product_type": child.line.product_type,
                "sku": child.sku,
                "quantity": child.units,
                "shipping_address_reference": ship_ref,
                "payment_reference": "ZEROPAY",
                "source_location": child.line.shipped_from or child.line.source,
                "amount": {**child.amount, "currency": currency},
            }
        )
    shipping_sku = request.new_shipping_method or _original_shipping_sku(state.lines.values(), first)
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
        "origin": request.origin,
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


def _original_shipping_sku(lines: Iterable[LineState], first: LineState) -> str | None:
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


def shipment_request(work: Work, child: dict[str, Any], source_id: str) -> dict[str, Any]:
    addresses = child["addresses"]
    ship_ref = child["lines"][0]["shipping_address_reference"]
    shipping = next((a for a in addresses if a.get("reference") == ship_ref), None)
    billing_ref = child["payments"][0]["transactions"][0]["billing_address_reference"]
    billing = next((a for a in addresses if a.get("reference") == billing_ref), None)
    customer = child.get("customer") or {}
    return {
        "id": f"{child['store']}-{child['id']}-01",
        "order_id": child["id"],
        "source_id": source_id,
        "customer_id": customer.get("id") if isinstance(customer, dict) else None,
        "store": child["store"],
        "language": child.get("language"),
        "vat_country": child.get("vat_country"),
        "origin": child["origin"],
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


def exchange_goods_arrived(work: Work, ret: ReturnState) -> None:
    """An exchange's return received on a channel that ships on receipt: the child's shipment request
    once every exchanged unit is back in a restocking condition, else the child is cancelled."""
    if ret.exchange_child_json is None:
        return
    child: dict[str, Any] = jsontext.read_exact(ret.exchange_child_json)
    ret.exchange_child_json = None
    if all(rline.restock for rline in ret.lines if rline.new_sku is not None):
        work.emit(
            names.SHIPMENT_REQUESTED, {"shipment_request": shipment_request(work, child, ret.source_id)}
        )
        return
    _cancel_child(work, ret, f"the goods of exchange return {ret.rma} came back in a condition not restocked")


def exchange_return_cancelled(work: Work, ret: ReturnState) -> None:
    """An exchange's return cancelled before its child was sent: the exchange is undone."""
    if ret.exchange_child_json is None:
        return
    ret.exchange_child_json = None
    for rline in ret.lines:
        if rline.new_sku is not None:
            work.order.lines[rline.line_number].exchanged -= rline.quantity
    _cancel_child(work, ret, f"exchange return {ret.rma} was cancelled")


def _cancel_child(work: Work, ret: ReturnState, reason: str) -> None:
    channel = work.order.store or work.order.sales_channel
    child_id = ret.exchange_order_id
    assert child_id is not None
    params = {"sales_channel_id": channel, "order_id": child_id, "reason": reason}
    work.follow(names.ORDER_CANCEL, "exchange-cancel", channel, child_id, params)
