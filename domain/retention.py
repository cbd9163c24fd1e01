"""When an order leaves state: its post-sales life is over and `retain_days` passed since its last change.

An order's life is over when nothing is open: no return awaiting its goods, no held message, no credit
note waiting for release. From then on, `retain_days` after the message time of its last change, the
order is forgotten: its value, the credit note numbers its messages took and the upstream credit note
numbers it used leave the stores. The decision depends on message times only, so `replay` and the
worker forget the same orders: a message that arrives for an order past that moment finds it
forgotten whether or not a sweep has already deleted it.

A create whose order date is `retain_days` or more before its message time is skipped (archived): the
order's life may have ended and been forgotten, and a re-sent old create must not reserve stock again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.credit_notes import series_name
from domain.outcome import Forgotten
from domain.rules import ChannelRules
from domain.state import OrderState, upstream_key
from domain.timeutil import EPOCH, parse_time


def open_reason(order: OrderState) -> str | None:
    """What keeps the order's post-sales life open, or None when it is over."""
    if order.held:
        return "held messages"
    if any(ret.is_open for ret in order.returns.values()):
        return "a return awaiting its goods"
    if order.pending_notes:
        return "credit notes pending release"
    return None


def forget_at(rules: ChannelRules, order: OrderState) -> datetime | None:
    """When the order leaves state; None while its life is open or its last change is not known."""
    if order.changed_at is None or open_reason(order) is not None:
        return None
    return stored_time(order.changed_at) + timedelta(days=rules.retain_days)


def stored_time(text: str) -> datetime:
    # Written by timeutil.iso (UTC, "Z"), which datetime reads directly: the general reader is slower,
    # and this runs for every message.
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return parse_time(text) or EPOCH


def forgotten(rules: ChannelRules, order: OrderState, now: datetime) -> bool:
    moment = forget_at(rules, order)
    return moment is not None and now >= moment


def archived_create(rules: ChannelRules, ordered: datetime | None, now: datetime) -> bool:
    """A create of an order placed `retain_days` or more before the message's time."""
    return ordered is not None and now - ordered >= timedelta(days=rules.retain_days)


def upstream_keys(order: OrderState, partition: int) -> list[str]:
    """The keys under which the order's credit note numbers would be remembered as upstream numbers
    (one series per store and partition); the caller deletes those that exist."""
    series = series_name(order.store or order.sales_channel, partition)
    return [upstream_key(series, number) for number in order.credit_notes]


# A sweep deletes an order only once its retention ended a day before the latest message time: a
# message up to a day late, dated before that end, still finds the order as the rule above says.
SWEEP_GRACE = timedelta(days=1)


def swept(rules: ChannelRules, order: OrderState, latest: datetime, partition: int) -> Forgotten | None:
    """What a sweep at message time `latest` deletes of this order, or None while it stays."""
    if not forgotten(rules, order, latest - SWEEP_GRACE):
        return None
    return Forgotten(order.key, tuple(upstream_keys(order, partition)))
