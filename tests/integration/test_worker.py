"""The live worker on a real broker process: every inbound message type through Kafka, outputs equal to
replay's, redelivery, dead letters, and a restart that resumes from committed offsets."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from domain import names
from workers.broker import LocalBroker, free_port
from workers.codec import InboundRecord, dumps
from workers.dev import WorkerProcess, collect, local_env, publish, through_kafka
from workers.settings import Settings
from workers.topics import catalogue, create_topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"


@dataclass
class Live:
    settings: Settings
    env: dict[str, str]
    worker: WorkerProcess
    workdir: Path
    now: datetime

    def outputs(self) -> list[str]:
        return [self.settings.topic_for(n) for n in names.OUTBOUND] + [self.settings.dlq_topic]

    def read(self, expected: int, timeout: float = 45.0) -> list[dict[str, Any]]:
        return asyncio.run(collect(self.settings, self.outputs(), expected, timeout)).records

    def restart(self) -> None:
        assert self.worker.stop() == 0, "SIGTERM must stop the worker cleanly (exit 0)"
        self.worker = WorkerProcess(self.env, self.workdir / "worker.log").start()
        self.worker.wait_ready()


@pytest.fixture(scope="module")
def live(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("worker")
    env = local_env(broker.bootstrap, workdir, RULES, free_port())
    tag = uuid.uuid4().hex[:8]
    env.update(
        {"OMS_TOPIC_PREFIX": f"w{tag}.", "OMS_CONSUMER_GROUP": f"oms-{tag}", "OMS_DLQ_TOPIC": f"w{tag}.dlq"}
    )
    settings = Settings.model_validate({k.removeprefix("OMS_").lower(): v for k, v in env.items()})
    asyncio.run(create_topics(settings, catalogue(settings)))
    worker = WorkerProcess(env, workdir / "worker.log").start()
    try:
        worker.wait_ready()
        yield Live(settings, env, worker, workdir, datetime.now(UTC))
    finally:
        worker.stop()


def normalised(records: list[dict[str, Any]], dlq: str) -> dict[tuple[str, str | None], list[Any]]:
    """Per topic and key, in order: message id and value. Dead letters have no order across partitions
    and replay cannot know the partition, offset or key a producer gave them: compared as a sorted set."""
    grouped: dict[tuple[str, str | None], list[Any]] = defaultdict(list)
    for record in records:
        headers = dict(record["headers"])
        if record["topic"] == dlq:
            for varying in ("dlq.original.partition", "dlq.original.offset", "dlq.original.topic"):
                headers.pop(varying)
            grouped[("DLQ", None)].append(json.dumps([headers, record["value"]], sort_keys=True))
        else:
            grouped[(record["topic"].split(".", 1)[1], record["key"])].append(
                (headers["message_id"], record["value"])
            )
    grouped[("DLQ", None)].sort()
    return dict(grouped)


def test_the_example_log_through_kafka_equals_replay(live: Live) -> None:
    found, expected = through_kafka(live.settings, live.worker, LOG, RULES)
    assert len(found.records) == len(expected)
    # Per topic and key: the same records, in the same order, with the same ids, as replay.
    assert normalised(found.records, live.settings.dlq_topic) == normalised(expected, live.settings.dlq_topic)
    published = {json.loads(line)["topic"] for line in LOG.read_text().splitlines()}
    assert set(names.INBOUND) - {names.RESHIPMENT_CREATE} <= published


def _send(live: Live, message: str, params: dict[str, Any], message_id: str, key: str) -> None:
    value = dumps({"jsonrpc": "2.0", "id": message_id, "method": message, "params": params}).encode()
    record = InboundRecord(live.settings.topic_for(message), value, key, {}, 0, 0, live.now)
    asyncio.run(publish(live.settings, [record]))


def _appeasement(order_id: str, amount: str) -> dict[str, Any]:
    return {
        "appeasement": {
            "sales_channel_id": "OCTO",
            "order_id": order_id,
            "user": "it",
            "lines": [
                {"line_number": 1, "amount": amount, "reason": "R", "reason_description": "integration"}
            ],
        }
    }


def test_redelivery_emits_nothing_and_bad_records_go_to_the_dlq(live: Live) -> None:
    before = len(live.read(10**6, timeout=3))
    _send(live, names.APPEASEMENT_CREATE, _appeasement("1234", "1.00"), "it-appease-1", "OCTO:1234")
    _send(live, names.APPEASEMENT_CREATE, _appeasement("1234", "1.00"), "it-appease-1", "OCTO:1234")
    bad = InboundRecord(
        live.settings.topic_for(names.RETURN_AUTHORIZE),
        b"\xff\xfe{",
        "OCTO:1234",
        {"trace": "t-1"},
        0,
        0,
        live.now,
    )
    asyncio.run(publish(live.settings, [bad]))
    _send(live, names.APPEASEMENT_CREATE, _appeasement("1234", "2.00"), "it-appease-2", "OCTO:1234")
    found = live.read(before + 5)
    new = found[before:]
    assert len(found) == before + 5, [r["topic"] for r in new]
    refunds = [
        r["value"]["params"]["refund"]["totals"]["cost_gross"]
        for r in new
        if r["topic"].endswith(names.REFUND_UPDATED)
    ]
    assert refunds == ["1.00", "2.00"]
    (dead,) = [r for r in new if r["topic"] == live.settings.dlq_topic]
    assert dead["headers"]["dlq.error.class"] == "InvalidUtf8" and dead["headers"]["trace"] == "t-1"
    assert dead["headers"]["dlq.original.topic"] == live.settings.topic_for(names.RETURN_AUTHORIZE)
    assert dead["key"] == "OCTO:1234"


def test_restart_resumes_from_committed_offsets_with_tables_intact(live: Live) -> None:
    before = len(live.read(10**6, timeout=3))
    live.restart()
    # Nothing is re-processed after a clean stop …
    assert len(live.read(10**6, timeout=5)) == before
    # … and the order table survived: the next credit note follows the earlier ones.
    _send(live, names.APPEASEMENT_CREATE, _appeasement("1234", "0.50"), "it-appease-3", "OCTO:1234")
    found = live.read(before + 2)
    refund = next(r for r in found[before:] if r["topic"].endswith(names.REFUND_UPDATED))
    totals = refund["value"]["params"]["refund"]
    order = next(r for r in found[before:] if r["topic"].endswith(names.ORDER_UPDATED))
    ledger = order["value"]["params"]["order"]["postsales"]["transactions"]
    assert totals["totals"]["cost_gross"] == "0.50"
    assert [t["amount"] for t in ledger if t["type"] == "REFUND"][-3:] == ["-1.00", "-2.00", "-0.50"]
