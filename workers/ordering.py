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
from typing import Any, TypeVar

T = TypeVar("T")
P = TypeVar("P")


def merge_by_timestamp(
    partitions: Iterable[tuple[P, Sequence[T]]], timestamp: Callable[[T], float | int | None]
) -> Iterator[tuple[P, T]]:
    """Yield every record once, earliest head first; ties and missing timestamps keep the order in
    which the partitions were given. Each partition's own order is kept whatever its timestamps."""
    heads: list[tuple[float, int, int]] = []
    sources: list[tuple[P, Sequence[T]]] = []
    for index, (partition, records) in enumerate(partitions):
        sources.append((partition, records))
        if records:
            heads.append((_stamp(timestamp(records[0])), index, 0))
    heapq.heapify(heads)
    while heads:
        _, index, position = heapq.heappop(heads)
        partition, records = sources[index]
        yield partition, records[position]
        position += 1
        if position < len(records):
            heapq.heappush(heads, (_stamp(timestamp(records[position])), index, position))


def _stamp(value: float | int | None) -> float:
    return float(value) if value is not None and value >= 0 else float("-inf")


class TimestampOrder:
    """faust's consumer scheduler (app setting `ConsumerScheduler`): what one fetch returned, for all
    assigned partitions, merged by record timestamp instead of round-robin per topic."""

    def iterate(self, records: Mapping[Any, list[Any]]) -> Iterator[tuple[Any, Any]]:
        return merge_by_timestamp(records.items(), _record_timestamp)


def _record_timestamp(record: Any) -> int | None:
    value = getattr(record, "timestamp", None)
    return value if isinstance(value, int) else None
