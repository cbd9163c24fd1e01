"""A backfill: a retailer moving from MOM publishes months-old history, as an upstream would (librdkafka
with its defaults, no key, one topic per message, the records' original timestamps), before and while
the worker runs. Kafka deletes a segment by its newest record timestamp: had the worker forwarded those
records to its internal topic with their own old timestamps, a cluster with the default 7-day
retention would delete them before they were handled. The worker stamps what it writes with the
moment it writes it and carries the message time in the `oms.time` header; its decisions (credit note
dates, return windows, holds) stay those of replay on the log's own times."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from domain import names
from testkit.live import isolated, normalised
from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.engine.codec import dumps, loads
from workers.engine.ordering import TIME_HEADER
from workers.kafka.topics import INBOUND_TOPIC
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, collect
from workers.replay.runner import replay

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
# Messages the example log leaves waiting for ever (an order that never comes, a line never shipped):
# replay settles them at the end of its input, the worker at a settle tick once it has caught up,
# which is not what this test is about.
NEVER_SETTLED = {
    "st1-12346-unshipped-return",
    "doshii-1513-full-refund",
    "doshii-unknown-refund",
    "octo-1240-early-return",
}
DAYS_AGO = 60


def _history(start_ms: int) -> list[dict[str, Any]]:
    """The example log as it was written 60 days ago, a second apart."""
    lines = []
    for line in LOG.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        item = loads(line)
        value = item["value"]
        if isinstance(value, dict) and value.get("id") in NEVER_SETTLED:
            continue
        lines.append({**item, "timestamp": start_ms + 1000 * len(lines)})
    return lines


@pytest.fixture
def upstream(broker: LocalBroker, tmp_path: Path) -> Iterator[tuple[dict[str, str], Settings]]:
    yield isolated(broker.bootstrap, tmp_path, RULES, "b", OMS_STORE="rocksdb://")


def _produce(settings: Settings, lines: list[dict[str, Any]]) -> None:
    """Unkeyed, librdkafka's defaults, each record with its original timestamp; no wait for the worker."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for item in lines:
        value = item["value"]
        raw = value.encode("utf-8") if isinstance(value, str) else dumps(value).encode("utf-8")
        producer.produce(settings.topic_prefix + item["topic"], raw, timestamp=item["timestamp"])
    assert producer.flush(30) == 0


def test_a_sixty_day_old_history_gives_replays_outputs_and_internal_records_carry_its_time(
    upstream: tuple[dict[str, str], Settings], tmp_path: Path
) -> None:
    env, settings = upstream
    start = datetime.now(UTC) - timedelta(days=DAYS_AGO)
    history = _history(int(start.timestamp() * 1000))
    out = io.StringIO()
    replay((dumps(item) for item in history), out, load_rules(RULES), partitions=settings.partitions)
    expected = [
        {
            **r,
            "topic": settings.dlq_topic
            if r["topic"] == names.DEFAULT_DLQ_TOPIC
            else settings.topic_prefix + r["topic"],
        }
        for r in map(loads, out.getvalue().splitlines())
    ]
    # The whole history is on the broker before the worker starts, as when a retailer loads it ahead
    # of the switch-over (records of one order on several topics fetched apart are the subject of the
    # ordering rule, not of this test).
    _produce(settings, history)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        outputs = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
        found = asyncio.run(collect(settings, outputs, len(expected), timeout=60))
        worker.wait_handled(len(history), timeout=60)
    finally:
        worker.stop()
    live, offline = _comparable(found.records, settings), _comparable(expected, settings)
    assert live == offline
    notes = [r for r in found.records if r["topic"].endswith(names.REFUND_UPDATED)]
    assert notes and all(
        r["value"]["params"]["refund"]["credit_note_date"] < (start + timedelta(days=1)).isoformat()
        for r in notes
    )

    internal = asyncio.run(_read_all(settings, settings.topic_prefix + INBOUND_TOPIC))
    sent = {item["timestamp"] for item in history}
    upstream_records = [r for r in internal if "oms.follow_up.of" not in r[1]]
    assert len(upstream_records) >= len(history) - 3  # the log's undecodable records are dead-lettered
    written_after = datetime.now(UTC) - timedelta(hours=1)
    for timestamp_ms, headers in internal:
        # The message time of the history, in the header; the record itself dated when written.
        assert int(headers[TIME_HEADER]) in sent or "oms.follow_up.of" in headers
        assert datetime.fromtimestamp(timestamp_ms / 1000, UTC) > written_after


def _comparable(records: list[dict[str, Any]], settings: Settings) -> dict[Any, Any]:
    """Every output as replay's, except the levels stock adjustments publish in between: movements of
    one SKU come from several orders, which Kafka does not order among themselves (README, known
    limits); there the same adjustments (message ids) per SKU."""
    grouped = normalised(records, settings.dlq_topic)
    for key, items in grouped.items():
        if key[0] == names.STOCK_ADJUSTED:
            grouped[key] = sorted(message_id for message_id, _value in items)
    return grouped


async def _read_all(settings: Settings, topic: str) -> list[tuple[int, dict[str, str]]]:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.kafka_client_kwargs())
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        for part in parts:
            consumer.seek(part, 0)
        found: list[tuple[int, dict[str, str]]] = []
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    found.append((record.timestamp, headers))
        return found
    finally:
        await consumer.stop()
