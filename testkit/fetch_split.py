"""A controlled fetch split: records written one after the other on two topics, taken by a consumer
that is slow to take what it fetched, the way the worker's intake is under load.

A producer (librdkafka, each record awaited) writes pairs: `A<i>` on one topic, then `B<i>` on another,
a few milliseconds apart. An aiokafka consumer, fetching in the background as faust's consumer thread
does, takes what was fetched every `take_seconds` and orders it with the worker's scheduler
(`TimestampOrder`): by record timestamp alone (the worker before the fetch gate), or through the gate
over the consumer's real fetch state (`FetchView`). An inversion is a `B<i>` taken before its `A<i>`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Producer

from workers.engine.ordering import TimestampOrder
from workers.kafka.fetch_view import FetchView


@dataclass(frozen=True)
class Split:
    pairs: int
    inversions: int
    waits: int
    forwarded_while_lagging: int
    taken: int


async def run(
    bootstrap: str,
    *,
    prefix: str,
    pairs: int = 300,
    topics: int = 6,
    partitions: int = 4,
    take_seconds: float = 0.15,
    gate: bool = True,
    seed: int = 1,
) -> Split:
    names = [f"{prefix}t{i}" for i in range(topics)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    tps = {TopicPartition(name, p) for name in names for p in range(partitions)}
    consumer.assign(list(tps))
    counts = {"waits": 0, "lagging": 0}
    # Without the gate: the merge alone, as the worker took upstream records before it.
    scheduler = TimestampOrder.with_ranks({}, upstream=names if gate else ())()
    if gate:
        faust_like = SimpleNamespace(
            _thread=SimpleNamespace(_consumer=consumer), _active_partitions=tps, _buffered_partitions=set()
        )
        scheduler.attach(
            FetchView(faust_like, frozenset(names)),
            clock=time.monotonic,
            on_lagging=lambda: counts.__setitem__("lagging", counts["lagging"] + 1),
            on_wait=lambda _reason: counts.__setitem__("waits", counts["waits"] + 1),
        )
    written = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            rng = random.Random(seed)
            producer = Producer({"bootstrap.servers": bootstrap})
            for i in range(pairs):
                first, second = rng.sample(names, 2)
                producer.produce(first, value=f"A{i}".encode())
                producer.flush()
                time.sleep(0.002)  # distinct timestamps: the order is the producer's, not a tie
                producer.produce(second, value=f"B{i}".encode())
                producer.flush()
                time.sleep(rng.random() * 0.002)
        except BaseException as exc:
            failure.append(exc)
        finally:
            written.set()

    taken: list[str] = []
    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120 + pairs * 0.05
        while len(taken) < 2 * pairs and time.monotonic() < deadline:
            timeout = scheduler.poll_timeout(1.0)
            fetched: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=int(timeout * 1000))
            taken.extend(record.value.decode() for _tp, record in scheduler.iterate(fetched))
            await asyncio.sleep(take_seconds)  # the fetcher goes on meanwhile, like faust's thread
    finally:
        await consumer.stop()
        thread.join(timeout=30)
    if failure:
        raise failure[0]
    where = {value: index for index, value in enumerate(taken)}
    inversions = sum(
        1 for i in range(pairs) if f"A{i}" in where and f"B{i}" in where and where[f"B{i}"] < where[f"A{i}"]
    )
    return Split(pairs, inversions, counts["waits"], counts["lagging"], len(taken))
