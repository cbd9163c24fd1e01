"""Reading output topics up to a known end, for tests and bench runs.

A fixed-time read ("read for 2 s, then compare") passes or fails with the machine's load. These reads
stop at a condition the caller knows in advance (the records replay predicts, the ids a run must emit)
and then at the end offsets of every partition; past a deadline they raise `ReadTimeout`, which says
what was read and what was still missing.

End offsets are taken with care: the local broker (Tansu) reports a partition's end offset wrong when
its newest batch holds more than one record (docs/notes/faust-on-tansu.md). The worker writes one
record per batch on that broker (`OMS_PRODUCER_MAX_BATCH_BYTES=1`), so the end offsets of its output
topics are right; an end offset below a record already read is known to be wrong and is replaced by
that record's offset + 1.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from workers.config.settings import Settings
from workers.local.dev import as_output

Output = dict[str, Any]


class ReadTimeout(AssertionError):
    """The deadline passed before the read reached its known end."""


class TopicReader:
    """Every partition of `topics`, assigned by hand (no group) and read from offset 0."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.settings = settings
        self.topics = topics
        self.records: list[Output] = []
        self.next_offset: dict[TopicPartition, int] = {}
        # (topic, partition, offset) -> the record's timestamp (ms): when the worker produced it.
        self.timestamps: dict[tuple[str, int, int], int] = {}
        self.consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.kafka_client_kwargs())

    async def start(self) -> None:
        await self.consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(self.consumer.partitions_for_topic(topic) or {0})
        ]
        self.consumer.assign(partitions)
        for tp in partitions:
            self.consumer.seek(tp, 0)
            self.next_offset[tp] = 0

    async def stop(self) -> None:
        await self.consumer.stop()

    async def __aenter__(self) -> TopicReader:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def poll(self) -> None:
        """One fetch (at most 200 ms when nothing comes)."""
        batches = await self.consumer.getmany(timeout_ms=200, max_records=5000)
        for tp, messages in batches.items():
            self.records.extend(as_output(tp, message, self.settings.dlq_topic) for message in messages)
            self.timestamps.update(((tp.topic, tp.partition, m.offset), m.timestamp) for m in messages)
            if messages:
                self.next_offset[tp] = messages[-1].offset + 1

    async def until(
        self, done: Callable[[list[Output]], bool], deadline: float, missing: Callable[[], str]
    ) -> None:
        """Read until `done(records)` holds; past the deadline, fail saying what `missing()` says."""
        while not done(self.records):
            if time.monotonic() > deadline:
                raise ReadTimeout(f"{len(self.records)} records read by the deadline; {missing()}")
            await self.poll()

    async def to_end(self, deadline: float) -> None:
        """Read up to the end offsets of every partition as they are now."""
        tps = list(self.next_offset)
        ends = await self.consumer.end_offsets(tps)
        # An end below what was already read is the broker's miscount: what was read is the floor.
        target = {tp: max(ends.get(tp, 0), self.next_offset[tp]) for tp in tps}
        while any(self.next_offset[tp] < target[tp] for tp in tps):
            if time.monotonic() > deadline:
                short = {
                    f"{tp.topic}[{tp.partition}]": f"{self.next_offset[tp]}/{target[tp]}"
                    for tp in tps
                    if self.next_offset[tp] < target[tp]
                }
                raise ReadTimeout(f"end offsets not reached by the deadline: {short}")
            await self.poll()


def _short(have: Counter[str], want: Counter[str]) -> str:
    return ", ".join(f"{t}: {have[t]} of {n}" for t, n in sorted(want.items()) if have[t] < n)


async def read_counts(
    settings: Settings, topics: list[str], want: Counter[str], timeout: float
) -> list[Output]:
    """Every record of `topics` once each topic holds at least `want[topic]` records (for instance the
    counts replay predicts), then up to the end offsets (so that extra records show too)."""

    def counts(records: list[Output]) -> Counter[str]:
        return Counter(r["topic"] for r in records)

    return await read_until(
        settings,
        topics,
        lambda records: all(counts(records)[t] >= n for t, n in want.items()),
        timeout,
        lambda records: f"still short: {_short(counts(records), want)}",
    )


async def read_ids(
    settings: Settings,
    topics: list[str],
    want: set[tuple[str, str]],
    identify: Callable[[Output], tuple[str, str]],
    timeout: float,
) -> list[Output]:
    """Every record of `topics` once each identity in `want` arrived (redeliveries may add copies, so
    a count would not do), then up to the end offsets."""
    awaited = Awaited(want, identify)
    return await read_until(
        settings,
        topics,
        lambda records: not awaited.missing(records),
        timeout,
        lambda records: (
            f"{len(awaited.missing(records))} missing, e.g. {sorted(awaited.missing(records))[:3]}"
        ),
    )


class Awaited:
    """The identities of `want` not among the records read so far. Each look reads only the records
    added since the last one: tens of thousands of outputs arrive over hundreds of polls."""

    def __init__(self, want: set[tuple[str, str]], identify: Callable[[Output], tuple[str, str]]) -> None:
        self.want = want
        self.identify = identify
        self.seen: set[tuple[str, str]] = set()
        self.counted = 0

    def missing(self, records: list[Output]) -> set[tuple[str, str]]:
        self.seen.update(self.identify(r) for r in records[self.counted :])
        self.counted = len(records)
        return self.want - self.seen


async def read_until(
    settings: Settings,
    topics: list[str],
    done: Callable[[list[Output]], bool],
    timeout: float,
    missing: Callable[[list[Output]], str] = lambda _: "the condition does not hold",
) -> list[Output]:
    """Every record of `topics` once `done(records)` holds, then up to the end offsets."""
    deadline = time.monotonic() + timeout
    async with TopicReader(settings, topics) as reader:
        await reader.until(done, deadline, lambda: missing(reader.records))
        await reader.to_end(deadline)
        return reader.records


async def read_all(settings: Settings, topics: list[str], timeout: float = 30.0) -> list[Output]:
    """Everything the topics hold now: up to their end offsets."""
    async with TopicReader(settings, topics) as reader:
        await reader.to_end(time.monotonic() + timeout)
        return reader.records
