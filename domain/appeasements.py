"""Appeasements: money only, no goods; bounded by what remains refundable on each line and the order.
Also the standalone refund for an appeasement whose order never arrived (the Doshii "new order" path)."""

from __future__ import annotations

from decimal import Decimal

from domain import final_sale, return_window
from domain.commands import Appeasement
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
from domain.work import Work


def _note(work: Work, cmd: Appeasement, *, standalone: bool) -> CreditNote:
    check_upstream_number(work, cmd.credit_note_number)
    date = cmd.credit_note_date[:10] if cmd.credit_note_date else None
    return CreditNote(
        "appeasement",
        "CREDIT_MEMO",
        "AMOUNT_ONLY",
        user=cmd.user,
        standalone=standalone,
        credit_note_number=cmd.credit_note_number,
        credit_note_date=date,
    )


def _positive(work: Work, line_number: int, amount: object) -> Decimal:
    value = quantize(to_decimal(amount), work.places)
    if value <= 0:
        raise Refused("NOT_ALLOWED", f"line {line_number}: an appeasement must be a positive amount")
    return value


def _issue(work: Work, cmd: Appeasement, note: CreditNote) -> None:
    remember_upstream_number(work, cmd.credit_note_number)
    issue(work, note)


def appease(work: Work, cmd: Appeasement) -> None:
    state = work.order
    note = _note(work, cmd, standalone=False)
    places = work.places
    asked: dict[int, Decimal] = {}
    for request in cmd.lines:
        line = state.lines.get(request.line_number)
        if line is None:
            raise Refused("UNKNOWN_LINE", f"order {state.order_id} has no line {request.line_number}")
        amount = _positive(work, line.line_number, request.amount)
        already = asked.get(line.line_number, ZERO)
        if amount + already > line.remaining_gross:
            raise Refused(
                "OVER_REFUND",
                f"line {line.line_number}: appeasement {fmt(amount, places)} exceeds the "
                f"{fmt(line.remaining_gross - already, places)} left refundable",
            )
        asked[line.line_number] = already + amount
        taxes = amount_taxes(line, amount, places)
        refund = CreditNoteLine(
            line,
            0,
            amount,
            taxes,
            f"appeasement of {fmt(amount, places)} (money only; tax per component in the line's proportion)"
            + return_window.passed_over(work.rules, state, line, work.meta.now)
            + final_sale.passed_over(work.rules, line),
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
    _issue(work, cmd, note)
    emit_order(work)


def standalone_appeasement(work: Work, cmd: Appeasement) -> None:
    """A refund with only the negative transaction, flagged as having no known original order."""
    note = _note(work, cmd, standalone=True)
    for request in cmd.lines:
        amount = _positive(work, request.line_number, request.amount)
        note.lines.append(
            standalone_line(
                request.line_number,
                amount,
                reason=request.reason,
                reason_description=request.reason_description,
            )
        )
    _issue(work, cmd, note)
