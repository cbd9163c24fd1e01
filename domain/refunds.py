"""Credit notes: the amounts per line and tax component, and the refund document of docs/contract.md.

Every refund of a line is a step between cumulative figures, capped at what is left on the line, so the
refunds of a line add up to exactly the line (gross and each tax component) and never beyond.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from domain import names, tender
from domain.money import ZERO, fmt, prorate_step, quantize
from domain.outcome import Refused
from domain.state import BookedLine, LineState, PendingNote, Transaction
from domain.work import Work

RefundType = Literal["return", "appeasement", "cancellation"]
DocumentType = Literal["CREDIT_MEMO", "INVENTORY_CREDIT_MEMO"]
FeeKind = Literal["RESTOCKING_FEE", "RETURN_SHIPPING_FEE"]


@dataclass
class CreditNoteLine:
    line: LineState
    units: int
    gross: Decimal
    taxes: list[Decimal]
    explanation: str
    restock: bool | None = None
    reason: str | None = None
    reason_description: str | None = None
    # A fee kept from the refund (domain/return_fees.py): negative amounts, the goods line it follows.
    fee: FeeKind | None = field(default=None, init=False)
    # What `book` added to the line's cumulative figures besides the amounts.
    units_refunded: int = field(default=0, init=False)
    amount_only: bool = field(default=False, init=False)
    # The restocking fee was charged on this goods refund (its amounts are in the fee's base).
    restocking_base: bool = field(default=False, init=False)

    @property
    def vat(self) -> Decimal:
        return sum(self.taxes, ZERO)


@dataclass
class CreditNote:
    refund_type: RefundType
    document_type: DocumentType
    refund_mode: str
    lines: list[CreditNoteLine] = field(default_factory=list)
    rma: str | None = None
    user: str | None = None
    refund_reason: str | None = None
    credit_note_number: str | None = None
    credit_note_date: str | None = None
    standalone: bool = False
    # A refund decided upstream: the amount per payment reference it carries.
    given_split: dict[str, Decimal] | None = None

    @property
    def gross(self) -> Decimal:
        return sum((line.gross for line in self.lines), ZERO)

    @property
    def vat(self) -> Decimal:
        return sum((line.vat for line in self.lines), ZERO)


def _capped(step: Decimal, remaining: Decimal) -> Decimal:
    return max(ZERO, min(step, remaining))


def unit_amounts(line: LineState, units: int, places: int) -> tuple[Decimal, list[Decimal], bool]:
    """Gross and taxes for refunding `units` more units of the line, pro rata with cumulative rounding.

    Returns whether the cap (what is left after earlier refunds, appeasements included) cut the amount.
    """
    before, after = line.refunded_units, min(line.refunded_units + units, line.quantity)
    gross_step = prorate_step(line.gross, before, after, line.quantity, places)
    if after == line.quantity:
        # The last units take what is left, whatever rounding earlier refunds of other kinds used.
        return _remainder(line, gross_step)
    gross = _capped(gross_step, line.remaining_gross)
    taxes: list[Decimal] = []
    for index, tax in enumerate(line.taxes):
        step = prorate_step(tax.amount, before, after, line.quantity, places)
        taxes.append(_capped(step, line.remaining_tax(index)))
    return gross, taxes, gross < gross_step


def _remainder(line: LineState, gross_step: Decimal) -> tuple[Decimal, list[Decimal], bool]:
    taxes = [max(ZERO, line.remaining_tax(index)) for index in range(len(line.taxes))]
    gross = max(ZERO, line.remaining_gross)
    return gross, taxes, gross < gross_step


def amount_taxes(line: LineState, gross: Decimal, places: int) -> list[Decimal]:
    """Tax per component for a money-only refund of `gross` on the line: each component's share of the
    line, with the same cumulative rounding over all money-only refunds of the line."""
    if line.gross <= 0:
        return [ZERO for _ in line.taxes]
    if gross == line.remaining_gross:
        return [max(ZERO, line.remaining_tax(index)) for index in range(len(line.taxes))]
    before, after = line.amount_only_gross, line.amount_only_gross + gross
    taxes = []
    for index, tax in enumerate(line.taxes):
        step = quantize(tax.amount * after / line.gross, places) - quantize(
            tax.amount * before / line.gross, places
        )
        taxes.append(_capped(step, line.remaining_tax(index)))
    return taxes


def book(line: LineState, refund: CreditNoteLine, *, units_refunded: int, amount_only: bool) -> None:
    line.refunded_gross += refund.gross
    for index, amount in enumerate(refund.taxes):
        line.refunded_tax[index] += amount
    line.refunded_units += units_refunded
    if amount_only:
        line.amount_only_gross += refund.gross
    refund.units_refunded, refund.amount_only = units_refunded, amount_only


def unit_refund_line(
    work: Work, line: LineState, units: int, explanation: str, **details: Any
) -> CreditNoteLine:
    gross, taxes, capped = unit_amounts(line, units, work.places)
    if capped:
        explanation += "; capped at what is left refundable on the line"
    refund = CreditNoteLine(line, units, gross, taxes, explanation, **details)
    book(line, refund, units_refunded=units, amount_only=False)
    return refund


def check_upstream_number(work: Work, number: str | None) -> None:
    """A credit note number sent by upstream is used once per store (within this partition's series)."""
    if number is None:
        return
    store = work.order.store or work.order.sales_channel
    used_by = work.numbers.upstream_number_user(store, number)
    if number in work.order.credit_notes or (used_by is not None and used_by != work.meta.message_id):
        raise Refused("DUPLICATE_REFUND", f"credit note {number} is already used for store {store}")


def remember_upstream_number(work: Work, number: str | None) -> None:
    if number is None:
        return
    work.numbers.remember_upstream_number(work.order.store or work.order.sales_channel, number)


def standalone_line(
    line_number: int,
    gross: Decimal,
    *,
    units: int = 0,
    ref: str | None = None,
    sku: str | None = None,
    **details: Any,
) -> CreditNoteLine:
    """A refund line for an order that never arrived: the amount as sent, no tax known."""
    placeholder = LineState(
        line_number=line_number,
        kind="OTHER",
        product_type="UNKNOWN",
        sku=sku or "",
        quantity=max(units, 1),
        gross=gross,
        source="",
        payment_reference=ref,
    )
    explanation = "standalone refund: the original order never arrived (unknown_order=standalone)"
    return CreditNoteLine(placeholder, units, gross, [], explanation, **details)


def _payment_ref(work: Work, line: LineState) -> str:
    if line.payment_reference:
        return line.payment_reference
    payments = [t.reference for t in work.order.transactions if t.type == "PAYMENT" and t.reference]
    return payments[0] if payments else work.order.order_id


def _line_document(work: Work, refund: CreditNoteLine) -> dict[str, Any]:
    places = work.places
    line = refund.line
    vat = refund.vat
    return {
        "order_line": str(line.line_number),
        **({"fee": refund.fee} if refund.fee is not None else {}),
        "sku": line.sku or None,
        "quantity": refund.units,
        "restock": refund.restock,
        "reason": refund.reason,
        "reason_description": refund.reason_description,
        "explanation": refund.explanation,
        "payments": [
            {
                "ref": _payment_ref(work, line),
                "details": {
                    "cost_gross": fmt(refund.gross, places),
                    "cost_net": fmt(refund.gross - vat, places),
                    "cost_vat": fmt(vat, places),
                    "vat_rate": _rate(line.tax_rate),
                    "vat_detail": [
                        {"type": tax.type or "VAT", "amount": fmt(amount, places), "rate": _rate(tax.rate)}
                        for tax, amount in zip(line.taxes, refund.taxes, strict=True)
                    ],
                },
                "status": {"code": "REFUNDED"},
            }
        ],
    }


def _rate(rate: Decimal | None) -> str:
    if rate is None:
        return "0"
    return format(rate.normalize(), "f")


def issue(work: Work, note: CreditNote) -> str:
    """Number the credit note, publish it, and write the negative transaction to the order's ledger."""
    order = work.order
    store = order.store or order.sales_channel
    number = note.credit_note_number or work.numbers.next_number(store)
    places = work.places
    gross, vat = note.gross, note.vat
    shares = _shares(work, note) if gross != 0 else []
    order.credit_notes.append(number)
    for share in shares:
        order.transactions.append(
            Transaction(
                type="REFUND", amount=-share.amount, reference=share.reference, credit_note_number=number
            )
        )
    document = {
        "client": "oms-postsales",
        "order_id": order.order_id,
        "store_id": store,
        "sales_channel_id": order.sales_channel,
        "credit_note_number": number,
        "credit_note_date": note.credit_note_date or work.now[:10],
        "status": {
            "code": "RELEASED" if work.rules.auto_release_refund else "PENDINGRELEASE",
            "date": work.now,
        },
        "refund_type": note.refund_type,
        "rma": note.rma,
        "user": note.user,
        "refund_reason": note.refund_reason,
        "document_type": note.document_type,
        "refund_mode": note.refund_mode,
        "currency": order.currency,
        "standalone": note.standalone,
        "totals": {
            "cost_gross": fmt(gross, places),
            "cost_net": fmt(gross - vat, places),
            "cost_vat": fmt(vat, places),
        },
        "lines": [_line_document(work, line) for line in note.lines],
        "payments": [
            {"ref": share.reference, "payment_method": share.method, "amount": fmt(share.amount, places)}
            for share in shares
        ],
    }
    if not work.rules.auto_release_refund:
        order.pending_notes[number] = PendingNote(
            document_json=json.dumps(document, separators=(",", ":")),
            lines=[_booked(line) for line in note.lines if not note.standalone],
        )
    work.emit(names.REFUND_UPDATED, {"refund": document})
    return number


def _shares(work: Work, note: CreditNote) -> list[tender.Share]:
    """Where the note's money goes back: one share per payment (domain/tender.py)."""
    order = work.order
    untied = note.refund_type == "appeasement" or note.standalone
    shares = tender.split(
        order,
        work.rules.refund_tender_order,
        [(None if untied else line, gross) for line, gross in _net_per_line(note)],
        note.given_split,
        work.places,
    )
    if shares is not None:
        return shares
    reference = _payment_ref(work, note.lines[0].line) if note.lines else None
    method = next(
        (t.method for t in order.transactions if t.type == "PAYMENT" and t.reference == reference), None
    )
    return [tender.Share(reference or order.order_id, method, note.gross)]


def _net_per_line(note: CreditNote) -> list[tuple[LineState, Decimal]]:
    """What the note gives back per order line, its fees taken off: a fee is kept from its own line's
    refund, so it comes off that line's payment and never makes a payment's share negative."""
    amounts: dict[int, Decimal] = {}
    lines: dict[int, LineState] = {}
    for refund in note.lines:
        key = id(refund.line)
        lines.setdefault(key, refund.line)
        amounts[key] = amounts.get(key, ZERO) + refund.gross
    return [(lines[key], amount) for key, amount in amounts.items()]


def _booked(refund: CreditNoteLine) -> BookedLine:
    if refund.fee is not None:
        return BookedLine(
            line_number=refund.line.line_number,
            gross=-refund.gross,
            taxes=[-amount for amount in refund.taxes],
            fee=refund.fee,
        )
    return BookedLine(
        line_number=refund.line.line_number,
        gross=refund.gross,
        taxes=list(refund.taxes),
        units=refund.units_refunded,
        amount_only=refund.amount_only,
        restocking_base=refund.restocking_base,
    )
