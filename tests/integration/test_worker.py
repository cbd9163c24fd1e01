"""The live worker on a real broker process: every inbound message type through Kafka, outputs equal to
replay's, redelivery, dead letters, and a restart that resumes from committed offsets."""

from __future__ import annotations

import asyncio
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
from workers.dev import WorkerProcess, collect, expected_outputs, keyed, local_env, publish, stamped
from workers.pipeline import Pipeline
from workers.rules_file import load_rules
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
    """Per topic and key, in order: message id and value (dead letters: where they came from aside)."""
    grouped: dict[tuple[str, str | None], list[Any]] = defaultdict(list)
    for record in records:
        headers = dict(record["headers"])
        topic = "DLQ" if record["topic"] == dlq else record["topic"].split(".", 1)[1]
        if topic == "DLQ":
            for varying in ("dlq.original.partition", "dlq.original.offset", "dlq.original.topic"):
                headers.pop(varying)
            grouped[(topic, record["key"])].append((headers, record["value"]))
        else:
            grouped[(topic, record["key"])].append((headers["message_id"], record["value"]))
    return dict(grouped)


def prefixed(records: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    return [
        {
            **r,
            "topic": settings.topic_prefix + r["topic"]
            if r["topic"] != names.DEFAULT_DLQ_TOPIC
            else settings.dlq_topic,
        }
        for r in records
    ]


def test_the_example_log_through_kafka_equals_replay(live: Live) -> None:
    pipeline = Pipeline(load_rules(RULES))
    records = [
        InboundRecord(
            live.settings.topic_prefix + r.topic,
            r.value,
            r.key,
            r.headers,
            r.partition,
            r.offset,
            r.timestamp,
        )
        for r in keyed(stamped(LOG, live.now), pipeline)
    ]
    asyncio.run(publish(live.settings, records))
    expected = prefixed(expected_outputs(LOG, RULES, live.settings.partitions, live.now), live.settings)
    found = live.read(len(expected))
    assert len(found) == len(expected)
    assert normalised(found, live.settings.dlq_topic) == normalised(
        [{**r, "topic": r["topic"]} for r in expected], live.settings.dlq_topic
    )
    inbound_types = {r.topic.split(".", 1)[1] for r in records}
    assert set(names.INBOUND) - {names.RESHIPMENT_CREATE} <= inbound_types


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
