"""Which orders may leave state when, per order partition, so that the worker sweeps them on message time
without reading every order.

The `retention-index` table holds, per partition `p`:
- `p<p>:<hour>`: the keys of the orders whose retention (plus the sweep's grace) ends in that hour, as of
  their last change (an order changed since is checked again and left in state; its later change put it
  in a later hour);
- `p<p>`: the next hour to sweep;
- `n<p>`: how many orders the partition keeps (those created by a version with this table).

A batch adds the orders it changed, then sweeps the hours that ended before the partition's latest record
timestamp. An hour with no bucket costs one table read, so a worker that was stopped for long, or a
backlog whose message time runs ahead of its batches, catches up in one batch: up to
`MAX_HOURS_PER_BATCH` (a year; ~0.1-0.2 s of reads when all are empty). The deletions go through the
batch's stores, so they are written, settled and committed with the batch; the index is written after
them, like the waiting list: a crash in between leaves an hour to sweep again, never an order kept by
mistake.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.engine.pipeline import Pipeline, Processed
from workers.kafka.overlay import BatchStores, Overlay

HOUR = timedelta(hours=1)
MAX_HOURS_PER_BATCH = 366 * 24
_FORMAT = "%Y-%m-%dT%H"


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_FORMAT)


def _start(hour: str) -> datetime:
    return datetime.strptime(hour, _FORMAT).replace(tzinfo=UTC)


class RetentionIndex:
    def __init__(self, table: MutableMapping[str, list[str]]) -> None:
        self._table = table

    def batch(self, events: Mapping[int, Any]) -> RetentionBatch:
        """This batch's view of the index; `events`: an event of each partition the batch handled (a
        write goes to the changelog partition of the event it is attributed to)."""
        return RetentionBatch(self._table, events)


class RetentionBatch:
    def __init__(self, table: MutableMapping[str, list[str]], events: Mapping[int, Any]) -> None:
        self._events = events
        self._current: Any = None
        self._view: Overlay[list[str]] = Overlay(table, lambda: self._current)
        self._counted: set[int] = set()

    def _at(self, partition: int) -> None:
        self._current = self._events[partition]

    def _cursor(self, partition: int) -> str | None:
        found = self._view.get(f"p{partition}")
        return found[0] if found else None

    def _count(self, partition: int, delta: int) -> None:
        self._counted.add(partition)
        if delta:
            found = self._view.get(f"n{partition}")
            self._view[f"n{partition}"] = [str(max(0, int(found[0]) + delta) if found else max(0, delta))]

    def note(self, pipeline: Pipeline, handled: Iterable[tuple[int, Processed]]) -> int:
        """Index the orders the batch changed and count those it brought in or let go (on their next
        message); returns how many it let go."""
        forgotten = 0
        added: dict[tuple[int, str], set[str]] = {}
        for partition, processed in handled:
            forgotten += processed.forgotten
            self._at(partition)
            self._count(partition, processed.created - processed.forgotten)
            for order in processed.changes.orders.values():
                moment = pipeline.forget_at(order)
                if moment is not None:
                    added.setdefault((partition, _hour(moment)), set()).add(order.key)
        for (partition, hour), keys in sorted(added.items()):
            self._at(partition)
            bucket = f"p{partition}:{hour}"
            existing = self._view.get(bucket) or []
            known = set(existing)
            new = sorted(key for key in keys if key not in known)
            if new:
                self._view[bucket] = [*existing, *new]
            cursor = self._cursor(partition)
            if cursor is None or hour < cursor:
                self._view[f"p{partition}"] = [hour]
        return forgotten

    def sweep(self, pipeline: Pipeline, batch: BatchStores, latest: Mapping[int, datetime]) -> int:
        """Let go of the orders of the hours that ended by each partition's latest message time;
        returns how many."""
        forgotten = 0
        for partition in sorted(self._events):
            cursor, moment = self._cursor(partition), latest.get(partition)
            if cursor is None or moment is None:
                continue
            self._at(partition)
            batch.event = self._events[partition]
            hour = _start(cursor)
            for _ in range(MAX_HOURS_PER_BATCH):
                if hour + HOUR > moment:
                    break
                bucket = f"p{partition}:{_hour(hour)}"
                keys = self._view.get(bucket)
                if keys:
                    swept = pipeline.sweep(keys, moment, partition=partition)
                    pipeline.store(swept)
                    forgotten += swept.forgotten
                    self._count(partition, -swept.forgotten)
                    del self._view[bucket]
                hour += HOUR
            if _hour(hour) != cursor:
                self._view[f"p{partition}"] = [_hour(hour)]
        return forgotten

    def counts(self) -> dict[int, int]:
        """Orders kept, for the partitions this batch counted."""
        counts = {}
        for partition in self._counted:
            found = self._view.get(f"n{partition}")
            counts[partition] = int(found[0]) if found else 0
        return counts

    async def flush(self) -> None:
        if self._view.flush():
            await self._view.settle()
