"""Return fees: what a channel keeps from a return's refund (`restocking_fee_percent`, with its
`restocking_fee_reasons` and `restocking_fee_conditions`, and `return_shipping_fee`).

Each fee is a credit note line of its own (`fee`: `RESTOCKING_FEE` or `RETURN_SHIPPING_FEE`) with
negative amounts, following the goods line it is kept from: same order line, SKU, payment and tax
components, so that the note's lines add up to its totals and the fee comes off the payment that paid
for the goods.

- The restocking fee is the percentage of a goods line's refund, gross and each tax component alike,
  rounded half up cumulatively over the line's refunds it was charged on: returning a line's units in
  several returns keeps the same fee as returning them at once, to the minor unit.
- The return shipping fee is taken once per return, with the return's refund (the worker refunds a
  return once, at approval or receipt, in one credit note), shared over its goods lines in proportion
  to what each still refunds after its restocking fee (cumulative rounding across the lines, so the
  shares add up to the fee), each share taxed in the proportions of its line.
- Fees never make a refund negative: the restocking fee is at most the line's refund (a percentage of
  at most 100), and the shipping fee at most what the goods lines refund after it; the explanation says
  when the cap cut it.

Only the worker's own return refunds carry fees. Exchanges and reshipments refund nothing, so there is
nothing to keep a fee from; a refund decided upstream (`refund_management.create`, also one naming the
return's RMA) carries upstream's own amounts, fees included; appeasements and cancellations are not
returns. Lines the refund-return rules bring along (shipping, services) and refunds without money
(`QUANTITY_ONLY`, a child order paid nothing) are never charged.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from domain.money import ZERO, fmt, quantize
from domain.refunds import CreditNoteLine, FeeKind
from domain.rules import ChannelRules
from domain.state import LineFees, LineState, ReturnLineState, ReturnState
from domain.work import Work


def deduct(
    work: Work, ret: ReturnState, goods: Sequence[tuple[CreditNoteLine, ReturnLineState]]
) -> list[CreditNoteLine]:
    """The fee lines of a return's credit note whose goods lines are `goods` (each with the return line
    it refunds); the line figures are booked. Nothing when the channel charges no fee."""
    rules = work.rules
    if rules.restocking_rate is None and rules.shipping_fee is None:
        return []
    fees: list[CreditNoteLine] = []
    # What each goods line still refunds once its restocking fee is kept: the shipping fee's base.
    left: list[tuple[CreditNoteLine, Decimal, list[Decimal]]] = []
    for refund, rline in goods:
        if refund.line.kind != "PHYSICAL" or refund.gross <= 0:
            continue
        gross, taxes = refund.gross, list(refund.taxes)
        if rules.restocking_fee_applies(rline.reason, rline.condition):
            fee = _restocking_fee(work, refund, rline)
            if fee is not None:
                fees.append(fee)
                gross += fee.gross
                taxes = [amount + kept for amount, kept in zip(taxes, fee.taxes, strict=True)]
        left.append((refund, gross, taxes))
    fees.extend(_shipping_fee(work, ret, left))
    return fees


def _fees_of(line: LineState) -> LineFees:
    """The line's fee figures, made on its first fee, with one entry per tax component."""
    if line.fees is None:
        line.fees = LineFees()
    fees, width = line.fees, len(line.taxes)
    for figures in (fees.restocking_base_tax, fees.tax):
        figures.extend([ZERO] * (width - len(figures)))
    return fees


def _capped(step: Decimal, most: Decimal) -> Decimal:
    return max(ZERO, min(step, most))


def _restocking_fee(work: Work, refund: CreditNoteLine, rline: ReturnLineState) -> CreditNoteLine | None:
    rules, line, places = work.rules, refund.line, work.places
    rate = rules.restocking_rate
    assert rate is not None
    fees = _fees_of(line)
    before = fees.restocking_base_gross
    # A difference of cumulative shares is at most the goods' refund for a rate of at most 1 (rounding
    # half up is monotonic and moves whole minor units); the cap keeps that true if the currency's
    # precision changed between two returns.
    gross = _capped(
        quantize((before + refund.gross) * rate, places) - quantize(before * rate, places), refund.gross
    )
    taxes: list[Decimal] = []
    for index, amount in enumerate(refund.taxes):
        base = fees.restocking_base_tax[index]
        step = quantize((base + amount) * rate, places) - quantize(base * rate, places)
        taxes.append(_capped(step, amount))
        fees.restocking_base_tax[index] = base + amount
    fees.restocking_base_gross = before + refund.gross
    refund.restocking_base = True
    if gross == 0 and not any(taxes):
        return None
    percent = rules.restocking_fee_percent
    explanation = (
        f"restocking fee: {percent}% of the {fmt(refund.gross, places)} refunded for line "
        f'{line.line_number} (restocking_fee_percent = "{percent}"{_because(rules, rline)})'
    )
    return _fee_line(refund, "RESTOCKING_FEE", gross, taxes, explanation)


def _because(rules: ChannelRules, rline: ReturnLineState) -> str:
    """Why this line is charged, when the fee is for some reasons or conditions only."""
    parts = []
    if rules.restocking_fee_reasons is not None:
        parts.append(f"; reason {rline.reason} in restocking_fee_reasons")
    if rules.restocking_fee_conditions is not None:
        parts.append(f"; condition {rline.condition} in restocking_fee_conditions")
    return "".join(parts)


def _shipping_fee(
    work: Work, ret: ReturnState, left: list[tuple[CreditNoteLine, Decimal, list[Decimal]]]
) -> list[CreditNoteLine]:
    rules, places = work.rules, work.places
    if rules.shipping_fee is None:
        return []
    fee = quantize(rules.shipping_fee, places)
    total = sum((gross for _, gross, _ in left), ZERO)
    kept = min(fee, total)
    if kept <= 0:
        return []
    shared = len([gross for _, gross, _ in left if gross > 0]) > 1
    about = (
        f'return shipping fee {fmt(fee, places)} (return_shipping_fee = "{rules.return_shipping_fee}"), '
        f"taken once for return {ret.rma}"
    )
    if kept < fee:
        about += f"; capped at the {fmt(total, places)} the return refunds"
    lines: list[CreditNoteLine] = []
    running, before = ZERO, ZERO
    for refund, gross, taxes in left:
        if gross <= 0:
            continue
        running += gross
        after = quantize(kept * running / total, places)
        share, before = after - before, after
        if share <= 0:
            continue
        # A share is at most its line's gross (the cumulative shares of kept <= total), so each tax
        # component is at most what the line still refunds of it.
        share_taxes = [_capped(quantize(share * amount / gross, places), amount) for amount in taxes]
        explanation = about + (
            f": {fmt(share, places)} of it on line {refund.line.line_number}, in proportion to what the "
            "line refunds"
            if shared
            else ""
        )
        lines.append(_fee_line(refund, "RETURN_SHIPPING_FEE", share, share_taxes, explanation))
    return lines


def _fee_line(
    refund: CreditNoteLine, kind: FeeKind, gross: Decimal, taxes: list[Decimal], explanation: str
) -> CreditNoteLine:
    """A fee kept from `refund`'s goods line: negative amounts, booked in the line's fees."""
    line = refund.line
    fees = _fees_of(line)
    fees.gross += gross
    for index, amount in enumerate(taxes):
        fees.tax[index] += amount
    kept = CreditNoteLine(
        line,
        0,
        -gross,
        [-amount for amount in taxes],
        explanation,
        reason=refund.reason,
        reason_description=refund.reason_description,
    )
    kept.fee = kind
    return kept


def give_back_fee(line: LineState, gross: Decimal, taxes: Sequence[Decimal]) -> None:
    """A cancelled credit note gives back a fee it kept (domain/credit_note_status.py)."""
    fees = _fees_of(line)
    fees.gross -= gross
    for index, amount in enumerate(taxes):
        fees.tax[index] -= amount


def give_back_base(line: LineState, gross: Decimal, taxes: Sequence[Decimal]) -> None:
    """A cancelled credit note's goods refund leaves the restocking fee's base: a later refund of the
    same units is charged as if this one had never been."""
    fees = _fees_of(line)
    fees.restocking_base_gross -= gross
    for index, amount in enumerate(taxes):
        fees.restocking_base_tax[index] -= amount


def kept_tax(line: LineState) -> Decimal:
    """The tax of the fees kept on a line (what the order's refunded tax leaves out)."""
    return ZERO if line.fees is None else sum(line.fees.tax, ZERO)
