"""A record the broker can never take does not block its partition: the record that caused it becomes a
dead letter with the broker's reason, and the records after it are handled."""

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


def test_a_record_the_broker_refuses_is_dead_lettered_with_its_reason(
    broker: LocalBroker, tmp_path: Path
) -> None:
    # The worker takes records up to 3 MB, its producer sends at most 1 MB: the intake's forward of a
    # 1.2+ MB order can never be delivered.
    env, settings = isolated(broker.bootstrap, tmp_path, None, "d", OMS_MAX_RECORD_BYTES="3000000")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        big, small = create("huge", lines=300), create("small")
        assert 1_200_000 < len(json.dumps(big)) < 3_000_000
        asyncio.run(send(broker.bootstrap, settings.topic_for(names.ORDER_CREATE), [big, small]))
        adjusted, dlq = settings.topic_for(names.STOCK_ADJUSTED), settings.dlq_topic

        def done(found: list[dict[str, Any]]) -> bool:
            return any(r["topic"] == dlq for r in found) and any(r["topic"] == adjusted for r in found)

        found = asyncio.run(read_until(settings, [adjusted, dlq], done, 60.0))
    finally:
        assert worker.stop() == 0
    (dead,) = [r for r in found if r["topic"] == dlq]
    headers = dead["headers"]
    assert headers["dlq.error.class"] == "DeliveryFailed"
    assert "MessageSizeTooLargeError" in headers["dlq.error.message"]
    assert headers["dlq.original.topic"] == settings.topic_for(names.ORDER_CREATE)
    # The dead letter would be as large: it carries the size instead of the value.
    assert int(headers["dlq.value.omitted"]) > 1_200_000 and dead["value"] in ("", None, b"")
    # The record after it was handled: the small order reserved its stock.
    skus = [
        r["value"]["params"]["adjustment"]["adjustments"][0]["sku"] for r in found if r["topic"] == adjusted
    ]
    assert skus == ["SKU-small"]
