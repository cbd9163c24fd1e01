"""Split tender: which of an order's payments a credit note goes back to.

An order paid with one payment (or none recorded) refunds everything to it, as it always did. An order
paid with several (a gift card and a card) refunds:

- each refund line of a line paid by one of them (its `payment_reference`) to that payment;
- what is tied to no one line (shipping, order-level services, appeasements, and what a line's payment
  can no longer take) across the payments in the channel's `refund_tender_order`: the payment methods
  it lists first, in its order (by default gift cards and store credit), then the others in the order's
  own payment order;

each payment capped at what it paid minus what was already refunded to it, so the allocation is the
same whenever it is computed. A refund decided upstream keeps the split it carries (per payment `ref`);
more than a payment has left is refused `OVER_REFUND`. The credit note lists the amount per payment and
the order's ledger gets one negative transaction per payment refunded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from domain.money import ZERO, fmt
from domain.outcome import Refused
from domain.state import LineState, OrderState


@dataclass(frozen=True)
class Payment:
    reference: str
    method: str | None
    left: Decimal


@dataclass(frozen=True)
class Share:
    """Part of a credit note going back to one payment."""

    reference: str
    method: str | None
    amount: Decimal


def method_key(method: str | None) -> str:
    """Payment methods as upstreams spell them ("giftcard", "Gift Card", "GIFT-CARD") compared alike."""
    return re.sub(r"[^A-Z0-9]", "", (method or "").upper())


def payments(order: OrderState) -> list[Payment]:
    """The order's payments in its own order, each with what it can still take back."""
    paid: dict[str, Decimal] = {}
    methods: dict[str, str | None] = {}
    refunded: dict[str, Decimal] = {}
    for transaction in order.transactions:
        reference = transaction.reference or ""
        if transaction.type == "PAYMENT":
            paid[reference] = paid.get(reference, ZERO) + transaction.amount
            methods.setdefault(reference, transaction.method)
        else:
            refunded[reference] = refunded.get(reference, ZERO) - transaction.amount
    return [Payment(ref, methods[ref], paid[ref] - refunded.get(ref, ZERO)) for ref in paid]


def split(
    order: OrderState,
    tender_order: Sequence[str],
    lines: Iterable[tuple[LineState | None, Decimal]],
    given: dict[str, Decimal] | None,
    places: int,
) -> list[Share] | None:
    """The shares of a credit note over the order's payments, or None when the order has at most one
    payment (all of it then goes where single-payment refunds always went). `lines`: each credit note
    line's order line (None: tied to no line) and amount; `given`: an upstream refund's own split."""
    found = payments(order)
    if len(found) < 2:
        return None
    left = {payment.reference: payment.left for payment in found}
    taken = {payment.reference: ZERO for payment in found}
    loose = ZERO
    if given is not None:
        for reference, amount in given.items():
            if reference not in left:
                loose += amount
                continue
            if amount > left[reference]:
                raise Refused(
                    "OVER_REFUND",
                    f"payment {reference}: {fmt(amount, places)} asked, {fmt(left[reference], places)} left",
                )
            taken[reference] += amount
            left[reference] -= amount
    else:
        for line, amount in lines:
            own_payment = line.payment_reference if line is not None and _tied(line) else None
            if own_payment is not None and own_payment in left:
                own = min(amount, left[own_payment])
                taken[own_payment] += own
                left[own_payment] -= own
                amount -= own
            loose += amount
    for payment in _in_tender_order(found, tender_order):
        if loose <= 0:
            break
        share = min(loose, left[payment.reference])
        taken[payment.reference] += share
        left[payment.reference] -= share
        loose -= share
    if loose > 0:
        raise Refused("OVER_REFUND", f"{fmt(loose, places)} more than the order's payments have left")
    return [Share(p.reference, p.method, taken[p.reference]) for p in found if taken[p.reference] > 0]


def _tied(line: LineState) -> bool:
    """Goods, and services of one of them, were paid by their line's payment; shipping and services of
    the whole order belong to no one line."""
    return line.kind == "PHYSICAL" or (line.kind == "SERVICE" and line.parent_line_number is not None)


def _in_tender_order(found: list[Payment], tender_order: Sequence[str]) -> list[Payment]:
    rank = {method_key(method): index for index, method in enumerate(tender_order)}
    first = len(rank)
    return sorted(found, key=lambda p: rank.get(method_key(p.method), first))
