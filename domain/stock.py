"""Stock per source and SKU: on hand, reserved, and available-to-sell = on hand − reserved.
Orders may take stock below zero: the worker records what happened, it does not refuse sales.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from msgspec.structs import replace

from domain import names
from domain.commands import SourceSnapshot
from domain.outcome import Event, Movement
from domain.state import StockItem
from domain.timeutil import EPOCH, parse_time

# On-hand changes kept per item for a count that arrives after them: a count later than this many
# changes of one SKU, or this long after them, is not a race between keys any more.
SINCE_COUNT_KEPT = 32
LATE_COUNT_WINDOW_MS = 10 * 60 * 1000


def apply_movement(item: StockItem | None, movement: Movement) -> tuple[StockItem, Event | None]:
    """Apply one movement once: one already applied (a redelivery) changes nothing. Movements with an
    origin are recognised by their position in it, others and counts by their id among the last ones
    applied.

    A snapshot counts on hand at its time. Movements of one SKU come from different keys (the source's
    snapshots, every order), which Kafka does not order among themselves, so they may reach the item in
    another order than their times: an on-hand change dated before the count the item holds is already
    in that count and leaves on hand alone; a count that arrives after changes dated after it adds them
    to its quantity. Either way on hand ends where the time order would have put it.

    A change of the very millisecond of the count is after the count (kept on top of it, whichever
    comes first) when both are timed (`Movement.timed`: their time is their record's own timestamp),
    as replay's order of one millisecond has it: a run of records with one timestamp is taken in
    lifecycle order, where a stock update comes before every message that changes on hand. Otherwise
    (either one's time is a stand-in: replay's --now, the worker's `oms.time: none`) it goes by the
    order of handling (before the count: in it; after: on top), the order of the log in replay, where
    every record without a timestamp gets one and the same time."""
    current = item or StockItem(source_id=movement.source_id, sku=movement.sku)
    position = [movement.origin_offset, movement.origin_index]
    if movement.origin is not None:
        seen = current.positions.get(movement.origin)
        if seen is not None and position <= seen:
            return current, None
    # A count is also recognised by its id: a snapshot that reached the worker twice (its producer sent
    # it again, or the intake forwarded it again after a crash) comes from another position, and no
    # order remembers its id the way an order remembers the messages it applied.
    by_id = movement.origin is None or movement.set_on_hand is not None
    if by_id and movement.movement_id in current.applied:
        return current, None
    # Only the lists and positions are mutable below: copy them, not the whole model.
    new = replace(
        current,
        applied=list(current.applied),
        positions=dict(current.positions),
        since_count=list(current.since_count),
    )
    before = new.available_to_sell
    at = _millis(movement.created_on) if movement.set_on_hand is not None or movement.on_hand_delta else None
    if movement.set_on_hand is not None:
        _count(new, movement.set_on_hand, at, movement.timed)
    if movement.on_hand_delta:
        _change(new, movement.on_hand_delta, at, movement.timed)
    new.reserved += movement.reserved_delta
    if movement.origin is not None:
        new.positions[movement.origin] = position
    if by_id:
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
    snapshot: SourceSnapshot,
    message_id: str,
    created_on: str,
    known_skus: Iterable[str],
    *,
    timed: bool = False,
) -> list[Movement]:
    """Absolute on-hand quantities from a source snapshot.

    FULL and NONZERO describe the whole source (NONZERO leaves out the zeros), so a known SKU that is not
    listed has none on hand; DELTA lists only the SKUs that changed. Unlimited SKUs carry no count and
    are left as they are. `timed`: `created_on` is the record's own timestamp (Movement.timed).
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
            timed=timed,
        )
        for sku, quantity in listed.items()
    ]


def _count(item: StockItem, quantity: int, at: int | None, timed: bool) -> None:
    if item.counted_ms is not None and at is not None and at < item.counted_ms:
        return  # an older count than the one applied: the newer one stands
    later = [change for change in item.since_count if at is None or _after(change, at, timed)]
    item.on_hand = quantity + sum(change[1] for change in later)
    item.counted_ms = at
    item.since_count = later


def _after(change: tuple[int, ...], at: int, timed: bool) -> bool:
    """Whether a kept change is after a count at `at`: a later one, or one of the very millisecond
    when both are timed. A timed change is kept as (ms, delta), the form every version wrote, so a
    worker of the version before reads the stock items of this one; an untimed one as (ms, delta, 0)."""
    when = change[0]
    return when > at or (when == at and timed and len(change) == 2)


def _change(item: StockItem, delta: int, at: int | None, timed: bool) -> None:
    if item.counted_ms is not None and at is not None and at < item.counted_ms:
        return  # the count already includes it
    item.on_hand += delta
    if at is None:
        return
    kept = item.since_count
    kept.append((at, delta) if timed else (at, delta, 0))
    horizon = at - LATE_COUNT_WINDOW_MS
    drop = next((i for i, change in enumerate(kept) if change[0] >= horizon), len(kept))
    drop = max(drop, len(kept) - SINCE_COUNT_KEPT)
    if drop > 0:
        del kept[:drop]


def _millis(created_on: str) -> int | None:
    moment = parse_time(created_on)
    return None if moment is None else (moment - EPOCH) // timedelta(milliseconds=1)
