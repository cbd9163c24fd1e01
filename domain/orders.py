"""The order aggregate: create (and re-send), cancel, cancel a line, shipment, and the order document."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from msgspec.structs import replace

from domain import jsontext, names
from domain.commands import Order, OrderCancel, OrderCancelLine, OrderLine, ShipmentDone
from domain.money import ZERO, fmt, to_decimal
from domain.outcome import Refused
from domain.refunds import CreditNote, issue, unit_refund_line
from domain.return_fees import kept_tax
from domain.rules import ChannelRules
from domain.state import LineKind, LineState, OrderState, TaxShare, Transaction
from domain.timeutil import iso, parse_time
from domain.work import Work

KINDS: dict[str, LineKind] = {"PHYSICAL": "PHYSICAL", "SERVICE": "SERVICE", "SHIPPING": "SHIPPING"}


def line_kind(product_type: str) -> LineKind:
    return KINDS.get(product_type.strip().upper(), "OTHER")


def _line_state(line: OrderLine, rules: ChannelRules, old: LineState | None) -> LineState:
    taxes = [TaxShare(type=t.type, rate=t.rate, amount=to_decimal(t.amount)) for t in line.amount.taxes]
    fields: dict[str, Any] = {
        "line_number": line.line_number,
        "kind": line_kind(line.product_type),
        "product_type": line.product_type,
        "sku": line.sku,
        "quantity": line.quantity,
        "parent_line_number": line.parent_line_number,
        "shipping_line_number": line.shipping_line_number,
        "shipping_address_reference": line.shipping_address_reference,
        "payment_reference": line.payment_reference,
        "gross": to_decimal(line.amount.gross_amount),
        "tax_rate": line.amount.tax_rate,
        "taxes": taxes,
        "upstream_status": line.status,
        "source": line.source_location or rules.default_source,
    }
    if old is None:
        return LineState(**fields, refunded_tax=[ZERO] * len(taxes))
    # A re-sent create replaces what upstream owns and keeps what happened after sale.
    refunded_tax = (old.refunded_tax + [ZERO] * len(taxes))[: len(taxes)]
    return replace(old, **{**fields, "refunded_tax": refunded_tax, "source": old.source})


def _paid(order: Order) -> tuple[Decimal, list[Transaction]]:
    payments = [
        Transaction(
            type="PAYMENT",
            amount=to_decimal(tx.amount),
            reference=payment.reference,
            method=tx.payment_method,
        )
        for payment in order.payments
        for tx in payment.transactions
    ]
    if payments:
        return sum((p.amount for p in payments), ZERO), payments
    # No payment information: upstream sends captured orders, so the lines are what was paid.
    return sum((to_decimal(line.amount.gross_amount) for line in order.lines), ZERO), []


def _currency(order: Order) -> str | None:
    for payment in order.payments:
        if payment.currency:
            return payment.currency.upper()
    for line in order.lines:
        if line.amount.currency:
            return line.amount.currency.upper()
    return None


def create(work: Work, order: Order, upstream_json: str) -> None:
    state = work.order
    state.known = True
    state.ordered_at = iso(parse_time(order.origin_date) or work.meta.now)
    state.upstream_json = upstream_json
    state.store = order.store
    state.currency = _currency(order)
    state.paid, payments = _paid(order)
    state.transactions = payments + [t for t in state.transactions if t.type == "REFUND"]
    for line in order.lines:
        new = _line_state(line, work.rules, state.lines.get(line.line_number))
        state.lines[line.line_number] = new
        if new.kind == "PHYSICAL":
            wanted = max(0, new.open_units)
            work.move(new.source, new.sku, _reason(wanted - new.reserved), reserved=wanted - new.reserved)
            new.reserved = wanted


def _reason(reserved_delta: int) -> str:
    return "RESERVATION" if reserved_delta > 0 else "RESERVATION_RELEASE"


def _require_line(state: OrderState, line_number: int) -> LineState:
    line = state.lines.get(line_number)
    if line is None:
        raise Refused("UNKNOWN_LINE", f"order {state.order_id} has no line {line_number}")
    return line


def _cancel_units(work: Work, line: LineState, units: int) -> None:
    line.cancelled += units
    if line.kind == "PHYSICAL":
        release = min(units, line.reserved)
        line.reserved -= release
        work.move(line.source, line.sku, "RESERVATION_RELEASE", reserved=-release)


def _dependants_open(state: OrderState, parent: LineState) -> list[LineState]:
    return [
        line
        for line in state.lines.values()
        if line.parent_line_number == parent.line_number and line.kind != "PHYSICAL" and _uncancelled(line)
    ]


def _uncancelled(line: LineState) -> int:
    return line.quantity - line.cancelled - line.claimed if line.kind != "PHYSICAL" else line.open_units


def _cancellation(
    work: Work, cancelled: list[tuple[LineState, int, str]], reason: str | None, user: str | None
) -> None:
    """Refund what was paid for the cancelled units; release is done by the caller."""
    state = work.order
    if state.paid <= 0:
        return
    note = CreditNote("cancellation", "CREDIT_MEMO", "AMOUNT_ONLY", user=user, refund_reason=reason)
    for line, units, explanation in cancelled:
        if line.gross == 0:
            continue
        note.lines.append(unit_refund_line(work, line, units, explanation, reason=reason))
    note.lines = [line for line in note.lines if line.gross != 0]
    if note.lines:
        issue(work, note)


def _finish_cancel(work: Work, cancelled: list[tuple[LineState, int, str]]) -> None:
    """Once every physical unit is cancelled the order is: its shipping and order services go too."""
    state = work.order
    physical = [line for line in state.lines.values() if line.kind == "PHYSICAL"]
    if physical and all(line.cancelled == line.quantity for line in physical):
        state.cancelled = True
        for line in state.lines.values():
            units = _uncancelled(line)
            if line.kind != "PHYSICAL" and units > 0 and line.refunded_units == 0:
                _cancel_units(work, line, units)
                cancelled.append((line, units, f"{line.kind.lower()} line cancelled with the whole order"))


def cancel_order(work: Work, cmd: OrderCancel) -> None:
    state = work.order
    if state.cancelled:
        raise Refused("ORDER_CANCELLED", f"order {state.order_id} is already cancelled")
    cancelled: list[tuple[LineState, int, str]] = []
    for line in state.lines.values():
        if line.kind == "PHYSICAL" and line.open_units > 0:
            units = line.open_units
            _cancel_units(work, line, units)
            cancelled.append((line, units, f"{units} unshipped unit(s) cancelled with the order"))
    if not cancelled:
        raise Refused("ALREADY_SHIPPED", f"order {state.order_id}: every unit is shipped, nothing to cancel")
    _settle_cancel(work, cancelled, cmd.reason, cmd.user)


def cancel_line(work: Work, cmd: OrderCancelLine) -> None:
    state = work.order
    if state.cancelled:
        raise Refused("ORDER_CANCELLED", f"order {state.order_id} is already cancelled")
    line = _require_line(state, cmd.line_number)
    open_units = _uncancelled(line)
    if open_units <= 0:
        if line.kind == "PHYSICAL" and line.shipped > 0:
            raise Refused("ALREADY_SHIPPED", f"line {line.line_number}: every unit is shipped")
        raise Refused("NOT_ALLOWED", f"line {line.line_number} is already cancelled")
    units = cmd.quantity if cmd.quantity is not None else open_units
    if units <= 0:
        raise Refused("NOT_ALLOWED", f"line {line.line_number}: a cancellation needs a positive quantity")
    if units > open_units:
        raise Refused(
            "ALREADY_SHIPPED",
            f"line {line.line_number}: {units} unit(s) to cancel, only {open_units} not shipped",
        )
    _cancel_units(work, line, units)
    _settle_cancel(
        work,
        [
            (
                line,
                units,
                f"{units} unit(s) cancelled before shipment" + (f" ({cmd.reason})" if cmd.reason else ""),
            )
        ],
        cmd.reason,
        cmd.user,
    )


def _settle_cancel(
    work: Work, cancelled: list[tuple[LineState, int, str]], reason: str | None, user: str | None
) -> None:
    """Services follow a fully cancelled parent, the rest follows a fully cancelled order; then refund."""
    for line, _units, _why in list(cancelled):
        if line.kind == "PHYSICAL" and line.cancelled == line.quantity:
            for service in _dependants_open(work.order, line):
                units = _uncancelled(service)
                _cancel_units(work, service, units)
                cancelled.append((service, units, f"service of cancelled line {line.line_number}"))
    _finish_cancel(work, cancelled)
    _cancellation(work, cancelled, reason, user)
    emit_order(work)


def ship(work: Work, cmd: ShipmentDone) -> None:
    state = work.order
    shipment = cmd.shipment
    if state.cancelled:
        raise Refused("ORDER_CANCELLED", f"order {state.order_id} is cancelled; shipment refused")
    shipped_at = iso(parse_time(shipment.shipment_date) or work.meta.now)
    units_by_line: dict[int, int | None] = {}
    for item in shipment.items:
        # MOM's item names a line and has no quantity: without the (ext) quantity it ships every open
        # unit of the line, the same default as a return line. One such item for a line settles it.
        known = units_by_line.get(item.order_line_number, 0)
        if item.quantity is None or known is None:
            units_by_line[item.order_line_number] = None
        else:
            units_by_line[item.order_line_number] = known + item.quantity
    for line_number, wanted in units_by_line.items():
        line = _require_line(state, line_number)
        units = wanted if wanted is not None else _unshipped(line)
        if wanted is None and units <= 0:
            raise Refused(
                "ORDER_CANCELLED" if line.cancelled >= line.quantity else "NOT_ALLOWED",
                f"line {line_number}: no unit left to ship ({line.shipped} shipped, "
                f"{line.cancelled} cancelled of {line.quantity})",
            )
        if units <= 0:
            raise Refused("NOT_ALLOWED", f"line {line_number}: a shipment needs a positive quantity")
        line.shipped_at = shipped_at
        if line.kind != "PHYSICAL":
            line.shipped = min(line.quantity, line.shipped + units)
            continue
        if units > line.open_units:
            hits_cancelled = line.cancelled > 0 and units <= line.open_units + line.cancelled
            raise Refused(
                "ORDER_CANCELLED" if hits_cancelled else "NOT_ALLOWED",
                f"line {line_number}: {units} unit(s) shipped, {line.open_units} open "
                f"({line.shipped} shipped, {line.cancelled} cancelled of {line.quantity})",
            )
        line.shipped += units
        released = min(units, line.reserved)
        line.reserved -= released
        line.shipped_from = shipment.source_id
        if shipment.source_id == line.source:
            work.move(line.source, line.sku, "SHIPMENT", on_hand=-units, reserved=-released)
        else:
            work.move(line.source, line.sku, "RESERVATION_RELEASE", reserved=-released)
            work.move(shipment.source_id, line.sku, "SHIPMENT", on_hand=-units)
    emit_order(work)


def _unshipped(line: LineState) -> int:
    return line.open_units if line.kind == "PHYSICAL" else line.quantity - line.cancelled - line.shipped


def line_status(line: LineState) -> str:
    if line.cancelled >= line.quantity:
        return "CANCELLED"
    active = line.quantity - line.cancelled
    if line.kind != "PHYSICAL":
        if line.refunded_gross > 0 and line.refunded_gross >= line.gross:
            return "REFUNDED"
        return "RETURNED" if line.claimed >= active else (line.upstream_status or "NEW")
    back = line.returned + line.reshipped
    if back >= active:
        return "RESHIPPED" if line.reshipped >= active else "RETURNED"
    if back > 0:
        return "PARTIALLY_RETURNED"
    if line.shipped >= active:
        return "SHIPPED"
    if line.shipped > 0:
        return "PARTIALLY_SHIPPED"
    return line.upstream_status or "NEW"


def postsales_status(state: OrderState) -> str:
    refunded = state.refunded_gross
    if refunded <= 0:
        return "NONE"
    return "FULLY_REFUNDED" if refunded >= state.paid else "PARTIALLY_REFUNDED"


def order_document(work: Work) -> dict[str, Any]:
    state = work.order
    places = work.places
    order: dict[str, Any] = jsontext.read_exact(state.upstream_json or "{}")
    for line in order.get("lines") or []:
        known = state.lines.get(int(line.get("line_number")))
        if known is not None:
            line["status"] = line_status(known)
    # The transactions already leave out the return fees kept; the tax refunded leaves out theirs.
    vat = sum((sum(line.refunded_tax, ZERO) - kept_tax(line) for line in state.lines.values()), ZERO)
    refunded = state.refunded_gross
    order["postsales"] = {
        "status": postsales_status(state),
        "refunded": {
            "cost_gross": fmt(refunded, places),
            "cost_net": fmt(refunded - vat, places),
            "cost_vat": fmt(vat, places),
        },
        "transactions": [
            {
                "type": t.type,
                "amount": fmt(t.amount, places),
                "reference": t.reference,
                "credit_note_number": t.credit_note_number,
            }
            for t in state.transactions
        ],
        "lines": [
            {
                "line_number": line.line_number,
                "quantity": line.quantity,
                "shipped": line.shipped,
                "returned": line.returned,
                "refunded": line.refunded_units,
                "reshipped": line.reshipped,
                "exchanged": line.exchanged,
                "cancelled": line.cancelled,
                "refunded_amount": fmt(line.refunded_gross, places),
                **({"fees": fmt(line.fees.gross, places)} if line.fees and line.fees.gross else {}),
            }
            for line in sorted(state.lines.values(), key=lambda item: item.line_number)
        ],
    }
    return order


def emit_order(work: Work) -> None:
    work.emit(names.ORDER_UPDATED, {"order": order_document(work)})
