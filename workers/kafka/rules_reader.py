"""The rules topic on the broker: read to its end at start, then followed while the worker runs
(README, "Rules that change while the worker runs").

Every worker process needs every channel's rules, whichever orders it handles, so the topic is read
whole by a plain consumer of its own: hand-assigned partitions, no consumer group, nothing committed
(a faust GlobalTable would do the same with a changelog table, a RocksDB folder and a standby recovery
for a few kilobytes). Its end is the end offsets asked at start, which the local Tansu broker reports
right only when the newest batch holds one record: the publisher sends one record per request. A
batch written otherwise by another tool could put the reported end past the last record, so the
start-up read also ends after a quiet moment.

A record that cannot be a rule set (not JSON, not the schema, refused by the rules' own checks, a
version not above the last) is dead-lettered (the `dlq.*` headers) while the worker follows the
topic, and the live rules stay. At start such records are skipped with a warning only: they were
dead-lettered when they came, and every restart would otherwise dead-letter them again. Each worker
process that reads a bad record while following dead-letters it: with N workers, up to N dead letters
with one `dlq.original.*` position.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from domain.rule_versions import RuleVersion, RuleVersions, book_versions, same_rules
from domain.rules import RuleBook
from domain.timeutil import EPOCH
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, OutboundRecord, dead_letter
from workers.engine.rule_records import encode, read_record
from workers.kafka import metrics
from workers.kafka.topics import rules_topic

log = structlog.get_logger("oms_postsales.rules")

QUIET_SECONDS = 2.0
RETRY_SECONDS = 1.0
START_TIMEOUT_SECONDS = 120.0

DeadLetters = Callable[[list[OutboundRecord]], Awaitable[object]]


def as_record(message: object, topic: str) -> InboundRecord:
    key = getattr(message, "key", None)
    stamp = getattr(message, "timestamp", None)
    headers = getattr(message, "headers", None) or []
    return InboundRecord(
        topic=topic,
        value=getattr(message, "value", None) or b"",
        key=key.decode("utf-8", "replace") if isinstance(key, bytes) else None,
        headers={str(k): v.decode("utf-8", "replace") for k, v in headers},
        partition=int(getattr(message, "partition", 0)),
        offset=int(getattr(message, "offset", 0)),
        timestamp=datetime.fromtimestamp(stamp / 1000, UTC)
        if isinstance(stamp, int) and stamp >= 0
        else None,
    )


class RulesReader:
    """Keeps `versions` (shared with every pipeline of the process) up to date with the topic."""

    def __init__(
        self,
        settings: Settings,
        versions: RuleVersions,
        handled_until: Callable[[], datetime | None] = lambda: None,
    ) -> None:
        """`handled_until`: the latest message time this worker has handled (None: nothing yet)."""
        self.settings = settings
        self.versions = versions
        self.handled_until = handled_until
        self.topic = rules_topic(settings)
        self.positions: dict[int, int] = {}
        self.read = 0

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            **self.settings.kafka_client_kwargs(),
        )

    async def load(self, book: RuleBook | None = None) -> None:
        """Read the topic to its end. An empty topic gets `book` (the rules file) as version 1 of each
        of its keys first, effective from the start of time; then the topic is read again, so that a
        worker that raced another one follows what the topic says, not its own file."""
        records = await self._read_to_end()
        if records == 0 and book is not None:
            await publish(self.settings, book_versions(book, EPOCH, 1))
            await self._read_to_end()
        elif book is not None:
            # The topic decides; a file that says otherwise is only the starting point of a fresh
            # cluster. Say so, or an operator who edited it would wonder why nothing changed.
            differ = [
                found.key
                for found in book_versions(book, EPOCH, 1)
                if (live := self.versions.latest(found.key)) is None
                or not same_rules(live.rules, found.rules)
            ]
            if differ:
                log.warning("rules.file_differs_from_topic", keys=differ, hint="oms-postsales rules publish")
        log.info("rules.loaded", topic=self.topic, records=self.read, versions=len(self.versions))

    async def _read_to_end(self) -> int:
        consumer = await _started(self._consumer())
        count = 0
        try:
            # Never name a missing topic in a fetch: a broker that auto-creates (Tansu always does)
            # would make it, uncompacted and with its default partition count.
            if self.topic not in await consumer.topics():
                return 0
            partitions = sorted(consumer.partitions_for_topic(self.topic) or {0})
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in self.positions:
                    consumer.seek(tp, self.positions[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(tps)
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    break
                if time.monotonic() - quiet_since > QUIET_SECONDS:
                    break
                batches = await consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for message in messages:
                        quiet_since = time.monotonic()
                        count += 1
                        self._apply(as_record(message, self.topic), following=False)
            for tp in tps:
                self.positions[tp.partition] = await consumer.position(tp)
        finally:
            await consumer.stop()
        self.read += count
        return count

    def _apply(self, record: InboundRecord, *, following: bool) -> OutboundRecord | None:
        result = read_record(record, self.versions)
        if result.version is not None:
            metrics.RULES_VERSION.labels(result.version.key).set(result.version.version)
            handled = self.handled_until() if following else None
            if handled is not None and result.version.effective_from <= handled:
                # The ordering caveat (README): messages dated from effective_from that this worker
                # already handled stay decided by the version before; replay would use this one.
                log.warning(
                    "rules.effective_before_handled",
                    rules_version=result.version.label,
                    effective_from=result.version.effective_from.isoformat(),
                    handled_until=handled.isoformat(),
                )
            log.info(
                "rules.version",
                rules_version=result.version.label,
                effective_from=result.version.effective_from.isoformat(),
                offset=record.offset,
            )
        if result.error is None:
            return None
        metrics.RULES_REFUSED.inc()
        log.warning(
            "rules.record_refused",
            offset=record.offset,
            key=record.key,
            error_class=result.error.error_class,
            error=result.error.message,
        )
        if not following:
            return None
        metrics.DEAD_LETTERS.labels(result.error.error_class).inc()
        # Dated as the pipeline dates its dead letters (the record's time), so replay's are the same.
        return dead_letter(
            record, result.error, self.settings.dlq_topic, record.timestamp or datetime.now(UTC)
        )

    async def follow(self, send: DeadLetters, stopping: Callable[[], bool]) -> None:
        """Read what comes after the start-up read until the worker stops; refused records go to
        `send` (the worker's delivery, with its retries). A failure of the reader (not of a record)
        is logged and the reader starts again where it was: the worker keeps its live rules meanwhile."""
        while not stopping():
            try:
                await self._follow(send, stopping)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rules.reader_failed", topic=self.topic, positions=dict(self.positions))
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self, send: DeadLetters, stopping: Callable[[], bool]) -> None:
        consumer = await _started(self._consumer())
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(self.positions or {0: 0})]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self.positions.get(tp.partition, 0))
            while not stopping():
                batches = await consumer.getmany(timeout_ms=500)
                dead: list[OutboundRecord] = []
                for messages in batches.values():
                    for message in messages:
                        refused = self._apply(as_record(message, self.topic), following=True)
                        if refused is not None:
                            dead.append(refused)
                        self.positions[int(message.partition)] = int(message.offset) + 1
                if dead:
                    await send(dead)
        finally:
            await consumer.stop()


async def _started(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """Started, or stopped again when the start fails: aiokafka leaves a half-open client otherwise,
    whose finaliser prints under the command's one-line error."""
    try:
        await consumer.start()
    except BaseException:
        await consumer.stop()
        raise
    return consumer


async def publish(settings: Settings, versions: Sequence[RuleVersion]) -> None:
    """Write rule sets, one record per request (and each acknowledged before the next): the local
    broker reports end offsets right only for one-record batches, and the versions keep their order."""
    topic = rules_topic(settings)
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=False, linger_ms=0, **settings.kafka_client_kwargs()
    )
    try:
        await producer.start()
        for found in versions:
            record = encode(found, topic)
            await producer.send_and_wait(
                record.topic,
                record.value,
                key=(record.key or "").encode("utf-8"),
                headers=[(name, value.encode("utf-8")) for name, value in record.headers.items()],
            )
    finally:
        await producer.stop()
