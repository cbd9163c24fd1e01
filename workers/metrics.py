"""Prometheus metrics of the worker, on their own registry (served at /metrics).

Labels stay few (topic, outcome, error class, code, partition) so the series count stays bounded.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS = Counter(
    "oms_records", "Inbound records handled, by topic and outcome", ["topic", "outcome"], registry=REGISTRY
)
EMITTED = Counter("oms_emitted_records", "Records published, by topic", ["topic"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "oms_dead_letters", "Records sent to the dead-letter topic", ["error_class"], registry=REGISTRY
)
REJECTIONS = Counter("oms_rejections", "Messages the rules refused, by code", ["code"], registry=REGISTRY)
PROCESSING = Histogram(
    "oms_processing_seconds",
    "Time from the start of an inbound record's batch until its outputs were delivered and its state stored",
    ["topic"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DELIVERY_RETRIES = Counter(
    "oms_delivery_retries",
    "Records sent again after a transient delivery failure (broker unreachable or slow)",
    registry=REGISTRY,
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
LAG = Gauge(
    "oms_consumer_lag",
    "Highwater minus position per assigned partition (the local Tansu broker reports highwater wrongly "
    "after batched writes: read this on Apache Kafka)",
    ["topic", "partition"],
    registry=REGISTRY,
)


def observe(topic: str, processed: Any, seconds: float) -> None:
    RECORDS.labels(topic, processed.status).inc()
    PROCESSING.labels(topic).observe(seconds)
    if processed.status == "dead_letter":
        DEAD_LETTERS.labels(processed.detail or "unknown").inc()
    elif processed.status == "rejected":
        REJECTIONS.labels(processed.detail or "unknown").inc()


def update_lag(app: Any) -> None:
    consumer = getattr(app, "consumer", None)
    if consumer is None:
        return
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        position = consumer._committed_offset.get(tp) if hasattr(consumer, "_committed_offset") else None
        if highwater is not None and position is not None:
            LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))


def exposition() -> tuple[bytes, str]:
    # aiohttp takes the charset apart from the content type; the exposition format is UTF-8 anyway.
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")
