"""Traces through the live worker: a `traceparent` on an upstream record is continued with one span per
message, and every record the worker makes of it carries that trace; a dead letter keeps the original's."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from domain import names
from testkit.live import isolated
from testkit.reading import read_until
from tests.unit.harness import appeasement, line, order
from workers.config.settings import Settings
from workers.engine.codec import dumps
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess

pytestmark = pytest.mark.integration

TRACE = {
    "create": ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
    "appease": ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
    "bad": ("5c2a0e6a8f1d4b3c9e7f6a5b4c3d2e1f", "1a2b3c4d5e6f7a8b"),
}


def traceparent(kind: str) -> str:
    trace_id, span_id = TRACE[kind]
    return f"00-{trace_id}-{span_id}-01"


def envelope(name: str, message_id: str, params: dict[str, Any]) -> bytes:
    return dumps({"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}).encode()


async def produce(settings: Settings, records: list[tuple[str, str, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(acks="all", **settings.kafka_client_kwargs())
    await producer.start()
    try:
        for topic, key, value, headers in records:
            await producer.send_and_wait(settings.topic_for(topic), value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()


def spans_in(path: Path, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(text) for text in lines]
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(lines)} spans of {count} written to {path}")
        time.sleep(0.05)


def hex_id(value: str) -> str:
    return value.removeprefix("0x")


def test_a_traced_record_gives_outputs_of_its_trace_and_a_span_per_message(
    broker: LocalBroker, tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    env, settings = isolated(
        broker.bootstrap, tmp_path, None, "o", OMS_TRACING="console", OMS_TRACING_FILE=str(spans_file)
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready(timeout=90)
        create = envelope(names.ORDER_CREATE, "tr-create", order("TR1", [line(1, "SKU-T", "10.00")]))
        appease = envelope(names.APPEASEMENT_CREATE, "tr-appease", appeasement("TR1", [(1, "1.00")]))
        key = "OCTO:TR1"
        asyncio.run(
            produce(
                settings,
                [
                    (
                        names.ORDER_CREATE,
                        key,
                        create,
                        [("traceparent", traceparent("create").encode()), ("tracestate", b"vendor=abc")],
                    )
                ],
            )
        )
        worker.wait_handled(1, timeout=60)
        asyncio.run(
            produce(
                settings,
                [
                    (
                        names.APPEASEMENT_CREATE,
                        key,
                        appease,
                        [("traceparent", traceparent("appease").encode())],
                    ),
                    (
                        names.ORDER_CREATE,
                        "OCTO:BAD",
                        b"{not json",
                        [("traceparent", traceparent("bad").encode())],
                    ),
                ],
            )
        )
        wanted = {
            settings.topic_for(names.STOCK_ADJUSTED),
            settings.topic_for(names.REFUND_UPDATED),
            settings.topic_for(names.ORDER_UPDATED),
            settings.dlq_topic,
        }
        outputs = asyncio.run(
            read_until(
                settings,
                sorted(wanted),
                lambda records: wanted <= {r["topic"] for r in records},
                timeout=60,
            )
        )
        spans = spans_in(spans_file, 3)
    finally:
        assert worker.stop() == 0

    # One span per message, each the child of the span its upstream record named.
    by_trace = {hex_id(s["context"]["trace_id"]): s for s in spans}
    assert len(spans) == 3 and set(by_trace) == {trace_id for trace_id, _ in TRACE.values()}
    for kind, (trace_id, parent_id) in TRACE.items():
        span = by_trace[trace_id]
        assert hex_id(span["parent_id"]) == parent_id
        assert span["name"] == (names.APPEASEMENT_CREATE if kind == "appease" else names.ORDER_CREATE)
    created, appeased, bad = (by_trace[TRACE[k][0]] for k in ("create", "appease", "bad"))
    assert created["attributes"]["oms.order_key"] == key and created["attributes"]["oms.outcome"] == "applied"
    assert (
        appeased["attributes"]["oms.order_key"] == key and appeased["attributes"]["oms.outcome"] == "applied"
    )
    assert bad["attributes"]["oms.outcome"] == "dead_letter" and bad["status"]["status_code"] == "ERROR"

    # Every output carries the trace of the message that made it, as a child of that message's span.
    worker_span = {TRACE[k][0]: hex_id(by_trace[TRACE[k][0]]["context"]["span_id"]) for k in TRACE}
    cause_trace = {"tr-create": TRACE["create"][0], "tr-appease": TRACE["appease"][0]}
    checked = set()
    for record in outputs:
        headers = record["headers"]
        if record["topic"] == settings.dlq_topic:
            assert headers["traceparent"] == traceparent("bad")  # the original's, unchanged
            checked.add("dlq")
            continue
        _version, trace_id, parent, _flags = headers["traceparent"].split("-")
        if record["topic"] == settings.topic_for(names.STOCK_ADJUSTED):
            # Through the stock movements topic and the stock agent: the create's trace.
            assert (trace_id, parent) == (TRACE["create"][0], worker_span[TRACE["create"][0]])
        else:
            expected = cause_trace[headers["causation_id"]]
            assert (trace_id, parent) == (expected, worker_span[expected])
        if trace_id == TRACE["create"][0]:
            assert headers["tracestate"] == "vendor=abc"
        checked.add(record["topic"])
    assert checked == (wanted - {settings.dlq_topic}) | {"dlq"}
