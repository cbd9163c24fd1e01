"""End-to-end throughput and latency of the worker on the local Tansu broker, against a bare aiokafka
consume → json → produce → commit pipe on the same broker, measured in the same run.

    .venv/bin/python bench/worker_throughput.py [--orders 1000] [--out BENCHMARKS.md]

Traffic: per order a create, a shipment of all lines and a return of one line (3 inbound messages, each
producing order, return, refund and stock records). Latency of an inbound message = time from its send
(the producer's record timestamp) to the broker timestamp of the first record it caused (matched by
the `correlation_id` header). The baseline pipe copies each record to an output topic; its latency is
measured the same way. Both read a backlog published before they start, then a live trickle.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain import names  # noqa: E402
from workers.broker import LocalBroker  # noqa: E402
from workers.codec import dumps, loads  # noqa: E402
from workers.dev import WorkerProcess, isolated  # noqa: E402
from workers.settings import Settings  # noqa: E402
from workers.topics import TopicSpec, create_topics  # noqa: E402


def traffic(orders: int, start: int = 0) -> list[tuple[str, str, bytes]]:
    """(topic, key, value) for `orders` orders: create, ship, return one line."""
    out: list[tuple[str, str, bytes]] = []
    for n in range(start, start + orders):
        order_id = f"B{n:06d}"
        key = f"BENCH:{order_id}"
        lines = [
            {
                "id": f"L{i}",
                "line_number": i,
                "product_type": "PHYSICAL",
                "sku": f"SKU{(n + i) % 50}",
                "quantity": 2,
                "shipping_address_reference": "A1",
                "payment_reference": "P1",
                "amount": {
                    "net_amount": 20,
                    "gross_amount": "24.20",
                    "tax_amount": "4.20",
                    "tax_rate": 21,
                    "taxes": [{"type": "VAT", "amount": "4.20", "rate": 21}],
                    "currency": "EUR",
                },
            }
            for i in (1, 2, 3)
        ]
        create = {
            "order": {
                "id": order_id,
                "store": "BENCH",
                "ip": "203.0.113.9",
                "vat_country": "NL",
                "origin": "WEB",
                "origin_date": "2026-11-01T10:00:00Z",
                "customer": {"id": "c"},
                "addresses": [],
                "lines": lines,
            }
        }
        ship = {
            "shipment": {
                "store_id": "BENCH",
                "order_id": order_id,
                "source_id": "DEFAULT",
                "method": "std",
                "packages": [],
                "items": [
                    {"order_line_id": f"L{i}", "order_line_number": i, "quantity": 2} for i in (1, 2, 3)
                ],
            }
        }
        ret = {
            "return": {
                "sales_channel_id": "BENCH",
                "order_id": order_id,
                "lines": [
                    {
                        "id": "L2",
                        "line_number": 2,
                        "sku": "x",
                        "reason": "R",
                        "reason_description": "bench",
                        "condition": "GOOD",
                        "quantity": 1,
                    }
                ],
            }
        }
        for name, params in (
            (names.ORDER_CREATE, create),
            (names.SHIPMENT_DONE, ship),
            (names.RETURN_AUTHORIZE, ret),
        ):
            envelope = {
                "jsonrpc": "2.0",
                "id": f"{order_id}-{name.rsplit('.', 1)[-1]}",
                "method": name,
                "params": params,
            }
            out.append((name, key, dumps(envelope).encode()))
    return out


async def produce(
    settings: Settings, records: list[tuple[str, str, bytes]], pace: float = 0.0
) -> dict[str, float]:
    """Send everything (every `pace` seconds one record, or as fast as possible); id -> send time (s)."""
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.kafka_client_kwargs())
    await producer.start()
    sent: dict[str, float] = {}
    try:
        pending = []
        for topic, key, value in records:
            message_id = loads(value)["id"]
            now = time.time()
            sent[message_id] = now
            pending.append(await producer.send(topic, value, key=key.encode(), timestamp_ms=int(now * 1000)))
            if pace:
                await asyncio.gather(*pending)
                pending.clear()
                await asyncio.sleep(pace)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def first_outputs(
    settings: Settings, topics: list[str], expected_ids: set[str], timeout: float
) -> dict[str, float]:
    """Correlation id -> broker timestamp (s) of the first output it caused."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.kafka_client_kwargs())
    await consumer.start()
    seen: dict[str, float] = {}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or {0})]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout
        while len(seen) < len(expected_ids) and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for message in messages:
                    cause = dict(message.headers).get("correlation_id", b"").decode()
                    if cause in expected_ids and cause not in seen:
                        seen[cause] = message.timestamp / 1000
    finally:
        await consumer.stop()
    return seen


async def bare_pipe(settings: Settings, source: str, target: str, count: int) -> None:
    """The baseline: consume → json → produce (acknowledged) → commit, one record at a time, no state."""
    consumer = AIOKafkaConsumer(
        source,
        group_id=f"pipe-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        **settings.kafka_client_kwargs(),
    )
    producer = AIOKafkaProducer(acks="all", **settings.kafka_client_kwargs())
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while done < count:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            for tp, messages in batches.items():
                for message in messages:
                    envelope = loads(message.value)
                    await producer.send_and_wait(
                        target,
                        dumps(envelope).encode(),
                        key=message.key,
                        headers=[("correlation_id", envelope["id"].encode())],
                    )
                    done += 1
                await consumer.commit({tp: messages[-1].offset + 1})
    finally:
        await producer.stop()
        await consumer.stop()


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def drain_seconds(started: float, first: dict[str, float], ids: set[str]) -> float:
    missing = ids - set(first)
    if missing:
        print(f"{len(missing)} of {len(ids)} messages produced no output", file=sys.stderr)
    return max(first[i] for i in ids if i in first) - started


def latencies(sent: dict[str, float], first: dict[str, float]) -> list[float]:
    return [(first[i] - sent[i]) * 1000 for i in sent if i in first]


def run(orders: int, paced: int, pace: float, batch_bytes: int) -> tuple[Result, Result, dict[str, Any]]:
    """Each pipeline: drain a backlog of `orders` orders (throughput), then `paced` orders sent one
    message every `pace` seconds (latency, with no queue in front)."""
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-"))
    backlog, trickle = traffic(orders), traffic(paced, start=orders)
    with LocalBroker(log_dir=workdir) as broker:
        env, settings = isolated(
            broker.bootstrap, workdir, None, "b", OMS_PRODUCER_MAX_BATCH_BYTES=str(batch_bytes)
        )
        tag = settings.topic_prefix.rstrip(".")
        pipe_in, pipe_out = f"{tag}.pipe-in", f"{tag}.pipe-out"
        specs = [TopicSpec(pipe_in, settings.partitions, 1), TopicSpec(pipe_out, settings.partitions, 1)]
        asyncio.run(create_topics(settings, specs))

        async def baseline_run() -> tuple[float, dict[str, float], dict[str, float]]:
            sent = await produce(settings, [(pipe_in, k, v) for _t, k, v in backlog])
            started = time.time()
            pipe = asyncio.create_task(bare_pipe(settings, pipe_in, pipe_out, len(backlog) + len(trickle)))
            drained = await first_outputs(settings, [pipe_out], set(sent), 300)
            paced_sent = await produce(settings, [(pipe_in, k, v) for _t, k, v in trickle], pace)
            paced_first = await first_outputs(settings, [pipe_out], set(paced_sent), 60)
            await pipe
            return drain_seconds(started, drained, set(sent)), paced_sent, paced_first

        seconds, paced_sent, paced_first = asyncio.run(baseline_run())
        baseline = Result("bare aiokafka pipe", len(backlog), seconds, latencies(paced_sent, paced_first))

        outputs = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
        sent = asyncio.run(produce(settings, [(settings.topic_for(t), k, v) for t, k, v in backlog]))
        worker = WorkerProcess(env, workdir / "worker.log").start()
        try:
            worker.wait_ready()
            started = time.time()
            drained = asyncio.run(first_outputs(settings, outputs, set(sent), 900))
            seconds = drain_seconds(started, drained, set(sent))
            paced_sent = asyncio.run(
                produce(settings, [(settings.topic_for(t), k, v) for t, k, v in trickle], pace)
            )
            paced_first = asyncio.run(first_outputs(settings, outputs, set(paced_sent), 60))
        finally:
            worker.stop()
        result = Result("oms-postsales worker", len(backlog), seconds, latencies(paced_sent, paced_first))
    info = {
        "batch_bytes": batch_bytes,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "orders": orders,
        "messages": len(backlog),
        "paced": len(trickle),
        "pace": pace,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return result, baseline, info


def report(worker: Result, baseline: Result, info: dict[str, Any]) -> str:
    def row(r: Result) -> str:
        return (
            f"| {r.name} | {r.messages} | {r.seconds:.2f} | {r.rate:,.0f} "
            f"| {statistics.median(r.latencies_ms):.1f} | {r.pct(0.99):.1f} |"
        )

    return "\n".join(
        [
            f"Run {info['when']}, Python {info['python']} on {info['machine']}: backlog of {info['orders']} "
            f"orders = {info['messages']} inbound messages; latency over {info['paced']} messages sent one "
            f"every {info['pace'] * 1000:.0f} ms; 4 partitions, local Tansu broker (memory), "
            f"one process each; worker producer batch {info['batch_bytes']} bytes.",
            "",
            "| pipeline | backlog messages | drain seconds | msgs/s | p50 latency ms | p99 latency ms |",
            "|---|---|---|---|---|---|",
            row(worker),
            row(baseline),
            "",
            f"Worker / baseline throughput: {worker.rate / baseline.rate:.2f}.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=1000, help="backlog orders (3 messages each)")
    parser.add_argument("--paced", type=int, default=100, help="orders sent paced, for latency")
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between paced messages")
    parser.add_argument(
        "--batch-bytes",
        type=int,
        default=1,
        help="worker producer batch size; 1 is what table recovery on Tansu needs",
    )
    args = parser.parse_args()
    worker, baseline, info = run(args.orders, args.paced, args.pace, args.batch_bytes)
    print(report(worker, baseline, info))


if __name__ == "__main__":
    main()
