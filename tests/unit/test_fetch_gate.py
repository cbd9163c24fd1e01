"""The intake's fetch gate: a fetched upstream record goes only once no other upstream partition can
still hold an earlier record already on the broker."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.engine.fetch_gate import FetchGate


@dataclass(frozen=True)
class Rec:
    name: str
    timestamp: int


class Fetches:
    """A consumer's fetch state, set by the test: last fetch time and 'behind' per partition."""

    def __init__(self, tps: Iterable[str]) -> None:
        self.last: dict[Hashable, int | None] = dict.fromkeys(tps)
        self.behind: dict[Hashable, bool] = dict.fromkeys(self.last, False)
        self.paused: set[Hashable] = set()

    def assigned(self) -> set[Hashable]:
        return set(self.last)

    def status(self, tp: Hashable) -> tuple[int | None, bool]:
        return self.last[tp], self.behind[tp]

    def deliverable(self, tp: Hashable) -> bool:
        return tp not in self.paused

    def fetched(self, at: int, **records: list[Rec]) -> dict[str, list[Rec]]:
        """A fetch response at `at` for every partition: those named carry records."""
        for tp in self.last:
            self.last[tp] = at
        return records


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gate_over(fetches: Fetches, clock: Clock | None = None, **options: float) -> tuple[FetchGate, list[str]]:
    events: list[str] = []
    gate = FetchGate(
        fetches,
        lambda record: record.timestamp,
        lambda _tp, _record: 0,
        clock=clock or Clock(),
        on_lagging=lambda: events.append("lagging"),
        on_wait=events.append,
        **options,
    )
    return gate, events


def take(gate: FetchGate, fetched: dict[str, list[Rec]]) -> list[str]:
    for tp, records in fetched.items():
        gate.take(tp, records)
    return [record.name for _tp, record in gate.release()]


def test_a_partition_not_fetched_since_holds_a_later_fetch_back_until_it_is():
    # The split the consumer makes under load: X had records in the fetch at 100, which the worker
    # had not taken when the fetch at 200 went out without X; Y's B (written after X's A) came in it.
    fetches = Fetches(["X", "Y"])
    gate, events = gate_over(fetches)
    assert take(gate, fetches.fetched(100, X=[Rec("x-old", 10)])) == ["x-old"]
    fetches.last["Y"] = 200  # only Y was in the fetch at 200
    assert take(gate, {"Y": [Rec("B", 30)]}) == []
    assert events == ["stale"]
    # X's next fetch brings A, written before B: A goes first.
    assert take(gate, fetches.fetched(300, X=[Rec("A", 20)])) == ["A", "B"]


def test_without_the_gate_the_same_fetches_go_in_the_order_they_came():
    # What the merge alone did with the fetches above: B before A (the bug this gate fixes).
    from workers.engine.ordering import merge_by_timestamp

    batches = [{"X": [Rec("x-old", 10)]}, {"Y": [Rec("B", 30)]}, {"X": [Rec("A", 20)]}]
    taken = [
        record.name
        for batch in batches
        for _tp, record in merge_by_timestamp(batch.items(), lambda record: record.timestamp)
    ]
    assert taken == ["x-old", "B", "A"]


def test_records_fetched_but_not_taken_hold_the_others_back():
    fetches = Fetches(["X", "Y"])
    gate, events = gate_over(fetches)
    fetches.fetched(100)
    fetches.behind["X"] = True  # X's records sit in the consumer's buffer, or its high watermark is ahead
    assert take(gate, {"Y": [Rec("B", 30)]}) == []
    assert events == ["behind"]
    fetches.behind["X"] = False
    assert take(gate, {"X": [Rec("A", 20)]}) == ["A", "B"]


def test_partitions_fetched_together_merge_by_timestamp_and_keep_their_own_order():
    fetches = Fetches(["X", "Y", "Z"])
    gate, events = gate_over(fetches)
    fetched = fetches.fetched(100, X=[Rec("x1", 5), Rec("x2", 1)], Y=[Rec("y1", 3)])
    # x2 has an earlier timestamp but comes after x1 in its partition: a partition is never reordered.
    assert take(gate, fetched) == ["y1", "x1", "x2"]
    assert events == []


def test_a_partition_behind_longer_than_the_limit_stops_holding_back_and_what_goes_is_counted():
    fetches = Fetches(["X", "Y"])
    clock = Clock()
    gate, events = gate_over(fetches, clock, max_lag_wait=5.0)
    fetches.fetched(100)
    fetches.behind["X"] = True
    assert take(gate, {"Y": [Rec("B1", 30)]}) == []
    clock.now = 4.9
    assert list(gate.release()) == []
    clock.now = 5.0
    assert [record.name for _tp, record in gate.release()] == ["B1"]
    assert events == ["behind", "lagging"]
    # Once X catches up, it holds back again when it falls behind.
    fetches.behind["X"] = False
    assert take(gate, fetches.fetched(200, Y=[Rec("B2", 40)])) == ["B2"]
    fetches.behind["X"] = True
    assert take(gate, {"Y": [Rec("B3", 50)]}) == []


def test_a_fresh_record_waits_its_grace_for_a_record_written_in_the_same_millisecond():
    # An upstream refund and an appeasement written in one millisecond, the appeasement just after the
    # refund was fetched: within the grace both are merged, and the tie goes in lifecycle order.
    fetches = Fetches(["refunds", "appeasements"])
    wall = Clock()
    ranks = {"appeasements": 13, "refunds": 14}
    gate = FetchGate(
        fetches,
        lambda record: record.timestamp,
        lambda tp, _record: ranks[str(tp)],
        clock=Clock(),
        wall_ms=wall,
        grace_ms=5,
    )
    wall.now = 1001
    assert take(gate, fetches.fetched(1001, refunds=[Rec("refund", 1000)])) == []
    wall.now = 1002
    assert take(gate, fetches.fetched(1002, appeasements=[Rec("appeasement", 1000)])) == []
    wall.now = 1005
    assert [record.name for _tp, record in gate.release()] == ["appeasement", "refund"]


def test_an_old_record_waits_for_no_grace_and_a_record_from_the_future_at_most_its_grace():
    fetches = Fetches(["X", "Y"])
    wall = Clock()
    gate = FetchGate(
        fetches, lambda record: record.timestamp, lambda _tp, _r: 0, clock=Clock(), wall_ms=wall, grace_ms=5
    )
    wall.now = 1_000_000
    assert take(gate, fetches.fetched(1_000_000, X=[Rec("backlog", 10)])) == ["backlog"]
    # A producer whose clock runs ahead: held 5 ms after the fetch, not until its timestamp.
    assert take(gate, fetches.fetched(1_000_000, Y=[Rec("ahead", 2_000_000)])) == []
    wall.now = 1_000_005
    assert [record.name for _tp, record in gate.release()] == ["ahead"]


def test_with_no_grace_a_record_on_caught_up_partitions_goes_at_once():
    fetches = Fetches(["X", "Y"])
    gate, events = gate_over(fetches)
    assert take(gate, fetches.fetched(100, Y=[Rec("B", 30)])) == ["B"]
    assert events == []


def test_a_paused_partition_keeps_its_records_until_faust_takes_them_again():
    fetches = Fetches(["X", "Y"])
    gate, events = gate_over(fetches)
    fetches.paused.add("X")
    assert take(gate, fetches.fetched(100, X=[Rec("A", 20)], Y=[Rec("B", 30)])) == []
    assert events == ["paused"]
    fetches.paused.clear()
    assert [record.name for _tp, record in gate.release()] == ["A", "B"]


def test_forgotten_and_revoked_partitions_lose_their_held_records():
    fetches = Fetches(["X", "Y"])
    gate, _events = gate_over(fetches)
    fetches.fetched(100)
    fetches.behind["Y"] = True
    assert take(gate, {"X": [Rec("A", 20)]}) == []
    gate.forget(["X"])
    assert not gate.holding
    assert take(gate, {"X": [Rec("A", 20)]}) == []
    del fetches.last["X"], fetches.behind["X"]  # X revoked
    assert list(gate.release()) == []
    assert not gate.holding


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["X", "Y", "Z"]),  # the partition a fetch response brings records for
            st.integers(min_value=0, max_value=3),  # how many
            st.sets(st.sampled_from(["X", "Y", "Z"])),  # the partitions this response covers
        ),
        max_size=25,
    )
)
def test_every_record_goes_once_in_partition_order_and_never_ahead_of_a_stale_partition(responses):
    fetches = Fetches(["X", "Y", "Z"])
    gate, _events = gate_over(fetches)
    written: dict[str, list[str]] = {"X": [], "Y": [], "Z": []}
    taken: list[tuple[str, str]] = []
    fetched_at: dict[str, int] = {}
    for at, (tp, count, covered) in enumerate(responses, start=1):
        for other in covered | {tp}:
            fetches.last[other] = at
        records = [Rec(f"{tp}{len(written[tp]) + i}", at) for i in range(count)]
        written[tp].extend(record.name for record in records)
        for record in records:
            fetched_at[record.name] = at
        gate.take(tp, records)
        for got_tp, record in gate.release():
            # Every partition with nothing held was fetched at or after this record's fetch.
            empty = [p for p in "XYZ" if p != got_tp and not gate._held.get(p)]
            assert all((fetches.last[p] or 0) >= fetched_at[record.name] for p in empty)
            taken.append((str(got_tp), record.name))
    # A last response covering every partition lets everything still held go.
    fetches.fetched(len(responses) + 1)
    taken.extend((str(tp), record.name) for tp, record in gate.release())
    assert sorted(name for _tp, name in taken) == sorted(name for names in written.values() for name in names)
    for tp, names in written.items():
        assert [name for got, name in taken if got == tp] == names
