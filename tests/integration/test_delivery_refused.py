"""One size limit, live: what the worker reads, writes and stores agree (OMS_MAX_RECORD_BYTES). A record
over it is dead-lettered by the intake; a message that would grow its order past it is refused
ORDER_TOO_LARGE with the order left as it was (its changelog record could never be written: the
partition would stop); the records after both are handled, and the worker never exits on them. What the
broker itself refuses (a topic whose max.message.bytes is smaller) becomes a DeliveryFailed dead letter:
tests/unit/test_kafka_rules.py injects those refusals at the client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from domain import names
from testkit.live import isolated
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
from testkit.reading import read_until  # noqa: E402


def create(order_id: str, lines: int = 1) -> dict[str, Any]:
    """The example log's first order, as another order of its own: `lines` lines of one SKU."""
    with (ROOT / "examples" / "message-log.jsonl").open() as log:
        example = next(json.loads(line)["value"] for line in log if names.ORDER_CREATE in line)
    order = example["params"]["order"]
    first = {**order["lines"][0], "sku": f"SKU-{order_id}"}
    note = [{"name": "note", "value": "n" * 4000}] if lines > 1 else []
    many = [
        {**first, "id": f"L{n}", "line_number": n, "custom_attributes": note} for n in range(1, lines + 1)
    ]
    order = {**order, "id": order_id, "store": "BIG", "lines": many}
    return {
        "jsonrpc": "2.0",
        "id": f"big-{order_id}",
        "method": names.ORDER_CREATE,
        "params": {"order": order},
    }


async def send(bootstrap: str, topic: str, values: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4_000_000, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, json.dumps(value).encode())
    finally:
        await producer.stop()


def test_records_and_orders_past_the_one_size_limit_are_refused_and_the_partition_goes_on(
    broker: LocalBroker, tmp_path: Path
) -> None:
    limit = 280_000
    env, settings = isolated(broker.bootstrap, tmp_path, None, "d", OMS_MAX_RECORD_BYTES=str(limit))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        huge, big, small = create("huge", lines=300), create("big", lines=60), create("small")
        # The big order's create fits one record; stored with its lines' state it would not.
        assert len(json.dumps(huge)) > limit > len(json.dumps(big)) > 0.9 * limit
        asyncio.run(send(broker.bootstrap, settings.topic_for(names.ORDER_CREATE), [huge, big, small]))
        adjusted, dlq = settings.topic_for(names.STOCK_ADJUSTED), settings.dlq_topic
        errors = settings.topic_for(names.ERROR_NOTIFY)

        def done(found: list[dict[str, Any]]) -> bool:
            return all(any(r["topic"] == t for r in found) for t in (adjusted, dlq, errors))

        found = asyncio.run(read_until(settings, [adjusted, dlq, errors], done, 60.0))
    finally:
        assert worker.stop() == 0
    (dead,) = [r for r in found if r["topic"] == dlq]
    assert dead["headers"]["dlq.error.class"] == "PayloadTooLarge"
    assert dead["headers"]["dlq.original.topic"] == settings.topic_for(names.ORDER_CREATE)
    (refused,) = [r["value"]["params"] for r in found if r["topic"] == errors]
    assert refused["code"] == "ORDER_TOO_LARGE" and f"{limit}" in refused["message"]
    # Neither reserved stock; the record after them was handled.
    skus = [
        r["value"]["params"]["adjustment"]["adjustments"][0]["sku"] for r in found if r["topic"] == adjusted
    ]
    assert skus == ["SKU-small"]
