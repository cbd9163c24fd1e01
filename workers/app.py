"""The Kafka runner: a faust-streaming app built in a function (no module-level app), running the same
pipeline as `replay` with faust tables as the stores.

Agents
- orders: every order-keyed inbound topic, plus the settle ticks, co-partitioned by
  "<sales channel>:<order id>", so one order's messages are handled one at a time;
- sources: stock snapshots; their per-SKU movements go to the internal movements topic;
- stock: the movements topic, keyed "<source>:<sku>", applied to the stock table.

Per record, outputs are delivered (acknowledged by the broker) before the tables are written; faust
flushes the producer before it commits offsets. A crash before the table write re-delivers the record
and re-emits the same ids (derived ids, remembered credit note numbers); a crash after it finds the
message id already applied and emits nothing. Delivery is at-least-once, effects exactly-once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import faust
import structlog
from pydantic import TypeAdapter

from domain import names
from domain.outcome import Movement
from domain.rules import RuleBook
from domain.state import OrderState, Series, StockItem, TakenNumbers
from domain.timeutil import iso
from workers import faust_fixes, metrics
from workers.codec import DecodeError, InboundRecord, OutboundRecord, dead_letter, dumps, loads
from workers.pipeline import Pipeline, Processed, Stores, Topics
from workers.settings import Settings
from workers.topics import STOCK_MOVEMENTS, TICKS, order_keyed_topics

log = structlog.get_logger("oms_postsales.worker")

V = TypeVar("V")

# Backoff for deliveries while the broker is unreachable: transient failures are retried, never
# dead-lettered (STACK.md), and the worker reports not-ready meanwhile.
RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0


class TableMap(MutableMapping[str, V], Generic[V]):
    """A faust table of JSON text seen as a typed mapping; the pipeline never knows it is Kafka."""

    def __init__(self, table: Any, adapter: TypeAdapter[V]) -> None:
        self._table = table
        self._adapter = adapter

    def __getitem__(self, key: str) -> V:
        raw = self._table.get(key)
        if raw is None:
            raise KeyError(key)
        return self._adapter.validate_json(raw)

    def __setitem__(self, key: str, value: V) -> None:
        self._table[key] = self._adapter.dump_json(value).decode("utf-8")

    def __delitem__(self, key: str) -> None:
        del self._table[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._table.keys()))

    def __len__(self) -> int:
        return len(self._table)


def _headers(raw: Any) -> dict[str, str]:
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    headers: dict[str, str] = {}
    for name, value in items:
        headers[str(name)] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return headers


def inbound(message: Any) -> InboundRecord:
    return InboundRecord(
        topic=message.topic,
        value=message.value or b"",
        key=message.key.decode("utf-8", "replace") if message.key is not None else None,
        headers=_headers(message.headers),
        partition=message.partition,
        offset=message.offset,
        timestamp=datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None,
    )


def movement_record(movement: Movement, topic: str) -> OutboundRecord:
    return OutboundRecord(topic, movement.key, {}, dumps(asdict(movement)).encode("utf-8"))


class Runtime:
    """What the agents share: the pipeline over faust tables, delivery with retries, readiness."""

    def __init__(self, app: faust.App, settings: Settings, rules: RuleBook) -> None:
        self.app = app
        self.settings = settings
        partitions = settings.partitions
        self.orders_table = app.Table("orders", key_type=str, value_type=str, partitions=partitions)
        self.series_table = app.Table("series", key_type=str, value_type=str, partitions=partitions)
        self.waiting_table = app.Table("waiting", key_type=str, value_type=str, partitions=partitions)
        self.stock_table = app.Table(
            "stock", key_type=str, value_type=str, partitions=settings.internal_partitions
        )
        self.skus_table = app.Table("source-skus", key_type=str, value_type=str, partitions=partitions)
        self.taken_table = app.Table("taken-numbers", key_type=str, value_type=str, partitions=partitions)
        self.upstream_table = app.Table(
            "upstream-numbers", key_type=str, value_type=str, partitions=partitions
        )
        self.stores = Stores(
            orders=TableMap(self.orders_table, TypeAdapter(OrderState)),
            stock=TableMap(self.stock_table, TypeAdapter(StockItem)),
            series=TableMap(self.series_table, TypeAdapter(Series)),
            source_skus=TableMap(self.skus_table, TypeAdapter(list[str])),
            taken=TableMap(self.taken_table, TypeAdapter(TakenNumbers)),
            upstream=TableMap(self.upstream_table, TypeAdapter(str)),
        )
        self.waiting: TableMap[list[str]] = TableMap(self.waiting_table, TypeAdapter(list[str]))
        mapping = {name: settings.topic_for(name) for name in names.INBOUND + names.OUTBOUND}
        self.pipeline = Pipeline(
            rules,
            stores=self.stores,
            topics=Topics(mapping, settings.dlq_topic),
            max_record_bytes=settings.max_record_bytes,
        )
        self.movements_topic = settings.topic_prefix + STOCK_MOVEMENTS
        self.ticks_topic = settings.topic_prefix + TICKS
        self.delivering_ok = True
        self.delivery_since: float | None = None
        self.broker_ok = False
        self.broker_checked = 0.0
        self.started = time.monotonic()
        self.last_record = time.monotonic()

    async def deliver(self, records: list[OutboundRecord]) -> None:
        delay = RETRY_FIRST_SECONDS
        self.delivery_since = time.monotonic()
        while True:
            try:
                pending = [
                    await self.app.producer.send(
                        record.topic,
                        record.key.encode("utf-8") if record.key is not None else None,
                        record.value,
                        None,
                        None,
                        [(name, value.encode("utf-8")) for name, value in record.headers.items()],
                    )
                    for record in records
                ]
                for future in pending:
                    await future
            except Exception as exc:
                self.delivering_ok = False
                log.warning("delivery.retry", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            self.delivering_ok = True
            self.delivery_since = None
            for record in records:
                metrics.EMITTED.labels(record.topic).inc()
            return

    async def finish(self, processed: Processed, partition: int) -> None:
        """Deliver, then store: the order that makes a crash re-deliver instead of losing."""
        await self.deliver(processed.records)
        await self.deliver([movement_record(m, self.movements_topic) for m in processed.movements])
        self.pipeline.store(processed)
        if processed.orders:
            slot = f"p{partition}"
            keys = dict.fromkeys(self.waiting.get(slot, []))
            for order in processed.orders:
                if order.held:
                    keys[order.key] = None
                else:
                    keys.pop(order.key, None)
            self.waiting[slot] = list(keys)
            metrics.WAITING.labels(str(partition)).set(len(keys))

    async def handle_order_event(self, message: Any) -> None:
        self.last_record = time.monotonic()
        if message.topic == self.ticks_topic:
            now = datetime.fromisoformat(loads(message.value)["now"])
            keys = self.waiting.get(f"p{message.partition}", [])
            if keys:
                await self.finish(
                    self.pipeline.settle(keys, now, partition=message.partition), message.partition
                )
            return
        record = inbound(message)
        started = time.perf_counter()
        processed = self.pipeline.process(record)
        await self.finish(processed, record.partition)
        metrics.observe(record.topic, processed, time.perf_counter() - started)

    async def handle_snapshot_event(self, message: Any) -> None:
        self.last_record = time.monotonic()
        record = inbound(message)
        started = time.perf_counter()
        processed = self.pipeline.process(record)
        await self.finish(processed, record.partition)
        metrics.observe(record.topic, processed, time.perf_counter() - started)

    async def handle_movement_event(self, message: Any) -> None:
        self.last_record = time.monotonic()
        movement = Movement(**loads(message.value))
        item, record = self.pipeline.apply_movement(movement)
        if record is not None:
            await self.deliver([record])
        self.stores.stock[movement.key] = item

    async def guarded(self, handler: Callable[[Any], Awaitable[None]], message: Any) -> None:
        """An exception escaping an agent makes faust skip the record and commit past it: lost without a
        trace. A failure that is not the input's fault is logged and the record dead-lettered instead."""
        try:
            await handler(message)
        except Exception as exc:
            log.exception(
                "record.failed", topic=message.topic, partition=message.partition, offset=message.offset
            )
            error = DecodeError("InternalError", f"{type(exc).__name__} while processing; see the worker log")
            dead = dead_letter(inbound(message), error, self.settings.dlq_topic, datetime.now(UTC))
            await self.deliver([dead])
            metrics.DEAD_LETTERS.labels("InternalError").inc()

    async def tick(self) -> None:
        payload = dumps({"now": iso(datetime.now(UTC))}).encode("utf-8")
        for partition in range(self.settings.partitions):
            await self.app.producer.send(self.ticks_topic, b"tick", payload, partition, None, None)

    async def probe_broker(self) -> None:
        """Ask the broker for metadata over the producer's connections; a stalled broker keeps them
        open and never answers, so only a timeout tells."""
        client = getattr(getattr(self.app.producer, "_producer", None), "client", None)
        try:
            if client is None:
                raise RuntimeError("producer not started")
            await asyncio.wait_for(
                client.fetch_all_metadata(), timeout=self.settings.ready_probe_timeout_seconds
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
        pending = now - self.delivery_since if self.delivery_since is not None else 0.0
        # A probe answer older than a few intervals counts as none: the probe itself may be hanging.
        fresh = now - self.broker_checked <= 2 * self.settings.ready_probe_interval_seconds + (
            self.settings.ready_probe_timeout_seconds
        )
        checks = {
            "partitions_assigned": len(assignment),
            "recovery_done": recovered,
            "broker_reachable": self.broker_ok and fresh,
            "delivering": self.delivering_ok and pending <= self.settings.ready_max_delivery_seconds,
            "delivery_pending_seconds": round(pending, 1),
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


def build_app(settings: Settings, rules: RuleBook) -> tuple[faust.App, Runtime]:
    # faust 0.15.3 drops records when a worker (re)joins: see workers/faust_fixes.py.
    app = faust.App(
        settings.consumer_group,
        **faust_fixes.apply_to(
            dict(
                broker=[f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")],
                broker_credentials=_credentials(settings),
                store=settings.store,
                datadir=str(settings.data_dir),
                topic_partitions=settings.partitions,
                topic_replication_factor=settings.replication_factor,
                consumer_auto_offset_reset="earliest",
                producer_acks=-1,
                producer_max_batch_size=settings.producer_max_batch_bytes,
                broker_session_timeout=settings.session_timeout_seconds,
                broker_heartbeat_interval=max(0.5, settings.session_timeout_seconds / 4),
                broker_commit_interval=settings.commit_interval_seconds,
                table_standby_replicas=0,
                web_enabled=True,
                web_host=settings.web_host,
                web_port=settings.web_port,
                web_bind=settings.web_host,
                processing_guarantee="at_least_once",
            )
        ),
    )
    runtime = Runtime(app, settings, rules)
    raw: dict[str, Any] = {
        "key_type": None,
        "value_type": None,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    order_topics = app.topic(*order_keyed_topics(settings), runtime.ticks_topic, **raw)
    snapshot_topic = app.topic(settings.topic_for(names.STOCK_UPDATE), **raw)
    movements_topic = app.topic(runtime.movements_topic, partitions=settings.internal_partitions, **raw)

    async def orders(stream: Any) -> None:
        async for event in stream.events():
            await runtime.guarded(runtime.handle_order_event, event.message)

    async def sources(stream: Any) -> None:
        async for event in stream.events():
            await runtime.guarded(runtime.handle_snapshot_event, event.message)

    async def stock(stream: Any) -> None:
        async for event in stream.events():
            await runtime.guarded(runtime.handle_movement_event, event.message)

    app.agent(order_topics, name="orders")(orders)
    app.agent(snapshot_topic, name="sources")(sources)
    app.agent(movements_topic, name="stock")(stock)
    app.timer(settings.settle_interval_seconds, on_leader=True)(runtime.tick)
    app.timer(settings.ready_probe_interval_seconds)(runtime.probe_broker)
    _pages(app, runtime)
    return app, runtime


def _pages(app: faust.App, runtime: Runtime) -> None:
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "uptime_seconds": round(time.monotonic() - runtime.started, 1)})

    async def ready(web: Any, request: Any) -> Any:
        ok, checks = runtime.ready()
        return web.json({"ready": ok, **checks}, status=200 if ok else 503)

    async def prometheus(web: Any, request: Any) -> Any:
        metrics.update_lag(app)
        body, content_type = metrics.exposition()
        return web.bytes(body, content_type=content_type)

    app.page("/health")(health)
    app.page("/ready")(ready)
    app.page("/metrics")(prometheus)


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
