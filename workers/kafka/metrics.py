"""Prometheus metrics of the worker, on their own registry (served at /metrics).

Labels stay few (topic, outcome, error class, code, partition) so the series count stays bounded.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
# The standard process (CPU, memory, file descriptors) and Python (version, GC) series, on our registry.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)


def _version() -> str:
    try:
        return version("oms-postsales")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


BUILD_INFO = Gauge(
    "oms_build_info", "Always 1; the label says which version runs", ["version"], registry=REGISTRY
)
BUILD_INFO.labels(_version()).set(1)

RECORDS = Counter(
    "oms_records", "Inbound records handled, by topic and outcome", ["topic", "outcome"], registry=REGISTRY
)
FOLLOW_UPS = Counter(
    "oms_follow_ups",
    "Messages the worker made for other orders (an exchange's child order, its cancel), by message, outcome",
    ["message", "outcome"],
    registry=REGISTRY,
)
EMITTED = Counter("oms_emitted_records", "Records published, by topic", ["topic"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "oms_dead_letters", "Records sent to the dead-letter topic", ["error_class"], registry=REGISTRY
)
# Per rules key (a sales channel, * for the defaults): the highest rule set version this worker has read
# from the rules topic; a worker that lags behind a publication shows a lower number.
RULES_VERSION = Gauge(
    "oms_rules_version",
    "Latest rule set version read from the rules topic, by sales channel (* the defaults)",
    ["sales_channel"],
    registry=REGISTRY,
)
RULES_REFUSED = Counter(
    "oms_rules_records_refused", "Rules records refused (dead-lettered while following)", registry=REGISTRY
)
INTAKE_UNORDERED = Counter(
    "oms_intake_forwarded_while_lagging",
    "Upstream records the intake forwarded while another upstream partition had been behind longer than "
    "OMS_INTAKE_MAX_LAG_WAIT_MS: their order against that partition's records is not promised",
    registry=REGISTRY,
)
INTAKE_WAITS = Counter(
    "oms_intake_order_waits",
    "Times the intake began holding records back for another upstream partition, by reason "
    "(behind: records fetched or known on the broker; stale: not fetched since; grace: the grace wait; "
    "paused: the partition's records cannot be handed on now)",
    ["reason"],
    registry=REGISTRY,
)
REJECTIONS = Counter("oms_rejections", "Messages the rules refused, by code", ["code"], registry=REGISTRY)
PROCESSING = Histogram(
    "oms_processing_seconds",
    "Time from the start of an inbound record's batch until its outputs were delivered and its state stored",
    ["topic"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_SECONDS = Histogram(
    "oms_batch_seconds",
    "Time to handle one batch of a stage (intake, orders, stock), its delivery and table writes included",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
WAITING = Gauge(
    "oms_orders_waiting",
    "Orders with messages waiting (for the order, or for a message they depend on), by partition",
    ["partition"],
    registry=REGISTRY,
)
ORDERS_IN_STATE = Gauge(
    "oms_orders_in_state",
    "Orders kept in state, by partition: created by this version on, minus those that left (retention)",
    ["partition"],
    registry=REGISTRY,
)
ORDERS_ARCHIVED = Counter(
    "oms_orders_archived",
    "Orders that left state once their retention ended, on their next message or by the sweep",
    registry=REGISTRY,
)
DELIVERY_RETRIES = Counter(
    "oms_delivery_retries",
    "Deliveries of outputs retried because the broker did not acknowledge them, by error class",
    ["error_class"],
    registry=REGISTRY,
)
TABLE_REBUILDS = Counter(
    "oms_table_rebuilds",
    "Local table partitions deleted at assignment and restored from their changelog, because their "
    "RocksDB folder was not a prefix of the changelog (older version, changelog recreated, foreign folder)",
    ["table"],
    registry=REGISTRY,
)
READY = Gauge("oms_ready", "1 while /ready answers 200, else 0 (updated at every scrape)", registry=REGISTRY)
LAG = Gauge(
    "oms_consumer_lag",
    "Records not read yet per assigned partition: the partition's high-water mark minus the consumer's "
    "position (the offset of the next record it will read), not minus the committed offset. The local "
    "Tansu broker reports the high-water mark wrongly after multi-record batches: read this on Kafka",
    ["topic", "partition"],
    registry=REGISTRY,
)


def observe(topic: str, processed: Any, seconds: float, *, follow_up: bool = False) -> None:
    if follow_up:
        FOLLOW_UPS.labels(processed.message_name or topic, processed.status).inc()
    else:
        RECORDS.labels(topic, processed.status).inc()
    PROCESSING.labels(topic).observe(seconds)
    if processed.status == "dead_letter":
        DEAD_LETTERS.labels(processed.detail or "unknown").inc()
    elif processed.status == "rejected":
        REJECTIONS.labels(processed.detail or "unknown").inc()


def lag_of(consumer: Any, tp: Any) -> int | None:
    """Records of a partition on the broker the consumer has not read yet (None: not known)."""
    # faust keeps the offset of the last record it read per partition; the position is the one after it.
    last_read = getattr(consumer, "_read_offset", {}).get(tp)
    position = last_read + 1 if last_read is not None else getattr(consumer, "_committed_offset", {}).get(tp)
    highwater = consumer.highwater(tp)
    if highwater is None or position is None:
        return None
    return max(0, int(highwater) - int(position))


def update_lag(app: Any) -> None:
    consumer = getattr(app, "consumer", None)
    if consumer is None:
        return
    for tp in consumer.assignment():
        lag = lag_of(consumer, tp)
        if lag is not None:
            LAG.labels(tp.topic, str(tp.partition)).set(lag)


def exposition() -> tuple[bytes, str]:
    # aiohttp takes the charset apart from the content type; the exposition format is UTF-8 anyway.
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")
