"""When the intake may take a fetched upstream record: once no other upstream partition can still hold
an earlier one that is already on the broker.

The consumer fetches partitions side by side, but not in step. A partition whose fetched records the
worker has not taken yet is left out of the next fetch requests (aiokafka, like the Java client, only
asks again for a partition once its buffer is drained; after `fetch_backoff` it asks for the others).
So under load a record written later on another topic arrives one fetch earlier than a record written
before it, and the last high watermark known for the left-out partition is as old as its last fetch:
by Kafka Streams' rule alone (KIP-695: take the earliest head once every partition has records
buffered or is known to be caught up) that partition looks caught up, and the later record goes
first. `bench/spikes/fetch_split.py` measures it: with a consumer that takes 150 ms a batch, 63 of
500 pairs written one after the other (each awaited) on two topics came in the other order; the known
lag explained none of them, the age of the partitions' last fetch all 63.

So a record fetched at time f goes only when every other upstream partition of this worker either has
records buffered here, or was fetched at or after f with nothing more to take (no records fetched and
not taken, no known lag). A partition that stays behind longer than `max_lag_wait` (its leader is
away, it is paused) stops holding the others back until it catches up, and every record taken
meanwhile is counted: the order of those records is not promised.

`grace` is a wait for records not on the broker yet: a record is held until `grace` after its own
timestamp (and never longer than `grace` after it was fetched), so that a record written in the same
moment on another topic joins the merge and a run of one millisecond goes in lifecycle order, as
`replay` takes it. An old record (a backlog, a backfill) is past its grace when fetched and waits for
nothing. Kafka Streams' `max.task.idle.ms` waits instead whenever an input partition has just run
empty, which holds a lone record back for nothing and does not catch a record written one
millisecond after a partition's last fetch.

Nothing here commits anything: a held record has not reached faust's stream, so faust's offsets stay
below it until it is handed on and handled.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

# How often the consumer asks again while records are held: a wait ends when a fetch response
# arrives, which the consumer's `getmany` does not report when it carried no records.
HOLD_POLL_SECONDS = 0.005


class FetchState(Protocol):
    """What the consumer knows of its upstream partitions (workers/kafka/fetch_view.py)."""

    def assigned(self) -> AbstractSet[Hashable]:
        """This worker's upstream partitions."""
        ...

    def status(self, tp: Hashable) -> tuple[int | None, bool]:
        """When the partition's last fetch response came (ms, None: never) and whether it is behind:
        records fetched and not taken yet, or a known lag."""
        ...

    def deliverable(self, tp: Hashable) -> bool:
        """Whether faust hands on a record of this partition now (it drops those of paused ones)."""
        ...


class FetchGate:
    """Holds fetched upstream records and hands them on in timestamp order once ready (above)."""

    def __init__(
        self,
        state: FetchState,
        timestamp: Callable[[Any], int | None],
        rank: Callable[[Hashable, Any], int],
        *,
        clock: Callable[[], float],
        wall_ms: Callable[[], float] = lambda: 0.0,
        grace_ms: int = 0,
        max_lag_wait: float = 5.0,
        on_lagging: Callable[[], None] = lambda: None,
        on_wait: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        """`on_lagging`: a record is handed on while a partition is behind past `max_lag_wait`;
        `on_wait`: a wait begins (reason: behind, stale, grace, paused). `clock` (seconds) times the
        lag wait; `wall_ms` is the wall clock in milliseconds, the time record timestamps and fetch
        times are in."""
        self._state = state
        self._timestamp = timestamp
        self._rank = rank
        self._clock = clock
        self._wall_ms = wall_ms
        self._grace_ms = grace_ms
        self._max_lag_wait = max_lag_wait
        self._held: dict[Hashable, deque[tuple[int, Any]]] = {}
        self._heap: list[tuple[float, int, int, Hashable]] = []
        self._order = 0  # ties of timestamp and rank go in the order records came
        self._behind_since: dict[Hashable, float] = {}  # when a partition first held the others back
        self._waiting: str | None = None  # the reason of the wait in progress, counted once
        self._on_lagging = on_lagging
        self._on_wait = on_wait

    @property
    def holding(self) -> bool:
        return bool(self._heap)

    def forget(self, tps: Iterable[Hashable] | None = None) -> None:
        """Drop held records (all, or those of some partitions): the consumer seeks or rebalances and
        fetches them again from the committed offsets."""
        chosen = set(self._held) if tps is None else set(tps) & set(self._held)
        if not chosen:
            return
        for tp in chosen:
            del self._held[tp]
        self._heap = [entry for entry in self._heap if entry[3] not in chosen]
        heapq.heapify(self._heap)

    def take(self, tp: Hashable, records: Iterable[Any]) -> None:
        """Records one fetch returned for a partition, in offset order."""
        fetched_at = self._state.status(tp)[0] or 0
        queue = self._held.get(tp)
        if queue is None:
            queue = self._held[tp] = deque()
        was_empty = not queue
        queue.extend((fetched_at, record) for record in records)
        if was_empty and queue:
            self._push_head(tp)
            self._behind_since.pop(tp, None)

    def release(self) -> Iterator[tuple[Hashable, Any]]:
        """Every held record that may go now, earliest first; the rest stay held."""
        if not self._heap:
            return
        now_ms = self._wall_ms() if self._grace_ms else 0.0
        if self._grace_ms and not self._past_grace(now_ms):
            return  # before reading every partition's state: the head is not due anyway
        assigned = self._state.assigned()
        gone = [tp for tp in self._held if tp not in assigned]
        if gone:
            self.forget(gone)
        empty = {tp: self._state.status(tp) for tp in assigned if not self._held.get(tp)}
        oldest = min((fetched_at or 0 for fetched_at, _ in empty.values()), default=None)
        behind = any(lagging for _, lagging in empty.values())
        while self._heap:
            if self._grace_ms and not self._past_grace(now_ms):
                return
            tp = self._heap[0][3]
            fetched_at, record = self._held[tp][0]
            fast = not behind and (oldest is None or oldest >= fetched_at)
            if not self._state.deliverable(tp):
                self._wait("paused")
                return
            if fast:
                self._behind_since.clear()
            elif not self._ready(empty, fetched_at):
                return
            self._waiting = None
            heapq.heappop(self._heap)
            queue = self._held[tp]
            queue.popleft()
            if queue:
                self._push_head(tp)
            else:
                status = self._state.status(tp)
                empty[tp] = status
                last_fetch = status[0] or 0
                oldest = last_fetch if oldest is None else min(oldest, last_fetch)
                behind = behind or status[1]
            yield tp, record

    def _ready(self, empty: dict[Hashable, tuple[int | None, bool]], fetched_at: int) -> bool:
        """The slow path: which empty partitions hold the record back, and for how long yet."""
        now = self._clock()
        lagging = False
        for tp, (last_fetch, is_behind) in empty.items():
            stale = last_fetch is None or last_fetch < fetched_at
            if is_behind or stale:
                since = self._behind_since.setdefault(tp, now)
                if now - since < self._max_lag_wait:
                    self._wait("behind" if is_behind else "stale")
                    return False
                lagging = True
                continue
            self._behind_since.pop(tp, None)
        if lagging:
            self._on_lagging()
        return True

    def _past_grace(self, now_ms: float) -> bool:
        stamp, _rank, _order, tp = self._heap[0]
        fetched_at = self._held[tp][0][0]
        if now_ms < min(stamp, fetched_at) + self._grace_ms:
            self._wait("grace")
            return False
        return True

    def _wait(self, reason: str) -> None:
        if self._waiting != reason:
            self._waiting = reason
            self._on_wait(reason)

    def _push_head(self, tp: Hashable) -> None:
        record = self._held[tp][0][1]
        stamp = self._timestamp(record)
        self._order += 1
        key = float(stamp) if stamp is not None and stamp >= 0 else float("-inf")
        heapq.heappush(self._heap, (key, self._rank(tp, record), self._order, tp))
