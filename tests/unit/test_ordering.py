"""The consumer's merge of fetched partitions: earliest timestamp first, a partition never reordered."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from domain import names
from workers.engine.ordering import (
    ORIGIN_TOPIC,
    TimestampOrder,
    lifecycle_ranks,
    merge_by_timestamp,
    ties_in_lifecycle_order,
)

partitions = st.dictionaries(
    st.text("abc", min_size=1, max_size=2),
    st.lists(st.integers(0, 20), max_size=8),
    max_size=5,
)


@given(partitions)
def test_every_record_once_and_each_partition_in_its_own_order(spec: dict[str, list[int]]) -> None:
    given_order = {p: [(p, i, ts) for i, ts in enumerate(stamps)] for p, stamps in spec.items()}
    merged = [record for _, record in merge_by_timestamp(given_order.items(), lambda r: r[2])]
    assert sorted(merged) == sorted(r for rs in given_order.values() for r in rs)
    for p, records in given_order.items():
        assert [r for r in merged if r[0] == p] == records


@given(partitions)
def test_partitions_in_timestamp_order_merge_into_timestamp_order(spec: dict[str, list[int]]) -> None:
    ordered = {p: [(ts, p) for ts in sorted(stamps)] for p, stamps in spec.items()}
    merged = [record for _, record in merge_by_timestamp(ordered.items(), lambda r: r[0])]
    assert [ts for ts, _ in merged] == sorted(ts for ts, _ in merged)


def test_within_one_millisecond_an_order_s_life_decides() -> None:
    ranks = lifecycle_ranks(lambda name: "x." + name)
    fetched = {
        "x." + names.RETURN_RECEIVED: ["received"],
        "x." + names.REFUND_CREATE: ["refund"],
        "x." + names.SHIPMENT_DONE: ["shipped"],
        "x." + names.ORDER_CREATE: ["created"],
        "x." + names.RETURN_AUTHORIZE: ["authorized"],
    }
    merged = [r for _, r in merge_by_timestamp(fetched.items(), lambda _r: 1000, lambda t, _r: ranks[t])]
    assert merged == ["created", "shipped", "authorized", "received", "refund"]


def test_records_without_a_timestamp_come_first_in_their_given_order() -> None:
    fetched = {"a": [(5, "a5")], "b": [(None, "b-")], "c": [(-1, "c-")]}
    merged = [r[1] for _, r in merge_by_timestamp(fetched.items(), lambda r: r[0])]
    assert merged == ["b-", "c-", "a5"]


def test_replay_takes_a_run_of_equal_timestamps_in_lifecycle_order_and_nothing_else() -> None:
    ranks = {"ship": 2, "create": 0, "return": 6}
    log = [("return", 1), ("ship", 5), ("create", 5), ("return", None), ("create", 7), ("ship", 9)]
    ordered = list(ties_in_lifecycle_order(log, lambda r: r[1], lambda r: ranks[r[0]]))
    assert ordered == [
        ("return", 1),
        ("create", 5),
        ("ship", 5),
        ("return", None),
        ("create", 7),
        ("ship", 9),
    ]


def test_a_forwarded_record_ranks_as_the_topic_its_producer_wrote_it_to() -> None:
    @dataclass(frozen=True)
    class TP:
        topic: str

    @dataclass
    class Record:
        timestamp: int
        headers: list[tuple[str, bytes]]
        name: str

    scheduler = TimestampOrder.with_ranks(lifecycle_ranks(lambda name: name))()
    internal = TP("oms-postsales.inbound")

    def forwarded(name: str, topic: str) -> Record:
        return Record(1000, [("message_id", b"x"), (ORIGIN_TOPIC, topic.encode())], name)

    fetched = {
        TP("p0"): [forwarded("shipped", names.SHIPMENT_DONE)],
        TP("p1"): [forwarded("stock", names.STOCK_UPDATE)],
        TP("p2"): [forwarded("created", names.ORDER_CREATE)],
    }
    assert [r.name for _, r in scheduler.iterate(fetched)] == ["created", "stock", "shipped"]
    assert internal.topic not in TimestampOrder.ranks
