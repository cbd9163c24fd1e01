"""Stock movements from the worker carry their position in the record stream that caused them; a stock
item applies each position once, however often and in whatever batches a crash re-delivers them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.outcome import Movement
from domain.state import StockItem
from domain.stock import apply_movement


def movement(origin: str, offset: int, index: int, delta: int) -> Movement:
    return Movement(
        f"{origin}@{offset}#{index}",
        "WH",
        "SKU",
        "RESERVATION",
        "2026-11-01T00:00:00Z",
        reserved_delta=delta,
        origin=origin,
        origin_offset=offset,
        origin_index=index,
    )


def apply_all(item: StockItem | None, movements: list[Movement]) -> StockItem | None:
    for m in movements:
        item, _ = apply_movement(item, m)
    return item


def test_a_position_already_applied_changes_nothing_and_says_so() -> None:
    first, event = apply_movement(None, movement("in:0", 5, 0, 2))
    assert event is not None and first.reserved == 2
    again, none = apply_movement(first, movement("in:0", 5, 0, 2))
    assert none is None and again.reserved == 2
    earlier, none = apply_movement(first, movement("in:0", 4, 3, 7))
    assert none is None and earlier.reserved == 2
    later, event = apply_movement(first, movement("in:0", 5, 1, 1))
    assert event is not None and later.reserved == 3
    other, event = apply_movement(later, movement("in:1", 0, 0, 1))
    assert event is not None and other.reserved == 4
    assert other.applied == []  # positions, not an ever-growing list of ids


streams = st.lists(
    st.tuples(st.sampled_from(["in:0", "in:1", "ticks:0"]), st.integers(1, 3), st.integers(-2, 3)),
    min_size=1,
    max_size=40,
)


@given(streams, st.lists(st.integers(0, 40), max_size=6))
def test_redelivered_prefixes_apply_every_movement_exactly_once(
    spec: list[tuple[str, int, int]], crashes: list[int]
) -> None:
    # Each origin's records in offset order; a record may cause several movements.
    offsets: dict[str, int] = {}
    sent: list[Movement] = []
    for origin, count, delta in spec:
        offset = offsets[origin] = offsets.get(origin, -1) + 1
        sent.extend(movement(origin, offset, index, delta) for index in range(count))
    expected = sum(m.reserved_delta for m in sent)
    # A crash at point c re-delivers everything from an earlier point (the last commit) onwards.
    delivered: list[Movement] = []
    cursor = 0
    for crash in sorted(crashes):
        crash = min(crash, len(sent))
        delivered.extend(sent[cursor:crash])
        cursor = max(0, crash - 5)
    delivered.extend(sent[cursor:])
    item = apply_all(None, delivered)
    assert item is not None and item.reserved == expected


def test_a_count_forwarded_again_from_another_position_changes_nothing() -> None:
    """A snapshot the intake forwarded twice (it crashed after forwarding, before committing) reaches the
    stock item from two positions; the second copy is the same count, recognised by its id."""

    def count(offset: int) -> Movement:
        return Movement(
            "snap-1#s:SKU",
            "WH",
            "SKU",
            "SNAPSHOT",
            "2026-11-01T00:00:00Z",
            set_on_hand=1000,
            origin="in:1",
            origin_offset=offset,
            origin_index=0,
        )

    counted, event = apply_movement(None, count(0))
    assert event is not None and counted.on_hand == 1000
    reserved, _ = apply_movement(counted, movement("in:2", 9, 0, 3))
    again, none = apply_movement(reserved, count(15))
    assert none is None
    assert (again.on_hand, again.reserved) == (1000, 3)
