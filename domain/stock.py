"""Stock per source and SKU: on hand, reserved, and available-to-sell = on hand − reserved (seed 003).
Orders may take stock below zero (seed 002): the worker records what happened, it does not refuse sales.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from domain import names
from domain.commands import SourceSnapshot
from domain.outcome import Event, Movement
from domain.state import StockItem
from domain.timeutil import parse_time

# On-hand changes kept per item for a count that arrives after them: a count later than this many
# changes of one SKU, or this long after them, is not a race between keys any more.
SINCE_COUNT_KEPT = 32
LATE_COUNT_WINDOW = timedelta(minutes=10)


def apply_movement(item: StockItem | None, movement: Movement) -> tuple[StockItem, Event | None]:
    """Apply one movement once: one already applied (a redelivery) changes nothing. Movements with an
    origin are recognised by their position in it, others by their id among the last ones applied.

    A snapshot counts on hand at its time. Movements of one SKU come from different keys (the source's
    snapshots, every order), which Kafka does not order among themselves, so they may reach the item in
    another order than their times: an on-hand change dated before the count the item holds is already
    in that count and leaves on hand alone; a count that arrives after changes dated after it adds them
    to its quantity. Either way on hand ends where the time order would have put it. A change of the
    very instant of the count is taken as the order of handling says (before the count: in it; after:
    on top), as replay does with a log whose records carry one and the same time."""
    current = item or StockItem(source_id=movement.source_id, sku=movement.sku)
    position = [movement.origin_offset, movement.origin_index]
    if movement.origin is not None:
        seen = current.positions.get(movement.origin)
        if seen is not None and position <= seen:
            return current, None
    elif movement.movement_id in current.applied:
        return current, None
    # Only the lists and positions are mutable below: copy them, not the whole model.
    new = current.model_copy(
        update={
            "applied": list(current.applied),
            "positions": dict(current.positions),
            "since_count": list(current.since_count),
        }
    )
    before = new.available_to_sell
    at = parse_time(movement.created_on)
    if movement.set_on_hand is not None:
        _count(new, movement.set_on_hand, movement.created_on, at)
    if movement.on_hand_delta:
        _change(new, movement.on_hand_delta, movement.created_on, at)
    new.reserved += movement.reserved_delta
    if movement.origin is not None:
        new.positions[movement.origin] = position
    else:
        new.remember(movement.movement_id)
    event = Event(
        name=names.STOCK_ADJUSTED,
        key=movement.key,
        cause=movement.movement_id,
        params={
            "adjustment": {
                "source_id": movement.source_id,
                "reason": movement.reason,
                "created_on": movement.created_on,
                "adjustments": [
                    {
                        "sku": movement.sku,
                        "quantity": new.available_to_sell - before,
                        "on_hand": new.on_hand,
                        "reserved": new.reserved,
                        "available_to_sell": new.available_to_sell,
                    }
                ],
            }
        },
    )
    return new, event


def snapshot_movements(
    snapshot: SourceSnapshot, message_id: str, created_on: str, known_skus: Iterable[str]
) -> list[Movement]:
    """Absolute on-hand quantities from a source snapshot.

    FULL and NONZERO describe the whole source (NONZERO leaves out the zeros), so a known SKU that is not
    listed has none on hand; DELTA lists only the SKUs that changed. Unlimited SKUs carry no count and
    are left as they are.
    """
    listed: dict[str, int] = {}
    for entry in snapshot.stock:
        if not entry.unlimited:
            listed[entry.sku] = entry.quantity
    if snapshot.mode in ("FULL", "NONZERO"):
        unlimited = {entry.sku for entry in snapshot.stock if entry.unlimited}
        for sku in sorted(set(known_skus) - set(listed) - unlimited):
            listed[sku] = 0
    return [
        Movement(
            movement_id=f"{message_id}#s:{sku}",
            source_id=snapshot.source_id,
            sku=sku,
            reason="SNAPSHOT",
            created_on=created_on,
            set_on_hand=quantity,
        )
        for sku, quantity in listed.items()
    ]


def _count(item: StockItem, quantity: int, created_on: str, at: datetime | None) -> None:
    counted = parse_time(item.counted_at) if item.counted_at else None
    if counted is not None and at is not None and at < counted:
        return  # an older count than the one applied: the newer one stands
    later = [(when, delta) for when, delta in item.since_count if _after(when, at)]
    item.on_hand = quantity + sum(delta for _when, delta in later)
    item.counted_at = created_on
    item.since_count = later


def _change(item: StockItem, delta: int, created_on: str, at: datetime | None) -> None:
    if item.counted_at is not None and _before(created_on, parse_time(item.counted_at)):
        return  # the count already includes it
    item.on_hand += delta
    kept = item.since_count
    kept.append((created_on, delta))
    if len(kept) > SINCE_COUNT_KEPT:
        del kept[: len(kept) - SINCE_COUNT_KEPT]
    if at is not None:
        horizon = at - LATE_COUNT_WINDOW
        while kept and _before(kept[0][0], horizon):
            del kept[0]


def _before(when: str, moment: datetime | None) -> bool:
    at = parse_time(when)
    return at is not None and moment is not None and at < moment


def _after(when: str, moment: datetime | None) -> bool:
    at = parse_time(when)
    return at is None or moment is None or at > moment
