"""The Kafka runner: a faust-streaming app built in a function (no module-level app), running the same
pipeline as `replay` with faust tables as the stores.

Agents (each takes records in batches: up to OMS_BATCH_MAX_RECORDS, or what came within
OMS_BATCH_WITHIN_MS)
- intake: every inbound topic as producers wrote them, with any key, partitioner and partition count.
  Records that cannot be decoded or fail their schema are dead-lettered from here, with their original
  topic, partition and offset. Every other record is forwarded, bytes and headers unchanged, to the
  internal topic `oms-postsales.inbound`, on the partition of the key derived from its payload
  ("<sales channel>:<order id>", a snapshot's source id) and with its original timestamp. Fetched
  records are taken in record-timestamp order across topics (workers/engine/ordering.py), so one order's
  messages reach that topic in the order their producer wrote them.
- orders: the internal topic and the settle ticks, co-partitioned with the order tables, so one
  order's messages are handled one at a time, in order; stock movements go, one record per
  "<source>:<sku>" per batch, to the internal movements topic;
- stock: the movements topic, applied to the stock table, publishing adjustments.

Per batch, every output is delivered (acknowledged by the broker) before the tables are written, each
changed key once, and only then are the batch's offsets committed. A crash before the table write
re-delivers the batch, which re-emits the same ids (derived ids, remembered credit note numbers); a
crash after it finds the message ids already applied and emits nothing. Delivery is at-least-once,
effects exactly-once per message id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import faust
import structlog
from aiokafka.protocol.metadata import MetadataRequest
from faust.types import TP

from domain import names
from domain.outcome import Movement
from domain.rule_versions import RuleVersions
from domain.rules import RuleBook
from domain.timeutil import EPOCH, iso
from workers.config.settings import Settings
from workers.engine.codec import DecodeError, InboundRecord, OutboundRecord, dead_letter, dumps, loads
from workers.engine.ordering import (
    NO_TIME,
    ORIGIN_TOPIC,
    TIME_HEADER,
    TimestampOrder,
    header_millis,
    lifecycle_ranks,
    merge_by_timestamp,
)
from workers.engine.pipeline import FOLLOW_UP_OF, Pipeline, Processed, Topics, partition_for
from workers.engine.stores import Stores
from workers.engine.values import JsonValues
from workers.kafka import crashpoints, durable_tables, faust_fixes, metrics, produce_errors
from workers.kafka.delivery import Delivery, Failure, reason
from workers.kafka.overlay import BatchStores, Overlay
from workers.kafka.produce_errors import Problems
from workers.kafka.retention_index import RetentionIndex
from workers.kafka.rules_reader import RulesReader
from workers.kafka.table_map import TableMap
from workers.kafka.topics import (
    INBOUND_TOPIC,
    RETENTION_TABLE,
    STOCK_MOVEMENTS_TOPIC,
    TICKS_TOPIC,
    WAITING_TABLE,
    inbound_topics,
)
from workers.kafka.web import app_options as web_app_options
from workers.kafka.web import install_pages

if TYPE_CHECKING:
    from workers.kafka.tracing import Tracing

log = structlog.get_logger("oms_postsales.worker")

V = TypeVar("V")

# Headers the intake adds to a forwarded record: where the producer had put it.
ORIGIN_PARTITION = "oms.origin.partition"
ORIGIN_OFFSET = "oms.origin.offset"
ORIGIN_KEY = "oms.origin.key"
ORIGIN_HEADERS = (ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET, ORIGIN_KEY, TIME_HEADER)
# On a dead letter whose original value the broker would not take either: that value's size.
OMITTED = "dlq.value.omitted"
# A batch whose tables could not be written is handled again from scratch after this long.
BATCH_RETRY_SECONDS = 1.0


def _headers(raw: Any) -> dict[str, str]:
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    headers: dict[str, str] = {}
    for name, value in items:
        headers[str(name)] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return headers


def _timestamp(message: Any) -> datetime | None:
    """A record's own timestamp (faust gives seconds); Kafka's -1 ms (a record without one: old message
    formats, some clients) is none, as in the merge by timestamp."""
    stamp = message.timestamp
    return datetime.fromtimestamp(stamp, UTC) if stamp is not None and stamp >= 0 else None


def _millis_text(moment: datetime | None) -> str:
    return str(round(moment.timestamp() * 1000)) if moment is not None else NO_TIME


def _message_time(message: Any, headers: dict[str, str]) -> datetime | None:
    """An internal record's message time: its time header; a record without one (written by an older
    version) by its own timestamp."""
    text = headers.get(TIME_HEADER)
    if text is None:
        return _timestamp(message)
    millis = header_millis(text)
    return datetime.fromtimestamp(millis / 1000, UTC) if millis is not None else None


def inbound(message: Any) -> InboundRecord:
    """A record as its producer wrote it."""
    return InboundRecord(
        topic=message.topic,
        value=message.value or b"",
        key=message.key.decode("utf-8", "replace") if message.key is not None else None,
        headers=_headers(message.headers),
        partition=message.partition,
        offset=message.offset,
        timestamp=_timestamp(message),
    )


def forwarded(record: InboundRecord, key: str, topic: str, partitions: int) -> OutboundRecord:
    """The intake's copy of a record, on the partition of the key its payload belongs to."""
    headers = {name: value for name, value in record.headers.items() if name not in ORIGIN_HEADERS}
    headers[ORIGIN_TOPIC] = record.topic
    headers[ORIGIN_PARTITION] = str(record.partition)
    headers[ORIGIN_OFFSET] = str(record.offset)
    if record.key is not None:
        headers[ORIGIN_KEY] = record.key
    # The message time travels in the header; the record itself is stamped when it is written, so the
    # internal topic's retention counts from then (a backfill of old messages is not deleted unread).
    headers[TIME_HEADER] = _millis_text(record.timestamp)
    return OutboundRecord(topic, key, headers, record.value, partition_for(key, partitions))


def origin(message: Any) -> InboundRecord:
    """A forwarded record seen as its producer wrote it: what replay reads from its log."""
    headers = _headers(message.headers)
    return InboundRecord(
        topic=headers.pop(ORIGIN_TOPIC, message.topic),
        value=message.value or b"",
        key=headers.pop(ORIGIN_KEY, None),
        headers={name: value for name, value in headers.items() if name not in ORIGIN_HEADERS},
        partition=int(headers.get(ORIGIN_PARTITION, message.partition)),
        offset=int(headers.get(ORIGIN_OFFSET, message.offset)),
        timestamp=_message_time(message, headers),
    )


def movement_records(
    movements: Sequence[Movement],
    topic: str,
    partitions: int,
    at: datetime | None = None,
    context_of: Callable[[Movement], dict[str, str] | None] | None = None,
) -> list[OutboundRecord]:
    """One record per "<source>:<sku>" with that item's movements of the batch, in order; `at`: the
    latest message time of the batch that made them (each movement also carries its own).
    `context_of` (tracing): a movement's trace context headers; a record carries its first movement's."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    contexts: dict[str, dict[str, str]] = {}
    for movement in movements:
        grouped.setdefault(movement.key, []).append(_movement_fields(movement))
        if context_of is not None and movement.key not in contexts:
            contexts[movement.key] = context_of(movement) or {}
    headers = {TIME_HEADER: _millis_text(at)}
    return [
        OutboundRecord(
            topic,
            key,
            {**headers, **contexts[key]} if key in contexts else headers,
            dumps(items).encode("utf-8"),
            partition_for(key, partitions),
        )
        for key, items in grouped.items()
    ]


def _movement_fields(movement: Movement) -> dict[str, Any]:
    # A timed movement (nearly all: every record with a timestamp) is written without the flag, as the
    # version before it wrote movements: a worker of that version still reads them during a rolling
    # upgrade, and a movement it wrote is read as timed.
    fields = asdict(movement)
    if movement.timed:
        del fields["timed"]
    return fields


def read_movements(value: bytes) -> list[Movement]:
    data = loads(value)
    return [Movement(**{"timed": True, **item}) for item in (data if isinstance(data, list) else [data])]


class Runtime:
    """What the agents share: the stores over faust tables, delivery with retries, readiness."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        rules: RuleBook | RuleVersions,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        # One object for the whole process: the rules reader adds versions to it as they come, and
        # every pipeline (the stages', previews') decides by it.
        self.rules = rules if isinstance(rules, RuleVersions) else RuleVersions.from_book(rules)
        # None unless OMS_TRACING is on: then OpenTelemetry is imported (workers/kafka/tracing.py).
        self.tracing = tracing

        options = durable_tables.store_options(
            settings.store, settings.rocksdb_write_buffer_kib, settings.rocksdb_block_cache_kib
        )

        def table(name: str, by_stock: bool = False) -> Any:
            partitions = settings.internal_partitions if by_stock else settings.partitions
            return app.Table(
                name, key_type=str, value_type=bytes, partitions=partitions, options=dict(options)
            )

        self.stores = Stores.over(lambda store: TableMap(table(store.table, store.by_stock), store.values))
        self.waiting: TableMap[list[str]] = TableMap(table(WAITING_TABLE), JsonValues(list[str]))
        self.retention = RetentionIndex(TableMap(table(RETENTION_TABLE), JsonValues(list[str])))
        # Per order partition: the latest record timestamp handled here (message time, never the clock),
        # and the offset of the last inbound record handled.
        self.stream_time: dict[int, datetime] = {}
        self.handled: dict[int, int] = {}
        mapping = {name: settings.topic_for(name) for name in names.INBOUND + names.OUTBOUND}
        self.topics = Topics(mapping, settings.dlq_topic)
        # The stages' own pipelines: the orders and stock stages swap in their batch's stores, while
        # this one (intake routing, previews) always sees the tables.
        self.pipeline = self._pipeline(self.stores)
        self._orders_pipeline = self._pipeline(self.stores)
        self._stock_pipeline = self._pipeline(self.stores)
        self.ranks = lifecycle_ranks(settings.topic_for)
        self.inbound_topic = settings.topic_prefix + INBOUND_TOPIC
        self.movements_topic = settings.topic_prefix + STOCK_MOVEMENTS_TOPIC
        self.ticks_topic = settings.topic_prefix + TICKS_TOPIC
        self.upstream_topics = frozenset(inbound_topics(settings))
        self.message_names = self.topics.names_by_topic()
        self.delivery = Delivery(self._send, lambda: bool(self.app.should_stop), Problems())
        # aiokafka retries a refused produce inside the client before the send fails (an idempotent
        # producer for ever): its log lines are the first sign of a cluster that refuses writes.
        self._watch = produce_errors.watch(self.delivery.problems)
        self.broker_ok = False
        self.broker_checked = 0.0
        self.started = time.monotonic()
        self.last_record = time.monotonic()

    def _pipeline(self, stores: Stores) -> Pipeline:
        return Pipeline(
            self.rules,
            stores=stores,
            topics=self.topics,
            partitions=self.settings.partitions,
            max_record_bytes=self.settings.max_record_bytes,
        )

    async def _send(self, record: OutboundRecord) -> Any:
        return await self.app.producer.send(
            record.topic,
            record.key.encode("utf-8") if record.key is not None else None,
            record.value,
            record.partition,
            record.timestamp_ms / 1000 if record.timestamp_ms is not None else None,
            [(name, value.encode("utf-8")) for name, value in record.headers.items()],
        )

    # -- intake -------------------------------------------------------------------------------------

    async def intake(self, events: Sequence[Any]) -> None:
        """Forward a batch of records as producers wrote them to the partitions of their keys."""
        self.last_record = time.monotonic()
        started = time.perf_counter()
        by_partition: dict[tuple[str, int], list[InboundRecord]] = {}
        for event in events:
            record = inbound(event.message)
            by_partition.setdefault((record.topic, record.partition), []).append(record)
        causes: list[InboundRecord] = []
        outputs: list[OutboundRecord] = []
        ranks = self.ranks
        for _, record in merge_by_timestamp(
            by_partition.items(), _millis, lambda tp, _r: ranks.get(tp[0], 0)
        ):
            routed = self.pipeline.route(record)
            if routed.dead is not None:
                outputs.extend(routed.dead.records)
                metrics.observe(record.topic, routed.dead, 0.0)
                if self.tracing is not None:
                    self._trace_dead_letter(self.tracing, record, routed.dead)
            else:
                assert routed.key is not None
                outputs.append(forwarded(record, routed.key, self.inbound_topic, self.settings.partitions))
            causes.append(record)
        failures = await self.delivery.deliver(outputs, stage="intake")
        await self._dead_letter_failures(failures, causes)
        metrics.BATCH_SECONDS.labels("intake").observe(time.perf_counter() - started)

    def _trace_dead_letter(self, tracing: Tracing, record: InboundRecord, dead: Processed) -> None:
        """A record the intake dead-letters is handled there: its span (the dead letter keeps the
        record's own headers, its trace context included)."""
        name = self.message_names.get(record.topic, record.topic)
        span = tracing.start(name, record.headers, record.topic, record.key)
        tracing.finish(span, dead.status, dead.message_id, dead.detail)

    # -- orders -------------------------------------------------------------------------------------

    async def handle_orders(self, events: Sequence[Any]) -> None:
        self.last_record = time.monotonic()
        started = time.perf_counter()
        await self._until_stored("orders", partial(self._orders_batch, events, started), len(events))

    async def _until_stored(self, stage: str, batch: Callable[[], Awaitable[None]], records: int) -> None:
        """Handle a batch until its tables are written: nothing is committed that was not stored."""
        while True:
            try:
                await batch()
            except asyncio.CancelledError:
                raise
            except durable_tables.ChangelogWriteFailed as exc:
                # The cluster refused the table's writes (too few in-sync replicas, an ACL): named in
                # /ready and logged once per interval while it lasts, then handled again from scratch.
                self.delivery.failed_write(exc.topic, exc.__cause__ or exc)
                await asyncio.sleep(BATCH_RETRY_SECONDS)
            except Exception:
                # Not any one record's fault (those are dead-lettered one by one): the batch is handled
                # again from scratch.
                log.exception("batch.failed", stage=stage, records=records)
                await asyncio.sleep(BATCH_RETRY_SECONDS)
            else:
                self.delivery.write_recovered()
                return

    async def _orders_batch(self, events: Sequence[Any], started: float) -> None:
        batch = BatchStores(self.stores)
        waiting: dict[int, dict[str, None]] = {}
        pipeline = self._orders_pipeline
        pipeline.stores = batch.view
        tracing = self.tracing
        spans: list[tuple[Any, Processed | None]] = []
        try:
            await self._orders_records(events, started, batch, waiting, pipeline, tracing, spans)
        except BaseException as exc:
            if tracing is not None:
                for span, _ in spans:
                    tracing.fail(span, exc)
            raise
        if tracing is not None:
            for span, done in spans:
                if done is not None:
                    tracing.finish(span, done.status, done.message_id, done.detail)

    async def _orders_records(
        self,
        events: Sequence[Any],
        started: float,
        batch: BatchStores,
        waiting: dict[int, dict[str, None]],
        pipeline: Pipeline,
        tracing: Tracing | None,
        spans: list[tuple[Any, Processed | None]],
    ) -> None:
        results: list[tuple[InboundRecord | None, Processed]] = []
        slot_events: dict[int, Any] = {}
        positions: list[tuple[str, int, Processed]] = []
        by_partition: list[tuple[int, Processed]] = []
        # With tracing: per (origin, offset) of a message, the trace context of its span.
        contexts: dict[tuple[str, int], dict[str, str]] = {}
        for event in events:
            batch.event = event
            message = event.message
            partition = message.partition
            if message.topic == self.ticks_topic:
                record = None
                keys = self._waiting(waiting, partition)
                moment = self._settle_time(partition, datetime.fromisoformat(loads(message.value)["now"]))
                processed = (
                    pipeline.settle(list(keys), moment, partition=partition) if keys and moment else None
                )
            else:
                record = origin(message)
                if tracing is None:
                    processed = self._process(pipeline, record)
                else:
                    processed = self._traced(tracing, pipeline, record, message, spans, contexts)
                self.handled[partition] = message.offset
                if record.timestamp is not None and record.timestamp > self.stream_time.get(partition, EPOCH):
                    self.stream_time[partition] = record.timestamp
            slot_events[partition] = event
            if processed is None:
                continue
            by_partition.append((partition, processed))
            pipeline.store(processed)
            slot = self._waiting(waiting, partition)
            for order in processed.changes.orders.values():
                if order.held:
                    slot[order.key] = None
                else:
                    slot.pop(order.key, None)
            results.append((record, processed))
            positions.append((f"{message.topic}:{partition}", message.offset, processed))
        index = self.retention.batch(slot_events)
        swept = index.note(pipeline, by_partition) + index.sweep(pipeline, batch, self.stream_time)
        outputs: list[OutboundRecord] = []
        causes: list[InboundRecord | None] = []
        for record, processed in results:
            made = processed.records + self._follow_ups(processed)
            outputs += made
            causes += [record] * len(made)
        movements = [
            replace(movement, origin=origin, origin_offset=offset, origin_index=index)
            for origin, offset, processed in positions
            for index, movement in enumerate(processed.movements)
        ]
        latest = max((r.timestamp for r, _ in results if r is not None and r.timestamp), default=None)
        outputs += movement_records(
            movements,
            self.movements_topic,
            self.settings.internal_partitions,
            latest,
            (lambda m: contexts.get((m.origin or "", m.origin_offset))) if contexts else None,
        )
        failures = await self.delivery.deliver(outputs, stage="orders")
        await self._dead_letter_failures(failures, causes)
        await batch.flush("orders")
        await index.flush()
        metrics.ORDERS_ARCHIVED.inc(swept)
        for partition, count in index.counts().items():
            metrics.ORDERS_IN_STATE.labels(str(partition)).set(count)
        # Written only when it changed: most batches hold nothing back.
        for partition, keys in waiting.items():
            if list(keys) != self.waiting.get(f"p{partition}", []):
                slots: Overlay[list[str]] = Overlay(self.waiting, partial(slot_events.__getitem__, partition))
                slots[f"p{partition}"] = list(keys)
                slots.flush()
                await slots.settle()
            metrics.WAITING.labels(str(partition)).set(len(keys))
        seconds = time.perf_counter() - started
        metrics.BATCH_SECONDS.labels("orders").observe(seconds)
        for record, processed in results:
            if record is not None:
                follow_up = FOLLOW_UP_OF in record.headers
                metrics.observe(record.topic, processed, seconds, follow_up=follow_up)

    def _traced(
        self,
        tracing: Tracing,
        pipeline: Pipeline,
        record: InboundRecord,
        message: Any,
        spans: list[tuple[Any, Processed | None]],
        contexts: dict[tuple[str, int], dict[str, str]],
    ) -> Processed:
        """One message under its span; what it made carries the span's context (a dead letter keeps
        its record's own). The span ends once the batch's outputs are delivered and its tables written."""
        key = message.key.decode("utf-8", "replace") if message.key is not None else None
        name = self.message_names.get(record.topic, record.topic)
        span = tracing.start(name, record.headers, record.topic, key)
        spans.append((span, None))
        processed = self._process(pipeline, record)
        spans[-1] = (span, processed)
        context = tracing.context_headers(span)
        for output in processed.records:
            if output.topic != self.settings.dlq_topic:
                tracing.stamp(output.headers, context)
        for index, follow_up in enumerate(processed.follow_ups):
            headers = dict(follow_up.headers)
            tracing.stamp(headers, context)
            processed.follow_ups[index] = replace(follow_up, headers=headers)
        if processed.movements:
            contexts[(f"{message.topic}:{message.partition}", message.offset)] = context
        return processed

    def _settle_time(self, partition: int, now: datetime) -> datetime | None:
        """The time a tick settles held messages by: the clock once the partition has handled every
        record on the broker; before that (a backlog, a backfill of old messages) its latest message
        time, as replay does mid-log. A held message whose order is further down the backlog is not
        refused because the clock is weeks past its message time."""
        consumer = self.app.consumer
        if consumer is None:
            return now
        highwater = consumer.highwater(TP(self.inbound_topic, partition))
        handled = self.handled.get(partition)
        behind = highwater is not None and handled is not None and handled + 1 < highwater
        # The intake's own backlog (this worker's upstream partitions) is still to be forwarded.
        behind = behind or any(
            (metrics.lag_of(consumer, tp) or 0) > 0
            for tp in consumer.assignment()
            if tp.topic in self.upstream_topics
        )
        return self.stream_time.get(partition) if behind else now

    def _follow_ups(self, processed: Processed) -> list[OutboundRecord]:
        """Messages a record made for other orders go through the inbound topic like any other record
        (delivered with its outputs, so a crash makes a duplicate the order recognises, never a loss)."""
        partitions = self.settings.partitions
        return [
            forwarded(record, record.key or "", self.inbound_topic, partitions)
            for record in processed.follow_ups
        ]

    def _waiting(self, waiting: dict[int, dict[str, None]], partition: int) -> dict[str, None]:
        if partition not in waiting:
            waiting[partition] = dict.fromkeys(self.waiting.get(f"p{partition}", []))
        return waiting[partition]

    def _process(self, pipeline: Pipeline, record: InboundRecord) -> Processed:
        try:
            # The intake validated what upstream sent; a follow-up (made here) is checked as replay does.
            return pipeline.process(record, validated=FOLLOW_UP_OF not in record.headers)
        except Exception as exc:
            log.exception(
                "record.failed", topic=record.topic, partition=record.partition, offset=record.offset
            )
            error = DecodeError("InternalError", f"{type(exc).__name__} while processing; see the worker log")
            dead = dead_letter(record, error, self.settings.dlq_topic, datetime.now(UTC))
            return Processed("dead_letter", [dead], [], "InternalError")

    async def _dead_letter_failures(
        self, failures: list[Failure], causes: Sequence[InboundRecord | None]
    ) -> None:
        """Outputs the broker can never take: the inbound record that caused each goes to the
        dead-letter topic with the reason (the state change it made stands; its outputs are in doubt)."""
        if not failures:
            return
        dead: list[OutboundRecord] = []
        refused: list[Failure] = []
        for failure in failures:
            cause = causes[failure.index] if failure.index < len(causes) else None
            log.error(
                "delivery.refused",
                topic=failure.record.topic,
                error=reason(failure.error),
                bytes=len(failure.record.value),
            )
            if failure.record.topic == self.settings.dlq_topic:
                refused.append(failure)
                continue
            if cause is None:
                continue
            why = (
                f"{reason(failure.error)}; the output to {failure.record.topic} "
                f"({len(failure.record.value)} bytes) can never be delivered"
            )
            dead.append(
                dead_letter(
                    cause, DecodeError("DeliveryFailed", why), self.settings.dlq_topic, datetime.now(UTC)
                )
            )
            metrics.DEAD_LETTERS.labels("DeliveryFailed").inc()
        refused += await self.delivery.deliver(dead)
        # A dead letter as large as the output the broker refused may be refused too: it goes again
        # without its value, which a header says was left out (the original record stays on its topic).
        bare = [
            replace(f.record, value=b"", headers={**f.record.headers, OMITTED: str(len(f.record.value))})
            for f in refused
        ]
        for failure in await self.delivery.deliver(bare):
            log.error("dead_letter.refused", error=type(failure.error).__name__)

    # -- stock --------------------------------------------------------------------------------------

    async def handle_movements(self, events: Sequence[Any]) -> None:
        self.last_record = time.monotonic()
        started = time.perf_counter()
        # Again from scratch is safe: the adjustments re-sent carry the same ids, and a stock item
        # applies each movement's position once.
        await self._until_stored("stock", partial(self._movements_batch, events, started), len(events))

    async def _movements_batch(self, events: Sequence[Any], started: float) -> None:
        batch = BatchStores(self.stores)
        stock = batch.of("stock")
        pipeline = self._stock_pipeline
        pipeline.stores = batch.view
        outputs: list[OutboundRecord] = []
        tracing = self.tracing
        for event in events:
            batch.event = event
            context = tracing_context(event.message.headers) if tracing is not None else None
            for movement in read_movements(event.message.value):
                item, record = pipeline.apply_movement(movement)
                stock[movement.key] = item
                if record is not None:
                    if context:
                        record.headers.update(context)
                    outputs.append(record)
        await self.delivery.deliver(outputs, stage="stock")
        if stock.flush():
            crashpoints.reach("stock.stock-written")
            await stock.settle()
            crashpoints.reach("stock.stock-settled")
        metrics.BATCH_SECONDS.labels("stock").observe(time.perf_counter() - started)

    # -- timers and readiness -----------------------------------------------------------------------

    async def tick(self) -> None:
        now = datetime.now(UTC)
        payload = dumps({"now": iso(now)}).encode("utf-8")
        headers = [(TIME_HEADER, _millis_text(now).encode("ascii"))]
        for partition in range(self.settings.partitions):
            await self.app.producer.send(self.ticks_topic, b"tick", payload, partition, None, headers)

    async def probe_broker(self) -> None:
        """Ask one broker for the metadata of the worker's own inbound topic over the producer's
        connections (never the whole cluster's: heavy on a cluster of thousands of topics); a stalled
        broker keeps them open and never answers, so only a timeout tells."""
        client = getattr(getattr(self.app.producer, "_producer", None), "client", None)
        try:
            if client is None:
                raise RuntimeError("producer not started")
            node = client.get_random_node()
            if node is None:
                raise RuntimeError("no broker known")
            request = MetadataRequest([self.inbound_topic], allow_auto_topic_creation=False)
            await asyncio.wait_for(
                client.send(node, request), timeout=self.settings.ready_probe_timeout_seconds
            )
        except Exception as exc:
            if self.broker_ok:
                log.warning("broker.unreachable", error=type(exc).__name__)
            self.broker_ok = False
        else:
            if not self.broker_ok:
                log.info("broker.reachable")
            self.broker_ok = True
        self.broker_checked = time.monotonic()

    def ready(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        assignment = self.app.consumer.assignment() if self.app.consumer else set()
        recovery = getattr(self.app.tables, "recovery", None)
        recovered = bool(recovery.completed.is_set()) if recovery is not None else False
        since = self.delivery.pending_since
        pending = now - since if since is not None else 0.0
        # A probe answer older than a few intervals counts as none: the probe itself may be hanging.
        fresh = now - self.broker_checked <= 2 * self.settings.ready_probe_interval_seconds + (
            self.settings.ready_probe_timeout_seconds
        )
        problems = self.delivery.problems.current(now)
        # A refusal only an operator can lift (min ISR, ACLs, a topic gone) makes the worker not
        # ready at once, as long as records are waiting on it.
        waiting = since is not None or self.delivery.writes_failing
        blocked = waiting and any(p.kind == "cluster" for p in problems)
        checks = {
            "partitions_assigned": len(assignment),
            "recovery_done": recovered,
            "broker_reachable": self.broker_ok and fresh,
            "delivering": self.delivery.ok
            and pending <= self.settings.ready_max_delivery_seconds
            and not self.delivery.writes_failing
            and not blocked,
            "delivery_pending_seconds": round(pending, 1),
            "produce_errors": [p.as_json(now) for p in problems],
            "rebalancing": bool(self.app.rebalancing),
        }
        ok = (
            bool(assignment)
            and recovered
            and bool(checks["broker_reachable"])
            and bool(checks["delivering"])
            and not self.app.rebalancing
        )
        return ok, checks


async def _unless_done_never_acked(
    handle: Callable[[Sequence[Any]], Awaitable[None]], events: Sequence[Any]
) -> None:
    """take_events acks a batch once it is left, even when its handling raised or was cancelled (a stop
    while the broker is unreachable): its offsets could then be committed unprocessed. A batch that was
    not handled is marked acknowledged in faust's bookkeeping without telling the consumer, so its
    offsets are never committed and the records come again after a restart. (The handlers themselves
    never raise for one record: they dead-letter it, and retry a batch whose tables failed.)"""
    try:
        await handle(events)
    except BaseException:
        for event in events:
            event.message.acked = True
        raise


def tracing_context(raw: Any) -> dict[str, str]:
    """The trace context headers of a consumed record (`traceparent`, `tracestate`)."""
    headers = _headers(raw)
    return {name: headers[name] for name in ("traceparent", "tracestate") if name in headers}


def _millis(record: InboundRecord) -> float | None:
    return record.timestamp.timestamp() * 1000 if record.timestamp else None


def heartbeat_interval(session_timeout: float) -> float:
    return min(3.0, max(0.5, session_timeout / 4))


def build_app(
    settings: Settings,
    rules: RuleBook | RuleVersions,
    *,
    idempotent: bool = False,
    rules_reader: RulesReader | None = None,
) -> tuple[faust.App, Runtime]:
    # faust 0.15.3 drops records when a worker (re)joins: see workers/kafka/faust_fixes.py.
    # Tables settle their changelog writes, and rocksdb:// is the crash-safe store of
    # workers/kafka/durable_tables.py, not faust's own.
    durable_tables.register()
    app = faust.App(
        settings.consumer_group,
        **faust_fixes.apply_to(
            dict(
                broker=[f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")],
                broker_credentials=_credentials(settings),
                store=durable_tables.store_url(settings.store),
                Table=durable_tables.SettlingTable,
                # One folder per consumer group: its tables belong to that group's changelogs, and a
                # RocksDB file read against another group's changelog stops recovery.
                datadir=str(settings.data_dir / settings.consumer_group),
                topic_partitions=settings.partitions,
                # Every topic faust would declare (changelogs, the leader topic) is created before
                # the app starts, with the settings its role needs (workers/kafka/topics.py); with
                # OMS_CREATE_TOPICS=false faust creates nothing at all.
                topic_allow_declare=settings.create_topics,
                topic_replication_factor=settings.replication_factor or 1,
                consumer_auto_offset_reset="earliest",
                # faust's fetch and poll sizes stay: bounding them (256 KiB a partition, a cap on the
                # records of a poll, a smaller stream buffer) kept less of a backlog in memory, but the
                # merge by timestamp then often lacked some partitions' heads and throughput fell to a
                # quarter in some runs (BENCHMARKS.md, "Growth").
                ConsumerScheduler=TimestampOrder.with_ranks(
                    lifecycle_ranks(settings.topic_for),
                    upstream=inbound_topics(settings),
                    grace_ms=settings.intake_grace_ms,
                    max_lag_wait=settings.intake_max_lag_wait_ms / 1000,
                ),
                producer_acks=-1,
                producer_max_batch_size=settings.producer_max_batch_bytes,
                # One size limit: what the worker accepts, writes and stores (OMS_MAX_RECORD_BYTES),
                # plus room for key and headers.
                producer_max_request_size=settings.producer_max_request_bytes,
                producer_linger=settings.producer_linger_ms / 1000,
                # Static membership: faust hands it to aiokafka's consumer (group_instance_id), which
                # then joins with JoinGroup v5 and sends no LeaveGroup when it stops.
                consumer_group_instance_id=settings.group_instance_id,
                broker_session_timeout=settings.session_timeout_seconds,
                # A quarter of the session, at most Kafka's 3 s: a rebalance is learnt from a heartbeat,
                # so a long static session must not slow every member's answer to one.
                broker_heartbeat_interval=heartbeat_interval(settings.session_timeout_seconds),
                broker_commit_interval=settings.commit_interval_seconds,
                table_standby_replicas=0,
                web_enabled=True,
                web_host=settings.web_host,
                web_port=settings.web_port,
                web_bind=settings.web_host,
                # The guarded aiohttp site (connection cap, header deadline, Host check) and TLS.
                **web_app_options(settings),
                processing_guarantee="at_least_once",
            )
        ),
    )
    faust_fixes.set_fetch_max_wait(app, settings.fetch_max_wait_ms)
    setattr(app, faust_fixes.IDEMPOTENT_ATTRIBUTE, idempotent)
    durable_tables.install_checker(app, settings.kafka_client_kwargs())
    tracing: Tracing | None = None
    if settings.tracing != "off":
        # Only here is OpenTelemetry imported: with tracing off the worker never loads it.
        from workers.kafka import tracing as otel

        tracing = otel.build(settings.tracing, settings.tracing_file)
    runtime = Runtime(app, settings, rules, tracing)
    raw: dict[str, Any] = {
        "key_type": None,
        "value_type": None,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    intake_topics = app.topic(*inbound_topics(settings), **raw)
    order_topics = app.topic(runtime.inbound_topic, runtime.ticks_topic, **raw)
    movements_topic = app.topic(runtime.movements_topic, partitions=settings.internal_partitions, **raw)
    size, within = settings.batch_max_records, settings.batch_within_ms / 1000

    async def intake(stream: Any) -> None:
        async for events in stream.take_events(size, within):
            await _unless_done_never_acked(runtime.intake, events)

    async def orders(stream: Any) -> None:
        async for events in stream.take_events(size, within):
            await _unless_done_never_acked(runtime.handle_orders, events)

    async def stock(stream: Any) -> None:
        async for events in stream.take_events(size, within):
            await _unless_done_never_acked(runtime.handle_movements, events)

    app.agent(intake_topics, name="intake")(intake)
    app.agent(order_topics, name="orders")(orders)
    app.agent(movements_topic, name="stock")(stock)
    app.timer(settings.settle_interval_seconds, on_leader=True)(runtime.tick)
    app.timer(settings.ready_probe_interval_seconds)(runtime.probe_broker)
    if rules_reader is not None:
        reader = rules_reader
        reader.handled_until = lambda: max(runtime.stream_time.values(), default=None)

        async def follow_rules() -> None:
            # Refused rules records go out as any dead letter, with the delivery's retries.
            await reader.follow(
                partial(runtime.delivery.deliver, stage="rules"), lambda: bool(app.should_stop)
            )

        app.task(follow_rules)
    install_pages(app, runtime)
    return app, runtime


def _credentials(settings: Settings) -> Any:
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    kwargs = settings.kafka_client_kwargs()
    ssl_context = kwargs.get("ssl_context")
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    assert settings.sasl_username is not None and settings.sasl_password is not None
    mechanism = settings.sasl_mechanism or "PLAIN"
    if mechanism == "PLAIN":
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            ssl_context=ssl_context,
        )
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value(),
        ssl_context=ssl_context,
        mechanism=mechanism,
    )
