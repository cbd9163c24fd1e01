"""A snapshot counts on hand at its time. Snapshots and order movements of one SKU come from different
keys, which Kafka does not order among themselves: whatever order they reach the item in, on hand ends
where their times put it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

from hypothesis import given
from hypothesis import strategies as st

from domain.outcome import Movement
from domain.state import StockItem
from domain.stock import apply_movement
from domain.timeutil import iso
from workers.config.rules_file import load_rules
from workers.engine.codec import InboundRecord, dumps
from workers.engine.pipeline import Pipeline
from workers.replay.runner import read_records

START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
START_MS = (START - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def at(ms: int) -> str:
    return iso(START + timedelta(milliseconds=ms))


def count(ms: int, quantity: int, *, timed: bool = False) -> Movement:
    return Movement(f"count@{ms}", "WH", "SKU", "SNAPSHOT", at(ms), set_on_hand=quantity, timed=timed)


def change(n: int, ms: int, delta: int, reserved: int = 0, *, timed: bool = False) -> Movement:
    return Movement(
        f"m{n}", "WH", "SKU", "SHIPMENT", at(ms), on_hand_delta=delta, reserved_delta=reserved, timed=timed
    )


def apply_all(movements: list[Movement]) -> StockItem:
    return apply_all_from(None, movements)


def apply_all_from(item: StockItem | None, movements: list[Movement]) -> StockItem:
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


def test_a_timed_change_of_the_very_millisecond_of_a_timed_count_is_after_it_in_either_order() -> None:
    # Replay takes a run of one millisecond in lifecycle order, the stock update first: the change goes
    # on top of the count, and the worker, which may handle them either way, ends there too.
    count_first = apply_all([count(10, 20, timed=True), change(1, 10, -1, timed=True)])
    change_first = apply_all([change(1, 10, -1, timed=True), count(10, 20, timed=True)])
    assert count_first.on_hand == change_first.on_hand == 19
    assert change_first.since_count == [(START_MS + 10, -1)] == count_first.since_count
    # A change of an earlier millisecond is still in the count, timed or not.
    assert apply_all([change(1, 9, -1, timed=True), count(10, 20, timed=True)]).on_hand == 20


def test_a_stand_in_time_on_either_side_keeps_the_order_of_handling() -> None:
    # An untimed change (its time is replay's --now or the worker's clock) next to a timed count, and a
    # timed change next to an untimed count: the order in which they came, as before.
    for counted, changed in [(True, False), (False, True)]:
        first = apply_all([count(10, 20, timed=counted), change(1, 10, -1, timed=changed)])
        second = apply_all([change(1, 10, -1, timed=changed), count(10, 20, timed=counted)])
        assert (first.on_hand, second.on_hand) == (19, 20)


def test_a_kept_pair_is_a_timed_change_and_an_untimed_one_is_kept_as_a_triple() -> None:
    # A pair is the layout every version wrote: the records the worker reads carry timestamps.
    stored = StockItem(
        source_id="WH", sku="SKU", on_hand=19, counted_ms=None, since_count=[(START_MS + 10, -1)]
    )
    assert apply_all_from(stored, [count(10, 20, timed=True)]).on_hand == 19
    assert apply_all_from(stored, [count(11, 20, timed=True)]).on_hand == 20
    untimed = apply_all([change(1, 10, -1, timed=False)])
    assert untimed.since_count == [(START_MS + 10, -1, 0)]


def on_hand_in_time_order(spec: list[tuple[str, int, int]], ties_after_the_count: bool) -> int:
    """On hand after the latest count and the changes after it (`ties_after_the_count`: and those of its
    very millisecond), or the sum of the changes when nothing was counted."""
    counts = [(t, q) for kind, t, q in spec if kind == "count"]
    changes = [(t, q) for kind, t, q in spec if kind == "change"]
    if not counts:
        return sum(q for _t, q in changes)
    last_time, last_quantity = max(counts)
    after = [q for t, q in changes if t > last_time or (ties_after_the_count and t == last_time)]
    return last_quantity + sum(after)


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
    expected = on_hand_in_time_order(spec, ties_after_the_count=False)
    assert apply_all(shuffled).on_hand == expected
    assert apply_all(built).on_hand == apply_all(shuffled).on_hand


timed_movements = st.lists(
    st.one_of(
        st.tuples(st.just("count"), st.integers(0, 20), st.integers(0, 50)),
        st.tuples(st.just("change"), st.integers(0, 20), st.integers(-3, 3)),
    ),
    min_size=1,
    max_size=30,
).filter(
    lambda ms: len({t for kind, t, _q in ms if kind == "count"}) == sum(k == "count" for k, _t, _q in ms)
)


@given(timed_movements, st.randoms(use_true_random=False))
def test_timed_movements_of_one_millisecond_end_where_replay_puts_them_whatever_the_arrival_order(
    spec: list[tuple[str, int, int]], rng: Random
) -> None:
    # Timed movements may share a millisecond (counts of one source have instants of their own): on hand
    # ends at the time order, a count before the changes of its millisecond, as replay takes them.
    built = [
        count(t, q, timed=True) if kind == "count" else change(n, t, q, timed=True)
        for n, (kind, t, q) in enumerate(spec)
    ]
    shuffled = list(built)
    rng.shuffle(shuffled)
    expected = on_hand_in_time_order(spec, ties_after_the_count=True)
    assert apply_all(shuffled).on_hand == expected
    in_replay_order = sorted(built, key=lambda m: (m.created_on, m.set_on_hand is None))
    assert apply_all(in_replay_order).on_hand == expected


# -- through the pipeline: the example log's snapshot, order and shipment ------------------------------


def _records(timestamps: list[int | None]) -> list[InboundRecord]:
    """The example log's first three records (a FULL snapshot, an order, its shipment), with these
    timestamps (None: without one)."""
    with (EXAMPLES / "message-log.jsonl").open() as log:
        lines = [json.loads(next(log)) for _ in timestamps]
    for line, stamp in zip(lines, timestamps, strict=True):
        line.pop("timestamp")
        if stamp is not None:
            line["timestamp"] = stamp
    return list(read_records(iter(dumps(line) for line in lines), "log"))


def _on_hand(records: list[InboundRecord], order: list[int], now: datetime | None = None) -> int:
    """Handle the records in log order, then apply the movements of the last two (the snapshot and the
    shipment) in `order`, as the worker's stock side may get them; on hand of the shipped cable."""
    pipeline = Pipeline(load_rules(EXAMPLES / "rules.toml"), partitions=4, now=now)
    made: list[list[Movement]] = []
    for record in records:
        processed = pipeline.process(record)
        pipeline.store(processed)
        made.append(processed.movements)
    pipeline.apply_movements(made[0])
    for index in order:
        pipeline.apply_movements(made[index])
    return pipeline.stores.stock["OCTO-STORE:CD785"].on_hand


def test_a_snapshot_and_a_shipment_of_one_millisecond_end_alike_in_either_order() -> None:
    # The order is created first; the snapshot (20 cables) and the shipment of one cable carry one
    # timestamp, and their movements reach the item in either order: 19 both ways, as replay has it.
    records = _records([1793523780000, 1793523720000, 1793523780000])
    snapshot_then_shipment = [records[1], records[0], records[2]]
    assert _on_hand(snapshot_then_shipment, [1, 2]) == _on_hand(snapshot_then_shipment, [2, 1]) == 19


def test_untimed_records_of_one_instant_keep_the_order_of_the_log() -> None:
    # Replay with --now: every record without a timestamp has that instant, and the log says the order.
    records = _records([None, None, None])
    now = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    snapshot_then_shipment = [records[1], records[0], records[2]]
    assert _on_hand(snapshot_then_shipment, [1, 2], now) == 19
    assert _on_hand(snapshot_then_shipment, [2, 1], now) == 20
