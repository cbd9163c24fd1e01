"""Stock per source and SKU: on hand, reserved, and available-to-sell = on hand − reserved (seed 003).
Orders may take stock below zero (seed 002): the worker records what happened, it does not refuse sales.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain import names
from domain.commands import SourceSnapshot
from domain.outcome import Event, Movement
from domain.state import StockItem


def apply_movement(item: StockItem | None, movement: Movement) -> tuple[StockItem, Event | None]:
    """Apply one movement once: one already applied (a redelivery) changes nothing. Movements with an
    origin are recognised by their position in it, others by their id among the last ones applied."""
    current = item or StockItem(source_id=movement.source_id, sku=movement.sku)
    position = [movement.origin_offset, movement.origin_index]
    if movement.origin is not None:
        seen = current.positions.get(movement.origin)
        if seen is not None and position <= seen:
            return current, None
    elif movement.movement_id in current.applied:
        return current, None
    # Only the id list and positions are mutable below: copy them, not the whole model.
    new = current.model_copy(update={"applied": list(current.applied), "positions": dict(current.positions)})
    before = new.available_to_sell
    if movement.set_on_hand is not None:
        new.on_hand = movement.set_on_hand
    new.on_hand += movement.on_hand_delta
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
