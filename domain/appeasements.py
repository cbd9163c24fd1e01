"""Appeasements: money only, no goods; bounded by what remains refundable on each line and the order.
Also the standalone refund for an appeasement whose order never arrived (the Doshii "new order" path)."""

from __future__ import annotations

from decimal import Decimal

from domain.commands import Appeasement
from domain.money import ZERO, fmt, quantize, to_decimal
from domain.orders import emit_order
from domain.outcome import Refused, Work
from domain.refunds import CreditNote, RefundLine, amount_taxes, book, issue
from domain.state import LineState


def _check_number(work: Work, number: str | None) -> None:
    if number is not None and number in work.order.credit_notes:
        raise Refused(
            "DUPLICATE_REFUND", f"credit note {number} is already used on order {work.order.order_id}"
        )


def appease(work: Work, cmd: Appeasement) -> None:
    state = work.order
    _check_number(work, cmd.credit_note_number)
    places = work.places
    note = CreditNote(
        "appeasement",
        "CREDIT_MEMO",
        "AMOUNT_ONLY",
        user=cmd.user,
        credit_note_number=cmd.credit_note_number,
        credit_note_date=_date(cmd.credit_note_date),
    )
    asked: dict[int, Decimal] = {}
    for request in cmd.lines:
        line = state.lines.get(request.line_number)
        if line is None:
            raise Refused("UNKNOWN_LINE", f"order {state.order_id} has no line {request.line_number}")
        amount = quantize(to_decimal(request.amount), places)
        if amount <= 0:
            raise Refused("NOT_ALLOWED", f"line {line.line_number}: an appeasement must be a positive amount")
        already = asked.get(line.line_number, ZERO)
        if amount + already > line.remaining_gross:
            raise Refused(
                "OVER_REFUND",
                f"line {line.line_number}: appeasement {fmt(amount, places)} exceeds the "
                f"{fmt(line.remaining_gross - already, places)} left refundable",
            )
        asked[line.line_number] = already + amount
        taxes = amount_taxes(line, amount, places)
        refund = RefundLine(
            line,
            0,
            amount,
            taxes,
            f"appeasement of {fmt(amount, places)} (money only; tax per component in the line's proportion)",
            reason=request.reason,
            reason_description=request.reason_description,
        )
        book(line, refund, units_refunded=0, amount_only=True)
        note.lines.append(refund)
    if note.gross > state.refundable:
        raise Refused(
            "OVER_REFUND",
            f"appeasement {fmt(note.gross, places)} exceeds the {fmt(state.refundable, places)} "
            f"left refundable on order {state.order_id}",
        )
    issue(work, note)
    emit_order(work)


def _date(value: str | None) -> str | None:
    return value[:10] if value else None


def standalone_appeasement(work: Work, cmd: Appeasement) -> None:
    """A refund with only the negative transaction, flagged as having no known original order."""
    _check_number(work, cmd.credit_note_number)
    places = work.places
    note = CreditNote(
        "appeasement",
        "CREDIT_MEMO",
        "AMOUNT_ONLY",
        user=cmd.user,
        standalone=True,
        credit_note_number=cmd.credit_note_number,
        credit_note_date=_date(cmd.credit_note_date),
    )
    for request in cmd.lines:
        amount = quantize(to_decimal(request.amount), places)
        if amount <= 0:
            raise Refused(
                "NOT_ALLOWED", f"line {request.line_number}: an appeasement must be a positive amount"
            )
        placeholder = LineState(
            line_number=request.line_number,
            kind="OTHER",
            product_type="UNKNOWN",
            sku="",
            quantity=1,
            gross=amount,
            source="",
            payment_reference=None,
        )
        note.lines.append(
            RefundLine(
                placeholder,
                0,
                amount,
                [],
                "standalone refund: the original order never arrived (unknown_order=standalone)",
                reason=request.reason,
                reason_description=request.reason_description,
            )
        )
    issue(work, note)
