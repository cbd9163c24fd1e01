"""Final-sale items: SKUs a channel sells on the understanding that they are not taken back
(`final_sale_skus`, exact SKUs or globs, domain/sku_patterns.py).

What the worker decides itself is refused with `FINAL_SALE`, naming the line, its SKU and the pattern:
a return authorize or request, an exchange, and the receipt of a return never authorized (a blind
return is opened by its receipt, so it is decided like a request). A receipt of a return authorized
before is honoured: the customer was told yes, and the parcel is on its way. What upstream decided (a
`refund_management.create`, an appeasement) is not refused, its lines' `explanation` says the rule was
passed over, as for a closed return window. A reshipment is not a return (the customer keeps nothing
back and gets the goods again) and is not affected; nor are cancellations of goods not shipped.
"""

from __future__ import annotations

from domain.outcome import Refused
from domain.rules import ChannelRules
from domain.state import LineState


def describe(line: LineState, pattern: str) -> str:
    return f'SKU {line.sku} is final sale (final_sale_skus "{pattern}")'


def refuse(rules: ChannelRules, line: LineState, what: str) -> None:
    """Refuse a return or exchange (`what`: "returned", "exchanged") of a final-sale line."""
    pattern = rules.final_sale.match(line.sku)
    if pattern is not None:
        raise Refused(
            "FINAL_SALE", f"line {line.line_number}: {describe(line, pattern)}: it cannot be {what}"
        )


def passed_over(rules: ChannelRules, line: LineState) -> str:
    """For a refund the rule does not refuse (decided upstream, an appeasement): a note for its line's
    explanation when the line was shipped and is final sale, else nothing."""
    pattern = rules.final_sale.match(line.sku) if line.shipped else None
    return "" if pattern is None else f"; {describe(line, pattern)}, passed over: decided upstream"
