"""Refunds decided upstream (`refund_management.create`): a Shopify / POS refund arrives with its own
amounts per line, a "restock items" choice and a refund mode (docs/contract.md, "Inbound messages").

The order's status decides how it applies: units not shipped yet are cancelled (reservation released),
shipped units are returned (restocked or written off). The worker checks the amounts against what is
left refundable, derives the tax per component where only gross amounts came, and numbers the credit
note unless upstream numbered it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain import final_sale, return_window
from domain.commands import Refund, RefundLine
from domain.money import ZERO, fmt, quantize, to_decimal
from domain.orders import emit_order
from domain.outcome import Refused
from domain.refunds import (
    CreditNote,
    CreditNoteLine,
    amount_taxes,
    book,
    check_upstream_number,
    issue,
    remember_upstream_number,
    standalone_line,
)
from domain.state import LineState
from domain.work import Work


@dataclass(frozen=True)
class Split:
    cancelled: int
    returned: int


def _line(work: Work, order_line: str) -> LineState:
    try:
        number = int(order_line.strip())
    except ValueError:
        number = -1
    line = work.order.lines.get(number)
    if line is None:
        raise Refused("UNKNOWN_LINE", f"order {work.order.order_id} has no line {order_line!r}")
    return line


def _split(line: LineState, request: RefundLine) -> Split:
    """Unshipped units first: a refund of an item still in the warehouse is a cancellation."""
    if line.kind != "PHYSICAL":
        remaining = line.quantity - line.cancelled - line.claimed
        units = request.quantity if request.quantity is not None else remaining
        if units <= 0 or units > remaining:
            raise Refused("OVER_RETURN", f"line {line.line_number}: {units} unit(s) asked, {remaining} left")
        return Split(cancelled=0, returned=units)
    remaining = line.open_units + line.returnable_units
    units = request.quantity if request.quantity is not None else remaining
    if units <= 0 or units > remaining:
        raise Refused(
            "OVER_RETURN",
            f"line {line.line_number}: {units} unit(s) asked, {remaining} left "
            f"({line.open_units} not shipped, {line.returnable_units} shipped and not returned)",
        )
    cancelled = min(units, line.open_units)
    return Split(cancelled=cancelled, returned=units - cancelled)


def _given_taxes(line: LineState, request: RefundLine, gross: Decimal, places: int) -> list[Decimal] | None:
    """Tax as upstream sent it, mapped onto the line's tax components; None when it sent none."""
    details = [payment.details for payment in request.payments]
    vat_details = [d for detail in details for d in (detail.vat_detail or ()) if d.amount is not None]
    given_vat = [detail.cost_vat for detail in details if detail.cost_vat is not None]
    if not vat_details and not given_vat:
        return None
    if not line.taxes:
        return []
    if vat_details:
        taxes = [ZERO] * len(line.taxes)
        for detail in vat_details:
            index = next(
                (
                    i
                    for i, tax in enumerate(line.taxes)
                    if (detail.type is None or (tax.type or "VAT") == detail.type)
                    and (detail.rate is None or tax.rate is None or tax.rate == detail.rate)
                ),
                0,
            )
            taxes[index] += quantize(to_decimal(detail.amount), places)
        return taxes
    total = quantize(sum((to_decimal(v) for v in given_vat), ZERO), places)
    # One figure for several components: split it in the line's proportions, the rest on the last one.
    shares = [quantize(total * tax.amount / line.vat, places) if line.vat else ZERO for tax in line.taxes]
    shares[-1] += total - sum(shares, ZERO)
    return shares


def refund(work: Work, cmd: Refund) -> None:
    state = work.order
    check_upstream_number(work, cmd.credit_note_number)
    places = work.places
    mode = cmd.refund_mode or "QUANTITY_AND_AMOUNT"
    moves_goods, moves_money = mode != "AMOUNT_ONLY", mode != "QUANTITY_ONLY"
    any_returned = False
    lines: list[CreditNoteLine] = []
    seen: set[int] = set()
    for request in cmd.lines:
        line = _line(work, request.order_line)
        if line.line_number in seen:
            raise Refused("NOT_ALLOWED", f"line {line.line_number} appears twice in the refund")
        seen.add(line.line_number)
        split = _split(line, request) if moves_goods else Split(0, 0)
        if split.cancelled and work.may_wait:
            # A refund of units not shipped yet is a cancellation, or a refund that overtook its
            # shipment on another topic: it waits for the shipment as long as the reorder window.
            raise Refused(
                "LINE_NOT_SHIPPED",
                f"line {line.line_number}: {split.cancelled} unit(s) not shipped yet",
                not_yet=True,
            )
        units = split.cancelled + split.returned
        gross = quantize(sum((to_decimal(p.details.cost_gross) for p in request.payments), ZERO), places)
        if gross < 0:
            raise Refused("NOT_ALLOWED", f"line {line.line_number}: a refund amount cannot be negative")
        if not moves_money:
            gross = ZERO
        if gross > line.remaining_gross:
            raise Refused(
                "OVER_REFUND",
                f"line {line.line_number}: {fmt(gross, places)} asked, "
                f"{fmt(line.remaining_gross, places)} left refundable",
            )
        given = _given_taxes(line, request, gross, places) if moves_money else None
        taxes = given if given is not None else amount_taxes(line, gross, places)
        if not moves_money:
            taxes = [ZERO for _ in line.taxes]
        for index, amount in enumerate(taxes):
            if amount > line.remaining_tax(index) or amount > gross:
                raise Refused("OVER_REFUND", f"line {line.line_number}: tax {fmt(amount, places)} too large")
        restock = bool(request.restock) if split.returned else None
        entry = CreditNoteLine(
            line,
            units,
            gross,
            taxes,
            _explain(mode, split, restock, given is not None, moves_money, work.meta.final)
            + return_window.passed_over(work.rules, state, line, work.meta.now)
            + final_sale.passed_over(work.rules, line),
            restock=restock,
            reason=request.reason,
            reason_description=request.reason_description,
        )
        # Derived tax keeps its own cumulative base, so successive gross-only refunds round exactly.
        book(
            line, entry, units_refunded=units if moves_money else 0, amount_only=moves_money and given is None
        )
        _move_goods(work, line, split, restock)
        any_returned = any_returned or split.returned > 0
        lines.append(entry)
    note = CreditNote(
        "return" if any_returned else ("cancellation" if moves_goods else "appeasement"),
        "CREDIT_MEMO" if mode == "AMOUNT_ONLY" else "INVENTORY_CREDIT_MEMO",
        mode,
        lines=lines,
        rma=cmd.rma,
        user=cmd.user,
        refund_reason=cmd.refund_reason,
        credit_note_number=cmd.credit_note_number,
        credit_note_date=(cmd.credit_note_date or "")[:10] or None,
        given_split=_given_split(cmd, places) if moves_money else None,
    )
    if note.gross > 0 and state.refunded_gross + note.gross > state.paid:
        raise Refused(
            "OVER_REFUND",
            f"refund {fmt(note.gross, places)} exceeds the {fmt(state.refundable, places)} left on the order",
        )
    remember_upstream_number(work, cmd.credit_note_number)
    issue(work, note)
    emit_order(work)


def _given_split(cmd: Refund, places: int) -> dict[str, Decimal]:
    """The amount per payment reference, as upstream split it."""
    split: dict[str, Decimal] = {}
    for request in cmd.lines:
        for payment in request.payments:
            split[payment.ref] = split.get(payment.ref, ZERO) + quantize(
                to_decimal(payment.details.cost_gross), places
            )
    return split


def _move_goods(work: Work, line: LineState, split: Split, restock: bool | None) -> None:
    if split.cancelled:
        line.cancelled += split.cancelled
        release = min(split.cancelled, line.reserved)
        line.reserved -= release
        work.move(line.source, line.sku, "RESERVATION_RELEASE", reserved=-release)
    if split.returned:
        line.claimed += split.returned
        if line.kind == "PHYSICAL":
            line.returned += split.returned
            if restock:
                line.restocked += split.returned
                work.move(
                    line.shipped_from or line.source, line.sku, "RETURN_RESTOCK", on_hand=split.returned
                )
            else:
                line.written_off += split.returned


def _explain(
    mode: str, split: Split, restock: bool | None, tax_given: bool, money: bool, waited_window: bool
) -> str:
    parts = [f"refund decided upstream (refund_mode={mode})"]
    if split.cancelled:
        waited = " (no shipment within the reorder window)" if waited_window else ""
        parts.append(f"{split.cancelled} unshipped unit(s) cancelled{waited}")
    if split.returned:
        parts.append(
            f"{split.returned} shipped unit(s) returned, " + ("restocked" if restock else "written off")
        )
    if money:
        parts.append("tax as sent upstream" if tax_given else "tax derived per component from the line")
    else:
        parts.append("goods only, no money")
    return "; ".join(parts)


def standalone_refund(work: Work, cmd: Refund) -> None:
    """The order never arrived (a POS refunding a sale the integration never saw): a refund with only the
    negative transaction, each line's amount as sent and the refunded items listed. No stock moves,
    except units a line restocks: its `sku` goes back on hand at the refund's source (else the channel's
    default source)."""
    check_upstream_number(work, cmd.credit_note_number)
    places = work.places
    source = cmd.source_id or work.rules.default_source
    note = CreditNote(
        "return",
        "INVENTORY_CREDIT_MEMO" if any(_restocks(line) for line in cmd.lines) else "CREDIT_MEMO",
        cmd.refund_mode or "QUANTITY_AND_AMOUNT",
        rma=cmd.rma,
        user=cmd.user,
        refund_reason=cmd.refund_reason,
        credit_note_number=cmd.credit_note_number,
        credit_note_date=(cmd.credit_note_date or "")[:10] or None,
        standalone=True,
    )
    for request in cmd.lines:
        gross = quantize(sum((to_decimal(p.details.cost_gross) for p in request.payments), ZERO), places)
        if gross < 0:
            raise Refused("NOT_ALLOWED", f"line {request.order_line}: a refund amount cannot be negative")
        number = int(request.order_line) if request.order_line.strip().isdigit() else 0
        ref = request.payments[0].ref if request.payments else None
        units = request.quantity or 0
        entry = standalone_line(
            number,
            gross,
            units=units,
            ref=ref,
            sku=request.sku,
            restock=bool(request.restock) if units else None,
            reason=request.reason,
            reason_description=request.reason_description,
        )
        if _restocks(request):
            assert request.sku is not None
            work.move(source, request.sku, "RETURN_RESTOCK", on_hand=units)
            entry.explanation += f"; {units} unit(s) of {request.sku} restocked at {source}"
        elif request.restock:
            entry.explanation += "; not restocked: the line names no sku and no quantity"
        note.lines.append(entry)
    remember_upstream_number(work, cmd.credit_note_number)
    issue(work, note)


def _restocks(line: RefundLine) -> bool:
    return bool(line.restock and line.sku and line.quantity)
