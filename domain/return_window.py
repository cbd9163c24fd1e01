"""The return window of a sales channel: how long after shipment (or after the order) a customer may
still return a line's units. Absent (`return_window_days` not set), returns are accepted at any time.

The deadline is `return_window_days` after the anchor: the time the line's units were last shipped
(`return_window_from = "shipment"`, the default; a line that is never shipped, such as a service, counts
from the order) or the order's date (`"order"`). A return is in time up to and including the deadline's
second. Lines of orders stored by a version that kept no such dates have no known deadline and are
accepted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.rules import ChannelRules
from domain.state import LineState, OrderState
from domain.timeutil import iso, parse_time


def deadline(rules: ChannelRules, order: OrderState, line: LineState) -> datetime | None:
    """The last moment a return of this line is in time; None when there is no window or no anchor."""
    if rules.return_window_days is None:
        return None
    anchor = order.ordered_at
    if rules.return_window_from == "shipment" and line.shipped_at is not None:
        anchor = line.shipped_at
    start = parse_time(anchor)
    if start is None:
        return None
    return start + timedelta(days=rules.return_window_days)


def closed_at(rules: ChannelRules, order: OrderState, line: LineState, now: datetime) -> datetime | None:
    """The deadline that has passed by `now`, or None while a return of the line is in time."""
    last = deadline(rules, order, line)
    return last if last is not None and now > last else None


def describe(rules: ChannelRules, closed: datetime) -> str:
    anchor = "its shipment" if rules.return_window_from == "shipment" else "the order"
    return f"the return window ({rules.return_window_days} days from {anchor}) closed at {iso(closed)}"


def passed_over(rules: ChannelRules, order: OrderState, line: LineState, now: datetime) -> str:
    """For a refund the window does not refuse (decided upstream, an appeasement): a note for its line's
    explanation when the line was shipped and its window had closed, else nothing."""
    closed = closed_at(rules, order, line, now) if line.shipped else None
    return "" if closed is None else f"; {describe(rules, closed)}, passed over: decided upstream"
