"""The order in which the worker takes records from several topics: by record timestamp.

Kafka keeps order within a partition only. An upstream writes an order's messages to one topic per
message name, in the order they happened; the consumer fetches those topics' partitions side by side,
and faust would hand them on round-robin per topic, so a return could come before the shipment it
depends on. Like Kafka Streams with co-partitioned inputs, the worker merges what it fetched by
record timestamp, always taking the earliest head, and never reorders records within one partition
(a k-way merge of the partitions' own sequences). Whatever arrives later than that (a partition
lagging behind the others by more than one fetch) is covered by the holds of the domain: a message
whose precondition is not met yet waits for the channel's reorder window.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from domain import names

# The header the intake adds to a forwarded record: the topic its producer wrote it to.
ORIGIN_TOPIC = "oms.origin.topic"
# Every record the worker writes to its internal topics carries its message time here, in
# milliseconds since the epoch ("none": its producer gave it none). The record's own timestamp is the
# moment the worker wrote it: what Kafka's time retention and timestamp limits count by, so neither
# CreateTime nor LogAppendTime on those topics changes a decision.
TIME_HEADER = "oms.time"
NO_TIME = "none"

T = TypeVar("T")
P = TypeVar("P")

# Producers that do not wait between sends write several records in the same millisecond (more than
# half of one story's consecutive records in a measured back-to-back run). Within one millisecond the
# records are taken in the order of an order's life: created, stock, shipped, cancelled, returned,
# received, refunded, released or cancelled.
LIFECYCLE: tuple[str, ...] = (
    names.ORDER_CREATE,
    names.STOCK_UPDATE,
    names.SHIPMENT_DONE,
    names.ORDER_CANCEL_LINE,
    names.ORDER_CANCEL,
    names.RETURN_REQUEST,
    names.RETURN_AUTHORIZE,
    names.RESHIPMENT_CREATE,
    names.RESHIPMENT_CREATE_SEED,
    names.EXCHANGE_CREATE,
    names.RETURN_UPDATE,
    names.RETURN_RECEIVED,
    names.RETURN_CANCEL,
    names.APPEASEMENT_CREATE,
    names.REFUND_CREATE,
    names.REFUND_RELEASE,
    names.REFUND_CANCEL,
)


def lifecycle_ranks(topic_for: Callable[[str], str]) -> dict[str, int]:
    """Rank of each inbound topic (as named by the settings) in an order's life."""
    ranks: dict[str, int] = {}
    for rank, name in enumerate(LIFECYCLE):
        ranks.setdefault(topic_for(name), rank)
    return ranks


def merge_by_timestamp(
    partitions: Iterable[tuple[P, Sequence[T]]],
    timestamp: Callable[[T], float | int | None],
    rank: Callable[[P, T], int] = lambda _partition, _record: 0,
) -> Iterator[tuple[P, T]]:
    """Yield every record once, earliest head first; equal timestamps go by the partition's rank,
    then by the order in which the partitions were given. Each partition's own order is kept whatever
    its timestamps."""
    heads: list[tuple[float, int, int, int]] = []
    sources: list[tuple[P, Sequence[T]]] = []

    def head(index: int, position: int) -> tuple[float, int, int, int]:
        partition, records = sources[index]
        record = records[position]
        return _stamp(timestamp(record)), rank(partition, record), index, position

    for index, (partition, records) in enumerate(partitions):
        sources.append((partition, records))
        if records:
            heads.append(head(index, 0))
    heapq.heapify(heads)
    while heads:
        _, _, index, position = heapq.heappop(heads)
        partition, records = sources[index]
        yield partition, records[position]
        if position + 1 < len(records):
            heapq.heappush(heads, head(index, position + 1))


def ties_in_lifecycle_order(
    records: Iterable[T], timestamp: Callable[[T], object], rank: Callable[[T], int]
) -> Iterator[T]:
    """replay's side of the same rule: consecutive records with one and the same timestamp are taken
    in lifecycle order (stable), as the live merge takes them; records without a timestamp, or with
    different ones, stay in the order of the log."""
    run: list[T] = []
    for record in records:
        if run and (timestamp(record) is None or timestamp(record) != timestamp(run[0])):
            yield from sorted(run, key=rank) if len(run) > 1 else run
            run = []
        if timestamp(record) is None:
            yield record
        else:
            run.append(record)
    yield from sorted(run, key=rank) if len(run) > 1 else run


def _stamp(value: float | int | None) -> float:
    return float(value) if value is not None and value >= 0 else float("-inf")


class TimestampOrder:
    """faust's consumer scheduler (app setting `ConsumerScheduler`): what one fetch returned, for all
    assigned partitions, merged by record timestamp instead of round-robin per topic. A record the
    intake forwarded ranks as the topic its producer wrote it to (its origin header)."""

    ranks: ClassVar[Mapping[str, int]] = {}

    def iterate(self, records: Mapping[Any, list[Any]]) -> Iterator[tuple[Any, Any]]:
        return merge_by_timestamp(records.items(), _record_timestamp, self._rank)

    def _rank(self, tp: Any, record: Any) -> int:
        ranks = self.ranks
        if tp.topic in ranks:
            return ranks[tp.topic]
        for name, value in getattr(record, "headers", None) or ():
            if name == ORIGIN_TOPIC:
                return ranks.get(value.decode("utf-8", "replace"), 0)
        return 0

    @classmethod
    def with_ranks(cls, ranks: Mapping[str, int]) -> type[TimestampOrder]:
        """faust builds its scheduler with no arguments: a subclass carries the topics' ranks."""
        return type("TimestampOrderWithRanks", (cls,), {"ranks": dict(ranks)})


def _record_timestamp(record: Any) -> int | None:
    """The message time of a fetched record: the time header of an internal record, else the record's
    own timestamp (an upstream record: its producer's CreateTime)."""
    for name, value in getattr(record, "headers", None) or ():
        if name == TIME_HEADER:
            return header_millis(value)
    value = getattr(record, "timestamp", None)
    return value if isinstance(value, int) and value >= 0 else None


def header_millis(value: bytes | str) -> int | None:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return int(text) if text.isdigit() else None
