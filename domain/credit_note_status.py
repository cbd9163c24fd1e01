"""Releasing and cancelling a credit note (`refund_management.release` / `.cancel`).

On a channel with `auto_release_refund = false` a credit note is issued PENDINGRELEASE: the money is
booked against the order, but nobody has paid it yet. A release turns it RELEASED (paid, online or
offline). A cancel turns it CANCELLED and gives back what it took: the refundable amounts of its lines
(gross, each tax component, the units refunded), the return fees it kept, and its negative transaction
in the order's ledger.
Goods that moved with it (a return received, units cancelled) stay where they are: a cancelled refund
does not un-receive a parcel. Both publish the credit note with its new status and the order.

A release of a released note and a cancel of a cancelled one change nothing (a counted skip): the
same command sent twice. Cancelling a released note is refused (`NOT_ALLOWED`), and so is releasing a
cancelled one. A number the order does not have (yet) waits like any message that may be early, then
is refused `UNKNOWN_REFUND`.
"""

from __future__ import annotations

import json

from domain import names, return_fees
from domain.commands import CreditNoteCommand
from domain.orders import emit_order
from domain.outcome import Refused, Unchanged
from domain.state import PendingNote
from domain.work import Work


def release(work: Work, cmd: CreditNoteCommand) -> None:
    pending = _pending(work, cmd.credit_note_number, "released")
    del work.order.pending_notes[cmd.credit_note_number]
    status: dict[str, object] = {"code": "RELEASED", "date": work.now, "user": cmd.user}
    if cmd.offline is not None:
        status["offline"] = cmd.offline
    _publish(work, pending, status)


def cancel(work: Work, cmd: CreditNoteCommand) -> None:
    number = cmd.credit_note_number
    pending = _pending(work, number, "cancelled")
    order = work.order
    for booked in pending.lines:
        line = order.lines.get(booked.line_number)
        if line is None:
            continue
        if booked.fee is not None:
            return_fees.give_back_fee(line, booked.gross, booked.taxes)
            continue
        if booked.restocking_base:
            return_fees.give_back_base(line, booked.gross, booked.taxes)
        line.refunded_gross -= booked.gross
        for index, amount in enumerate(booked.taxes):
            line.refunded_tax[index] -= amount
        line.refunded_units -= booked.units
        if booked.amount_only:
            line.amount_only_gross -= booked.gross
    order.transactions = [
        t for t in order.transactions if not (t.type == "REFUND" and t.credit_note_number == number)
    ]
    del order.pending_notes[number]
    order.cancelled_notes.append(number)
    _publish(work, pending, {"code": "CANCELLED", "date": work.now, "user": cmd.user})


def _pending(work: Work, number: str, becomes: str) -> PendingNote:
    order = work.order
    pending = order.pending_notes.get(number)
    if pending is not None:
        return pending
    cancelled = number in order.cancelled_notes
    if number in order.credit_notes:
        status = "cancelled" if cancelled else "released"
        if status == becomes:
            raise Unchanged(f"credit note {number} is already {status}")
        raise Refused("NOT_ALLOWED", f"credit note {number} is {status}: it cannot be {becomes}")
    raise Refused(
        "UNKNOWN_REFUND",
        f"order {order.order_id} of sales channel {order.sales_channel} has no credit note {number}",
        not_yet=True,
    )


def _publish(work: Work, pending: PendingNote, status: dict[str, object]) -> None:
    document = json.loads(pending.document_json)
    document["status"] = {key: value for key, value in status.items() if value is not None}
    work.emit(names.REFUND_UPDATED, {"refund": document})
    if work.order.known:
        emit_order(work)
