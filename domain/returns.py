"""Returns: opening an RMA (with the lines the refund-return rules bring along), approval, receipt,
cancellation, and the reshipment's closed return. Money and stock move when the channel's `refund_on`
says so (docs/contract.md, README "Rules per sales channel").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from domain import final_sale, names, return_fees, return_window
from domain.child_orders import exchange_goods_arrived, exchange_return_cancelled
from domain.commands import Return, ReturnLine
from domain.orders import emit_order
from domain.outcome import Refused, Unchanged
from domain.refunds import CreditNote, CreditNoteLine, issue, unit_refund_line
from domain.state import CustomAttribute, LineState, ReturnLineState, ReturnState, ReturnTracking
from domain.work import Work

ALL_OPEN = ("REQUESTED", "APPROVED")


@dataclass(frozen=True)
class Claim:
    line: LineState
    units: int
    request: ReturnLine | None


def new_rma(work: Work) -> str:
    work.order.rma_seq += 1
    store = work.order.store or work.order.sales_channel
    return f"{store}-{work.order.order_id}-R{work.order.rma_seq:02d}"


def _merge_requests(lines: tuple[ReturnLine, ...]) -> dict[int, ReturnLine]:
    merged: dict[int, ReturnLine] = {}
    for request in lines:
        earlier = merged.get(request.line_number)
        if earlier is None:
            merged[request.line_number] = request
        elif earlier.quantity is not None and request.quantity is not None:
            merged[request.line_number] = earlier.model_copy(
                update={"quantity": earlier.quantity + request.quantity}
            )
        else:
            merged[request.line_number] = earlier.model_copy(update={"quantity": None})
    return merged


class _Numbered(Protocol):
    @property
    def line_number(self) -> int: ...


N = TypeVar("N", bound=_Numbered)


def unique_lines(lines: tuple[N, ...], what: str) -> dict[int, N]:
    """The lines of a reshipment or exchange by number; a line named twice is refused."""
    merged: dict[int, N] = {}
    for request in lines:
        if request.line_number in merged:
            raise Refused("NOT_ALLOWED", f"line {request.line_number} appears twice in the {what}")
        merged[request.line_number] = request
    return merged


def claim_goods(work: Work, line_number: int, quantity: int | None, *, what: str) -> int:
    """Units of a line that a return or reshipment takes, or the reason it cannot."""
    state = work.order
    line = state.lines.get(line_number)
    if line is None:
        raise Refused("UNKNOWN_LINE", f"order {state.order_id} has no line {line_number}")
    if line.kind == "SHIPPING":
        raise Refused(
            "NOT_ALLOWED", f"line {line_number} is a shipping line: the shipping_refund_rule decides"
        )
    if line.kind != "PHYSICAL":
        units = line.quantity - line.cancelled - line.claimed
        if units <= 0 or (quantity is not None and quantity > units):
            raise Refused("OVER_RETURN", f"line {line_number}: nothing left to {what}")
        return quantity or units
    if line.shipped == 0:
        raise Refused("LINE_NOT_SHIPPED", f"line {line_number} is not shipped yet", not_yet=True)
    returnable = line.returnable_units
    units = quantity if quantity is not None else returnable
    if units <= 0 or units > returnable:
        not_shipped = line.quantity - line.cancelled - line.shipped
        if quantity is not None and units <= returnable + not_shipped:
            raise Refused(
                "LINE_NOT_SHIPPED",
                f"line {line_number}: {units} unit(s) to {what}, only {line.shipped} shipped "
                f"and {line.claimed} already in returns",
                not_yet=True,
            )
        raise Refused(
            "OVER_RETURN",
            f"line {line_number}: {units} unit(s) to {what}, {returnable} returnable "
            f"({line.shipped} shipped, {line.claimed} already returned or in a return)",
        )
    return units


def _belongs_to(state_line: LineState, shipping: LineState, first_by_address: dict[str, int]) -> bool:
    if state_line.shipping_line_number is not None:
        return state_line.shipping_line_number == shipping.line_number
    ref = state_line.shipping_address_reference
    return ref is not None and first_by_address.get(ref) == shipping.line_number


def _rule_lines(work: Work, goods: list[Claim]) -> list[tuple[LineState, int, str, str]]:
    """(line, units, rule name, explanation) for every line the refund-return rules bring along."""
    state, rules = work.order, work.rules
    chosen: list[tuple[LineState, int, str, str]] = []
    in_return = {claim.line.line_number: claim for claim in goods}
    for line in sorted(state.lines.values(), key=lambda item: item.line_number):
        free = line.quantity - line.cancelled - line.claimed
        if line.kind != "SERVICE" or free <= 0:
            continue
        parent = line.parent_line_number
        if parent is not None and parent in in_return and rules.return_service_line:
            parent_line = in_return[parent].line
            units = min(in_return[parent].units, free) if line.quantity == parent_line.quantity else free
            chosen.append(
                (
                    line,
                    units,
                    "return_service_line",
                    f"service refunded with its parent line {parent} (return_service_line=true)",
                )
            )
        elif parent is None and rules.return_service_order:
            chosen.append(
                (
                    line,
                    free,
                    "return_service_order",
                    "order service refunded with the first return of the order (return_service_order=true)",
                )
            )
    rule = rules.shipping_refund_rule
    if rule == "never":
        return chosen
    first_by_address: dict[str, int] = {}
    for line in sorted(state.lines.values(), key=lambda item: item.line_number):
        if line.kind == "SHIPPING" and line.shipping_address_reference:
            first_by_address.setdefault(line.shipping_address_reference, line.line_number)
    for shipping in sorted(state.lines.values(), key=lambda item: item.line_number):
        free = shipping.quantity - shipping.cancelled - shipping.claimed
        if shipping.kind != "SHIPPING" or free <= 0:
            continue
        members = [
            line
            for line in state.lines.values()
            if line.kind == "PHYSICAL" and _belongs_to(line, shipping, first_by_address)
        ]
        if not any(line.line_number in in_return for line in members):
            continue
        if rule == "onFirst":
            chosen.append(
                (
                    shipping,
                    free,
                    "shipping_refund_rule=onFirst",
                    "shipping refunded: first return with a line of its shipment "
                    "(shipping_refund_rule=onFirst)",
                )
            )
        elif all(line.claimed + line.cancelled >= line.quantity for line in members):
            chosen.append(
                (
                    shipping,
                    free,
                    "shipping_refund_rule=onLast",
                    "shipping refunded: last line of its shipment returned (shipping_refund_rule=onLast)",
                )
            )
    return chosen


def open_return(work: Work, request: Return, *, rma: str | None) -> ReturnState:
    state = work.order
    if state.cancelled:
        raise Refused("ORDER_CANCELLED", f"order {state.order_id} is cancelled")
    if rma is not None and rma in state.returns:
        raise Refused("DUPLICATE_RMA", f"return {rma} already exists for order {state.order_id}")
    if not request.lines:
        raise Refused("NOT_ALLOWED", "a return needs at least one line")
    goods: list[Claim] = []
    for line_number, line_request in _merge_requests(request.lines).items():
        if line_number in state.lines:
            # Before the shipment check: a final-sale line's return never becomes valid, so it is not
            # held waiting for its shipment.
            final_sale.refuse(work.rules, state.lines[line_number], "returned")
        units = claim_goods(work, line_number, line_request.quantity, what="return")
        line = state.lines[line_number]
        closed = return_window.closed_at(work.rules, state, line, work.meta.now)
        if closed is not None:
            raise Refused(
                "RETURN_WINDOW_CLOSED", f"line {line_number}: {return_window.describe(work.rules, closed)}"
            )
        goods.append(Claim(line, units, line_request))
    for claim in goods:
        claim.line.claimed += claim.units
    ret = ReturnState(
        rma=rma or new_rma(work),
        source_id=request.source_id or _home_source(goods),
        status="REQUESTED",
        user=request.user,
        refund_mode=request.refund_mode or "QUANTITY_AND_AMOUNT",
    )
    _take_details(ret, request)
    for claim in goods:
        ask = claim.request
        ret.lines.append(
            ReturnLineState(
                line_number=claim.line.line_number,
                sku=claim.line.sku,
                quantity=claim.units,
                status="REQUESTED",
                reason=ask.reason if ask else None,
                reason_description=ask.reason_description if ask else None,
                condition=ask.condition if ask else None,
                restock=ask.restock if ask else None,
            )
        )
    for line, units, rule, explanation in _rule_lines(work, goods):
        line.claimed += units
        ret.lines.append(
            ReturnLineState(
                line_number=line.line_number,
                sku=line.sku,
                quantity=units,
                status="REQUESTED",
                added_by_rule=rule,
                rule_explanation=explanation,
                stock_done=True,
            )
        )
    state.returns[ret.rma] = ret
    emit_return(work, ret)
    return ret


def _home_source(goods: list[Claim]) -> str:
    for claim in goods:
        if claim.line.kind == "PHYSICAL":
            return claim.line.shipped_from or claim.line.source
    return goods[0].line.source


def _decide_stock(work: Work, ret: ReturnState, *, final: bool) -> None:
    """Restock or write off each goods line once its fate is known (flag, else condition).

    Before receipt a line without flag or condition waits; at receipt it is written off, since goods go
    back on sale only on evidence that they are resellable.
    """
    for rline in ret.lines:
        if rline.stock_done:
            continue
        line = work.order.lines[rline.line_number]
        if line.kind != "PHYSICAL":
            rline.stock_done = True
            continue
        if rline.restock is None and rline.condition is None and not final:
            continue
        restock = rline.restock if rline.restock is not None else work.rules.restocks(rline.condition)
        rline.restock = restock
        rline.stock_done = True
        if restock:
            line.restocked += rline.quantity
            work.move(ret.source_id, line.sku, "RETURN_RESTOCK", on_hand=rline.quantity)
        else:
            line.written_off += rline.quantity


def refund_return(work: Work, ret: ReturnState) -> None:
    if ret.refunded or ret.reshipment or ret.exchange_order_id is not None:
        return
    ret.refunded = True
    paid_nothing = _paid_nothing(work)
    quantity_only = ret.refund_mode == "QUANTITY_ONLY" or paid_nothing
    without_money = (
        "goods returned without money: the order was paid nothing (ZEROPAY); what was paid for them is on "
        "its original order, refunded there by upstream"
        if paid_nothing
        else "goods returned without money (refund_mode=QUANTITY_ONLY)"
    )
    note = CreditNote("return", "INVENTORY_CREDIT_MEMO", ret.refund_mode, rma=ret.rma, user=ret.user)
    goods: list[tuple[CreditNoteLine, ReturnLineState]] = []
    for rline in ret.lines:
        line = work.order.lines[rline.line_number]
        details = {"reason": rline.reason, "reason_description": rline.reason_description}
        if rline.added_by_rule is not None:
            if line.gross == 0 or quantity_only:
                continue  # services and shipping are refunded only where they have a cost
            note.lines.append(
                unit_refund_line(work, line, rline.quantity, rline.rule_explanation or "", **details)
            )
            continue
        restock = rline.restock if rline.stock_done else None
        if quantity_only:
            note.lines.append(
                CreditNoteLine(
                    line,
                    rline.quantity,
                    0 * line.gross,
                    [0 * t.amount for t in line.taxes],
                    without_money,
                    restock=restock,
                    **details,
                )
            )
            continue
        explanation = f"{rline.quantity} of {line.quantity} unit(s) returned, refunded pro rata"
        refund = unit_refund_line(work, line, rline.quantity, explanation, restock=restock, **details)
        note.lines.append(refund)
        goods.append((refund, rline))
    note.lines.extend(return_fees.deduct(work, ret, goods))
    if note.lines:
        issue(work, note)


def _paid_nothing(work: Work) -> bool:
    """A reshipment's or an exchange's child order: its one payment is a zero ZEROPAY."""
    payments = [t for t in work.order.transactions if t.type == "PAYMENT"]
    return bool(payments) and all(t.method == "ZEROPAY" and t.amount == 0 for t in payments)


def approve(work: Work, ret: ReturnState) -> None:
    ret.status = "APPROVED"
    for rline in ret.lines:
        rline.status = "APPROVED"
        line = work.order.lines[rline.line_number]
        if line.kind == "PHYSICAL":
            line.returned += rline.quantity
    emit_return(work, ret)
    if work.rules.refund_on == "approval":
        _decide_stock(work, ret, final=False)
        refund_return(work, ret)


def receive(work: Work, ret: ReturnState, lines: tuple[ReturnLine, ...]) -> None:
    reported = _merge_requests(lines)
    for rline in ret.lines:
        report = reported.get(rline.line_number)
        if report is not None and rline.added_by_rule is None:
            rline.condition = report.condition or rline.condition
            if report.restock is not None and not rline.stock_done:
                rline.restock = report.restock
    if ret.status == "REQUESTED":
        approve(work, ret)
    ret.status = "RECEIVED"
    for rline in ret.lines:
        rline.status = "RECEIVED"
    _decide_stock(work, ret, final=True)
    emit_return(work, ret)
    refund_return(work, ret)
    exchange_goods_arrived(work, ret)
    ret.status = "CLOSED"
    for rline in ret.lines:
        rline.status = "CLOSED"
    emit_return(work, ret)


def cancel(work: Work, ret: ReturnState) -> None:
    if ret.status not in ALL_OPEN:
        raise Refused("RETURN_NOT_OPEN", f"return {ret.rma} is {ret.status}")
    if ret.refunded or any(rline.stock_done and rline.added_by_rule is None for rline in ret.lines):
        raise Refused("NOT_ALLOWED", f"return {ret.rma} is already refunded or restocked")
    approved = ret.status == "APPROVED"
    for rline in ret.lines:
        line = work.order.lines[rline.line_number]
        line.claimed -= rline.quantity
        if approved and line.kind == "PHYSICAL":
            line.returned -= rline.quantity
        rline.status = "CANCELLED"
    ret.status = "CANCELLED"
    emit_return(work, ret)
    exchange_return_cancelled(work, ret)


def find_open(work: Work, rma: str | None) -> ReturnState:
    returns = work.order.returns
    if rma is not None:
        ret = returns.get(rma)
        if ret is None:
            raise Refused("RETURN_NOT_OPEN", f"order {work.order.order_id} has no return {rma}", not_yet=True)
        return ret
    open_returns = [ret for ret in returns.values() if ret.status in ALL_OPEN]
    if len(open_returns) != 1:
        raise Refused(
            "RETURN_NOT_OPEN",
            f"no rma given and order {work.order.order_id} has {len(open_returns)} open returns",
            not_yet=not open_returns,
        )
    return open_returns[0]


def emit_return(work: Work, ret: ReturnState) -> None:
    work.emit(
        names.RETURN_UPDATED,
        {
            "return": {
                "sales_channel_id": work.order.sales_channel,
                "order_id": work.order.order_id,
                "source_id": ret.source_id,
                "rma": ret.rma,
                "user": ret.user,
                "status": {"code": ret.status, "date": work.now},
                "refund_mode": ret.refund_mode,
                "lines": [
                    {
                        "line_number": rline.line_number,
                        "sku": rline.sku,
                        "quantity": rline.quantity,
                        "status": rline.status,
                        "reason": rline.reason,
                        "reason_description": rline.reason_description,
                        "condition": rline.condition,
                        "added_by_rule": rline.added_by_rule,
                        **({"exchange": True, "new_sku": rline.new_sku} if rline.new_sku is not None else {}),
                    }
                    for rline in ret.lines
                ],
                **_details(ret),
                **({"exchange_order_id": ret.exchange_order_id} if ret.exchange_order_id else {}),
            }
        },
    )


def _details(ret: ReturnState) -> dict[str, Any]:
    """The tracking and custom attributes of the return document, where the return has any."""
    details: dict[str, Any] = {}
    if ret.tracking is not None:
        details.update(
            {
                "return_tracking_number": ret.tracking.number,
                "return_tracking_url": ret.tracking.url,
                "return_tracking_label_url": ret.tracking.label_url,
                "return_tracking_carrier": ret.tracking.carrier,
            }
        )
    if ret.custom_attributes:
        details["custom_attributes"] = [{"name": a.name, "value": a.value} for a in ret.custom_attributes]
    return details


def _take_details(ret: ReturnState, request: Return) -> None:
    """Tracking fields sent replace the ones kept (a field not sent stays); custom attributes are merged
    by name, the ones sent last winning."""
    sent = {
        "number": request.return_tracking_number,
        "url": request.return_tracking_url,
        "label_url": request.return_tracking_label_url,
        "carrier": request.return_tracking_carrier,
    }
    if any(value is not None for value in sent.values()):
        kept = ret.tracking or ReturnTracking()
        ret.tracking = ReturnTracking(
            **{name: value if value is not None else getattr(kept, name) for name, value in sent.items()}
        )
    if request.custom_attributes:
        merged = {a.name: a for a in ret.custom_attributes}
        for attribute in request.custom_attributes:
            name = attribute.name or attribute.attribute_code
            if name is not None:
                merged[name] = CustomAttribute(name=name, value=attribute.value)
        ret.custom_attributes = list(merged.values())


# -- the return messages ---------------------------------------------------------------------------------


def authorize_return(work: Work, request: Return) -> None:
    """return_management.authorize / .request: open the RMA, approved at once if the channel says so."""
    ret = open_return(work, request, rma=request.rma)
    if work.rules.auto_approve_return:
        approve(work, ret)
    emit_order(work)


def receive_return(work: Work, request: Return) -> None:
    """return_management.received: the goods of an open RMA arrived, or a blind return was received."""
    existing = work.order.returns.get(request.rma) if request.rma else None
    if existing is None and request.rma and work.may_wait:
        # An RMA this worker has not seen: its authorization may still be on its way.
        raise Refused(
            "RETURN_NOT_OPEN", f"order {work.order.order_id} has no return {request.rma}", not_yet=True
        )
    if existing is None:
        # A blind return (no RMA, or one this worker never saw): open it from what arrived.
        existing = open_return(work, request, rma=request.rma)
    elif not existing.is_open:
        raise Refused("RETURN_NOT_OPEN", f"return {existing.rma} is {existing.status}")
    receive(work, existing, request.lines)
    emit_order(work)


def update_return(work: Work, request: Return) -> None:
    """return_management.update: the tracking and custom attributes of an open return change."""
    ret = find_open(work, request.rma)
    if not ret.is_open:
        raise Refused("RETURN_NOT_OPEN", f"return {ret.rma} is {ret.status}: it can no longer be updated")
    before = (ret.tracking, list(ret.custom_attributes))
    _take_details(ret, request)
    if (ret.tracking, ret.custom_attributes) == before:
        raise Unchanged(f"return {ret.rma} already has these details")
    emit_return(work, ret)


def cancel_return(work: Work, request: Return) -> None:
    """return_management.cancel: an open RMA is cancelled."""
    cancel(work, find_open(work, request.rma))
    emit_order(work)
