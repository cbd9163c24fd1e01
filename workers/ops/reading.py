"""What the operator's tools share: reading a whole topic from the broker, and progress on a terminal.

Topics are read with a plain consumer on hand-assigned partitions from the earliest offset, without a
consumer group (nothing is committed). The end is the first quiet moment, not the broker's end offsets:
the local Tansu broker reports those wrongly once a batch held more than one record.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from workers.config.settings import Settings

IDLE_SECONDS = 1.5
READ_TIMEOUT = 300.0


class OpsError(RuntimeError):
    """A tool cannot do what it was asked (missing topic, bad selection): one line for the operator."""


@dataclass(frozen=True)
class Fetched:
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None

    @property
    def key_text(self) -> str | None:
        return self.key.decode("utf-8", "replace") if self.key is not None else None


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    idle_seconds: float = IDLE_SECONDS,
    timeout: float = READ_TIMEOUT,
    progress: Progress | None = None,
) -> list[Fetched]:
    """Every record of `topic`, partition by partition in offset order (stops after `idle_seconds` of
    silence, or at `timeout`)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **settings.kafka_client_kwargs())
    await started(consumer)
    found: list[Fetched] = []
    try:
        if topic not in await consumer.topics():
            raise OpsError(f"topic {topic} does not exist on {settings.bootstrap_servers}")
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_seconds and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            if any(batches.values()):
                quiet_since = time.monotonic()
            for tp, messages in batches.items():
                for message in messages:
                    found.append(
                        Fetched(
                            tp.topic,
                            tp.partition,
                            message.offset,
                            datetime.fromtimestamp(message.timestamp / 1000, UTC)
                            if message.timestamp is not None and message.timestamp >= 0
                            else None,
                            message.key,
                            message.value,
                            [(k, v) for k, v in (message.headers or [])],
                        )
                    )
                if progress is not None:
                    progress.advance(len(messages))
    finally:
        await consumer.stop()
    found.sort(key=lambda r: (r.partition, r.offset))
    return found


Client = TypeVar("Client", AIOKafkaConsumer, AIOKafkaProducer)


async def started(client: Client) -> Client:
    """`client` started, or stopped again when the start fails (no broker): aiokafka leaves a client
    whose start failed half open, and its finaliser then prints `Unclosed AIOKafkaConsumer` and the
    object under the verb's one-line error."""
    try:
        await client.start()
    except BaseException:
        await client.stop()
        raise
    return client


def producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(acks="all", enable_idempotence=False, **settings.kafka_client_kwargs())


class Progress:
    """A counter on stderr when it is a terminal; silent in pipes, files and CI."""

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.label = label
        self.total = total
        self.done = 0
        self._shown = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.enabled and now - self._shown >= 0.1:
            self._shown = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            width = 30
            filled = int(width * min(self.done, self.total) / self.total)
            bar = "#" * filled + "." * (width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        else:
            self.stream.write(f"\r{self.label} {self.done}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
