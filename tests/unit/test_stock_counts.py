"""A snapshot counts on hand at its time. Snapshots and order movements of one SKU come from different
keys, which Kafka does not order among themselves: whatever order they reach the item in, on hand ends
where their times put it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from domain.outcome import Movement
from domain.state import StockItem
from domain.stock import apply_movement
from domain.timeutil import iso

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def at(ms: int) -> str:
    return iso(START + timedelta(milliseconds=ms))


def count(ms: int, quantity: int) -> Movement:
    return Movement(f"count@{ms}", "WH", "SKU", "SNAPSHOT", at(ms), set_on_hand=quantity)


def change(n: int, ms: int, delta: int, reserved: int = 0) -> Movement:
    return Movement(f"m{n}", "WH", "SKU", "SHIPMENT", at(ms), on_hand_delta=delta, reserved_delta=reserved)


def apply_all(movements: list[Movement]) -> StockItem:
    item: StockItem | None = None
    for m in movements:
        item, _ = apply_movement(item, m)
    assert item is not None
    return item


def test_a_count_that_arrives_after_a_later_shipment_keeps_the_shipment() -> None:
    # Counted 20 at 10 ms; a unit shipped at 15 ms reached the item first.
    item = apply_all([change(1, 15, -1, -1), count(10, 20)])
    assert item.on_hand == 19


def test_a_change_dated_before_the_count_is_already_in_it() -> None:
    item = apply_all([count(10, 20), change(1, 5, +1)])
    assert item.on_hand == 20
    # Reservations are not counted by a snapshot: they apply whatever their time.
    item = apply_all([count(10, 20), change(2, 5, 0, reserved=3)])
    assert (item.on_hand, item.reserved, item.available_to_sell) == (20, 3, 17)


def test_an_older_count_after_a_newer_one_changes_nothing() -> None:
    item = apply_all([count(10, 20), change(1, 12, -2), count(5, 99)])
    assert item.on_hand == 18


def test_a_change_of_the_very_instant_of_the_count_goes_by_the_order_of_handling() -> None:
    # A log whose records all carry one time (replay with --now) keeps the order of the log.
    assert apply_all([count(10, 20), change(1, 10, -1)]).on_hand == 19
    assert apply_all([change(1, 10, -1), count(10, 20)]).on_hand == 20


movements = st.lists(
    st.one_of(
        st.tuples(st.just("count"), st.integers(0, 1_000), st.integers(0, 50)),
        st.tuples(st.just("change"), st.integers(0, 1_000), st.integers(-3, 3)),
    ),
    min_size=1,
    max_size=30,
).filter(lambda ms: len({t for _kind, t, _q in ms}) == len(ms))  # instants of their own: see above


@given(movements, st.randoms(use_true_random=False))
def test_on_hand_ends_where_time_order_puts_it_whatever_the_arrival_order(
    spec: list[tuple[str, int, int]], rng: Random
) -> None:
    built = [count(t, q) if kind == "count" else change(n, t, q) for n, (kind, t, q) in enumerate(spec)]
    shuffled = list(built)
    rng.shuffle(shuffled)
    counts = [(t, q) for kind, t, q in spec if kind == "count"]
    changes = [(t, q) for kind, t, q in spec if kind == "change"]
    if counts:
        last_time, last_quantity = max(counts)
        expected = last_quantity + sum(q for t, q in changes if t > last_time)
    else:
        expected = sum(q for _t, q in changes)
    assert apply_all(shuffled).on_hand == expected
    assert apply_all(built).on_hand == apply_all(shuffled).on_hand
