"""The order in which the worker takes records from several topics: by record timestamp.

Kafka keeps order within a partition only. An upstream writes an order's messages to one topic per
message name, in the order they happened; the consumer fetches those topics' partitions side by side,
and faust would hand them on round-robin per topic, so a return could come before the shipment it
depends on. Like Kafka Streams with co-partitioned inputs, the worker merges what it fetched by
record timestamp, always taking the earliest head, and never reorders records within one partition
(a k-way merge of the partitions' own sequences). Upstream records first wait in the fetch gate
(workers/engine/fetch_gate.py) until no other upstream partition can still hold an earlier record
already on the broker. What is not on the broker yet, or read by another worker, is covered by the
holds of the domain: a message whose precondition is not met yet waits for the channel's reorder
window.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, ClassVar, TypeVar

from domain import names
from workers.engine.fetch_gate import HOLD_POLL_SECONDS, FetchGate, FetchState

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
    intake forwarded ranks as the topic its producer wrote it to (its origin header).

    Upstream records (the intake's topics) go through a `FetchGate` once the consumer attaches what
    it knows of its fetches: held until no other upstream partition can still hold an earlier record
    already on the broker (workers/engine/fetch_gate.py)."""

    ranks: ClassVar[Mapping[str, int]] = {}
    upstream: ClassVar[frozenset[str]] = frozenset()
    grace_ms: ClassVar[int] = 0
    max_lag_wait: ClassVar[float] = 5.0

    def __init__(self) -> None:
        self.gate: FetchGate | None = None

    def attach(
        self,
        state: FetchState,
        *,
        clock: Callable[[], float],
        wall_ms: Callable[[], float] = lambda: 0.0,
        on_lagging: Callable[[], None] = lambda: None,
        on_wait: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        """Called by the consumer (workers/kafka/faust_fixes.py) with its view of the fetches."""
        if self.upstream:
            self.gate = FetchGate(
                state,
                _record_timestamp,
                self._rank,
                clock=clock,
                wall_ms=wall_ms,
                grace_ms=self.grace_ms,
                max_lag_wait=self.max_lag_wait,
                on_lagging=on_lagging,
                on_wait=on_wait,
            )

    def iterate(self, records: Mapping[Any, list[Any]]) -> Iterator[tuple[Any, Any]]:
        gate = self.gate
        if gate is None:
            return merge_by_timestamp(records.items(), _record_timestamp, self._rank)
        upstream = self.upstream
        others: list[tuple[Any, list[Any]]] = []
        for tp, fetched in records.items():
            if tp.topic in upstream:
                gate.take(tp, fetched)
            else:
                others.append((tp, fetched))
        return chain(merge_by_timestamp(others, _record_timestamp, self._rank), gate.release())

    def poll_timeout(self, timeout: float) -> float:
        """How long the consumer's next fetch may wait: briefly while the gate holds records."""
        if self.gate is not None and self.gate.holding:
            return min(timeout, HOLD_POLL_SECONDS)
        return timeout

    def forget(self, tps: Iterable[Any] | None = None) -> None:
        if self.gate is not None:
            self.gate.forget(tps)

    def _rank(self, tp: Any, record: Any) -> int:
        ranks = self.ranks
        if tp.topic in ranks:
            return ranks[tp.topic]
        for name, value in getattr(record, "headers", None) or ():
            if name == ORIGIN_TOPIC:
                return ranks.get(value.decode("utf-8", "replace"), 0)
        return 0

    @classmethod
    def with_ranks(
        cls,
        ranks: Mapping[str, int],
        *,
        upstream: Iterable[str] = (),
        grace_ms: int = 0,
        max_lag_wait: float = 5.0,
    ) -> type[TimestampOrder]:
        """faust builds its scheduler with no arguments: a subclass carries the topics' ranks, the
        upstream topics whose records wait for the gate, and its waits (seconds)."""
        attributes = {
            "ranks": dict(ranks),
            "upstream": frozenset(upstream),
            "grace_ms": grace_ms,
            "max_lag_wait": max_lag_wait,
        }
        return type("TimestampOrderWithRanks", (cls,), attributes)


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
