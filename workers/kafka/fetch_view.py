"""What faust's aiokafka consumer knows of its upstream partitions' fetches, for the intake's gate
(workers/engine/fetch_gate.py).

aiokafka keeps, per assigned partition, the time its last fetch response came (`timestamp`, ms), the
high watermark that response carried and the position the application has taken up to; records
fetched and not taken yet sit in the fetcher's buffer. The consumer runs in faust's consumer thread:
these are plain attribute reads of values that thread replaces whole, taken between two fetches.
A value that cannot be read (the consumer not started, a partition just revoked) reads as "behind,
never fetched", which holds records back; the gate's `max_lag_wait` bounds that.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

_UNKNOWN: tuple[int | None, bool] = (None, True)


class FetchView:
    """`FetchState` over a faust aiokafka consumer (`SeekFirstConsumer`)."""

    def __init__(self, consumer: Any, upstream: frozenset[str]) -> None:
        self._consumer = consumer
        self._upstream = upstream
        self._assigned: tuple[Any, frozenset[Any]] = (object(), frozenset())

    def _aiokafka(self) -> Any:
        thread = getattr(self._consumer, "_thread", None)
        return getattr(thread, "_consumer", None)

    def assigned(self) -> frozenset[Any]:
        client = self._aiokafka()
        if client is None:
            return frozenset()
        assignment = client._subscription.subscription
        assignment = getattr(assignment, "assignment", None)
        if assignment is None:
            return frozenset()
        # The assignment object is replaced on every rebalance: filter its partitions once per object.
        if self._assigned[0] is not assignment:
            tps = frozenset(tp for tp in assignment.tps if tp.topic in self._upstream)
            self._assigned = (assignment, tps)
        return self._assigned[1]

    def status(self, tp: Hashable) -> tuple[int | None, bool]:
        client = self._aiokafka()
        if client is None:
            return _UNKNOWN
        assignment = getattr(client._subscription.subscription, "assignment", None)
        state = assignment.state_value(tp) if assignment is not None else None
        if state is None:
            return _UNKNOWN
        fetched_at = state.timestamp
        if tp in client._fetcher._records:
            return fetched_at, True
        position = state._position
        highwater = state.highwater
        behind = highwater is not None and position is not None and highwater > position
        return fetched_at, behind

    def deliverable(self, tp: Hashable) -> bool:
        consumer = self._consumer
        active = consumer._active_partitions
        return (active is not None and tp in active) or tp in consumer._buffered_partitions
