"""Spike: does a faust-streaming worker survive kill -9 against the local Tansu broker?

One agent consumes two co-partitioned topics together, keeps a memory table per key (a counter
and a bounded list of applied ids, so a redelivered record is recognised and not counted twice),
and sends a derived record to an output topic. Per scenario, on a fresh broker: (A) 100 records
processed and committed, kill -9, restart, compare the recovered table; (B) 100 more records,
kill -9 mid-way, restart, then check redeliveries, holes, commits, the table and the outputs.

    python bench/spikes/faust_on_tansu.py --repeat 5             # both batch sizes, JSON lines
    python bench/spikes/faust_on_tansu.py --batch-sizes 1         # only producer_max_batch_size=1
    python bench/spikes/faust_on_tansu.py --throughput 5000       # backlog rate and recovery time

Findings: docs/notes/faust-on-tansu.md. Not a test: it prints measurements, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workers.config.settings import Settings  # noqa: E402
from workers.kafka.topics import TopicSpec, create_topics  # noqa: E402
from workers.local.broker import LocalBroker, free_port  # noqa: E402

APP_ID = "spike"
TOPIC_A, TOPIC_B, TOPIC_OUT = "spike.a", "spike.b", "spike.out"
CHANGELOG = f"{APP_ID}-state-changelog"
PARTITIONS = 4
KEYS = [f"k{n:02d}" for n in range(10)]
RECORDS = 200
APPLIED_MAX = 100  # more than the 20 records per key, so nothing is evicted in this spike


# --------------------------------------------------------------------------- the worker side


def build_app(bootstrap: str, datadir: Path, web_port: int, batch_size: int, processed_log: Path) -> Any:
    """The faust app, built in a function so each process (and each test) gets its own."""
    import faust

    app = faust.App(
        APP_ID,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=True,
        web_host="127.0.0.1",
        web_port=web_port,
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        producer_acks=-1,
        producer_max_batch_size=batch_size,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        table_standby_replicas=0,
    )
    inputs = app.topic(TOPIC_A, TOPIC_B, key_serializer="raw", value_serializer="json")
    output = app.topic(TOPIC_OUT, key_serializer="raw", value_serializer="json")
    # key_type=bytes makes the changelog key codec "raw". Without a key_type faust writes bytes
    # keys through unchanged but JSON-decodes them on recovery, and recovery then hangs.
    table = app.Table("state", default=None, partitions=PARTITIONS, key_type=bytes)
    log = processed_log.open("a", buffering=1)

    @app.agent(inputs)
    async def apply(stream: Any) -> None:
        async for event in stream.events():
            key: bytes = event.key
            record_id = event.value["id"]
            state = table.get(key) or {"count": 0, "applied": []}
            applied = dict(state["applied"])
            duplicate = record_id in applied
            if duplicate:
                count = applied[record_id]
            else:
                count = state["count"] + 1
                state = {"count": count, "applied": [*state["applied"], [record_id, count]][-APPLIED_MAX:]}
                table[key] = state
            # Re-sent on a duplicate too: the first send may not have reached the broker.
            await output.send(key=key, value={"id": record_id, "count": count})
            message = event.message
            log.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "id": record_id,
                        "key": key.decode(),
                        "topic": message.topic,
                        "partition": message.partition,
                        "offset": message.offset,
                        "duplicate": duplicate,
                        "t": time.time(),
                    }
                )
                + "\n"
            )

    @app.page("/state/")
    async def state_view(web: Any, request: Any) -> Any:
        return web.json({k.decode(): v for k, v in table.items()})

    return app


def run_worker(args: argparse.Namespace) -> None:
    import faust

    app = build_app(args.bootstrap, Path(args.datadir), args.web_port, args.batch_size, Path(args.processed))
    faust.Worker(
        app, loglevel="INFO", logfile=str(Path(args.datadir) / "worker.log")
    ).execute_from_commandline()


# --------------------------------------------------------------------------- the orchestrator


def wait_for(what: str, check: Callable[[], bool], timeout: float, worker: subprocess.Popen[bytes]) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        if worker.poll() is not None:
            raise RuntimeError(f"{what}: the worker exited with status {worker.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not reached within {timeout} s")


def read_processed(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


async def publish(bootstrap: str, first: int, last: int) -> None:
    from aiokafka import AIOKafkaProducer

    # linger so records share batches, as real upstream producers do.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                TOPIC_A if n % 2 == 0 else TOPIC_B,
                key=KEYS[n % len(KEYS)].encode(),
                value=json.dumps({"id": f"m{n:03d}"}).encode(),
            )
            for n in range(first, last)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed_total(bootstrap: str) -> int:
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Tansu drops the connection when no partitions are named (docs/local-broker.md).
        tps = [TopicPartition(t, p) for t in (TOPIC_A, TOPIC_B) for p in range(PARTITIONS)]
        offsets = await admin.list_consumer_group_offsets(APP_ID, partitions=tps)
    finally:
        await admin.close()
    return sum(max(meta.offset, 0) for meta in offsets.values())


async def read_all(bootstrap: str, topic: str, quiet: float = 2.0, limit: float = 30.0) -> list[Any]:
    """Every record of a topic: read until nothing new arrives for `quiet` seconds.

    Not end_offsets(): Tansu's ListOffsets(latest) is wrong for multi-record batches.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        start = last_new = time.monotonic()
        while time.monotonic() - last_new < quiet and time.monotonic() - start < limit:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
                if recs:
                    last_new = time.monotonic()
    finally:
        await consumer.stop()
    return records


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: off for tp, off in ends.items()}


def get_state(web_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/state/", timeout=2) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def spawn_worker(
    bootstrap: str, datadir: Path, web_port: int, batch_size: int, processed: Path
) -> subprocess.Popen[bytes]:
    datadir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, __file__, "worker", "--bootstrap", bootstrap, "--datadir", str(datadir),
         "--web-port", str(web_port), "--batch-size", str(batch_size), "--processed", str(processed)],
        stdin=subprocess.DEVNULL,
        stdout=(datadir / "stdout.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )  # fmt: skip


class Run:
    """One worker process of a scenario: its PID, web port and log."""

    def __init__(self, name: str, bootstrap: str, workdir: Path, batch_size: int) -> None:
        self.datadir = workdir / name
        self.port = free_port()
        self.processed = workdir / "processed.jsonl"
        self.started = time.monotonic()
        self.proc = spawn_worker(bootstrap, self.datadir, self.port, batch_size, self.processed)

    def records(self) -> list[dict[str, Any]]:
        return [r for r in read_processed(self.processed) if r["pid"] == self.proc.pid]

    def wait_ready(self) -> float:
        log = self.datadir / "worker.log"
        wait_for(
            "worker ready", lambda: log.exists() and "[^Worker]: Ready" in log.read_text(), 120, self.proc
        )
        return round(time.monotonic() - self.started, 2)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def changelog_facts(bootstrap: str) -> dict[str, Any]:
    """What ListOffsets(latest) reports for the changelog versus the records really there."""
    ends = asyncio.run(end_offsets(bootstrap, CHANGELOG))
    records = asyncio.run(read_all(bootstrap, CHANGELOG, quiet=1.0))
    actual = {
        p: 1 + max((r.offset for r in records if r.partition == p), default=-1) for p in range(PARTITIONS)
    }
    return {"end_offsets_reported": ends, "end_offsets_actual": actual, "correct": ends == actual}


def scenario(batch_size: int, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"producer_max_batch_size": batch_size}
    runs: list[Run] = []
    half = RECORDS // 2
    with LocalBroker(workdir / "broker") as broker:
        bootstrap = broker.bootstrap
        settings = Settings(bootstrap_servers=bootstrap)
        specs = [TopicSpec(t, PARTITIONS, 1) for t in (TOPIC_A, TOPIC_B, TOPIC_OUT)]
        asyncio.run(create_topics(settings, specs))

        def committed() -> int:
            return asyncio.run(committed_total(bootstrap))

        try:
            # A. Recovery alone: a backlog processed at full speed (so faust's changelog sends
            #    share producer batches) and committed, kill -9, restart, compare the table right
            #    after "Worker ready", before any new input.
            asyncio.run(publish(bootstrap, 0, half))
            w1 = Run("w1", bootstrap, workdir, batch_size)
            runs.append(w1)
            result["A_first_start_ready_seconds"] = w1.wait_ready()
            t = time.monotonic()
            wait_for("first half processed", lambda: len(w1.records()) >= half, 60, w1.proc)
            result["A_backlog_processing_seconds"] = round(time.monotonic() - t, 2)
            wait_for("first half committed", lambda: committed() >= half, 60, w1.proc)
            before = get_state(w1.port)
            w1.kill9()
            result["A_changelog"] = changelog_facts(bootstrap)
            w2 = Run("w2", bootstrap, workdir, batch_size)
            runs.append(w2)
            result["A_restart_ready_seconds"] = w2.wait_ready()
            after = get_state(w2.port)
            result["A_table_recovered_intact"] = after == before
            result["A_table_counts_after_recovery"] = {k: v["count"] for k, v in sorted(after.items())}
            result["A_keys_differing"] = sorted(k for k in before if after.get(k) != before[k])
            time.sleep(3)  # A fixed window on purpose: nothing should arrive in it.
            result["A_records_processed_after_restart_without_input"] = len(w2.records())

            # B. kill -9 with uncommitted work: publish the second half, kill mid-way, restart.
            asyncio.run(publish(bootstrap, half, RECORDS))
            kill_at = 30
            wait_for("part of second half", lambda: len(w2.records()) >= kill_at, 60, w2.proc)
            w2.kill9()
            run_b1 = w2.records()
            result["B_processed_before_kill"] = len(run_b1)
            result["B_committed_at_kill"] = committed() - half
            result["B_changelog"] = changelog_facts(bootstrap)
            w3 = Run("w3", bootstrap, workdir, batch_size)
            runs.append(w3)
            result["B_restart_ready_seconds"] = w3.wait_ready()
            # Done = every input offset committed; whatever was not processed by then is lost.
            t = time.monotonic()
            try:
                wait_for("all committed", lambda: committed() >= RECORDS, 45, w3.proc)
                result["B_restart_all_committed_seconds"] = round(time.monotonic() - t, 2)
            except TimeoutError:
                result["B_restart_all_committed_seconds"] = None
            result["B_committed_final"] = committed() - half
            time.sleep(1.0)  # let the last sends and log lines land; nothing is waited on
            run_b2 = w3.records()
            second_half = {f"m{n:03d}" for n in range(half, RECORDS)}
            never_processed = second_half - {r["id"] for r in run_b2} - {r["id"] for r in run_b1}
            result["B_ids_never_processed"] = sorted(never_processed)
            b1_ids = {r["id"] for r in run_b1}
            per_id = Counter(r["id"] for r in run_b2)
            result["B_restart_deliveries"] = len(run_b2)
            result["B_restart_distinct_ids"] = len(per_id)
            result["B_restart_ids_delivered_twice_in_the_same_process"] = sum(
                1 for n in per_id.values() if n > 1
            )
            result["B_redelivered_ids_processed_before_kill"] = len(b1_ids & set(per_id))
            result["B_deliveries_recognised_as_duplicates"] = sum(r["duplicate"] for r in run_b2)
            result["B_redelivered_but_not_recognised"] = sorted(
                {r["id"] for r in run_b2 if r["id"] in b1_ids and not r["duplicate"]}
            )
            final = get_state(w3.port)
            expected = RECORDS // len(KEYS)
            result["B_table_counts_final"] = {k: v["count"] for k, v in sorted(final.items())}
            applied = {i for v in final.values() for i, _ in v["applied"]}
            result["B_ids_missing_from_table"] = sorted(second_half - applied)
            result["B_table_final_correct"] = len(final) == len(KEYS) and all(
                v["count"] == expected and len(v["applied"]) == expected for v in final.values()
            )
            outputs = [json.loads(r.value) for r in asyncio.run(read_all(bootstrap, TOPIC_OUT))]
            counts_per_id: dict[str, set[int]] = {}
            for o in outputs:
                counts_per_id.setdefault(o["id"], set()).add(o["count"])
            result["outputs_total"] = len(outputs)
            result["outputs_distinct_ids"] = len(counts_per_id)
            result["outputs_ids_with_conflicting_counts"] = sorted(
                i for i, c in counts_per_id.items() if len(c) > 1
            )

            t = time.monotonic()
            w3.proc.send_signal(signal.SIGTERM)
            w3.proc.wait(timeout=60)
            result["sigterm_exit_seconds"] = round(time.monotonic() - t, 2)
            result["sigterm_exit_status"] = w3.proc.returncode
        finally:
            for run in runs:
                if run.proc.poll() is None:
                    run.proc.kill()
                    run.proc.wait(timeout=10)
    return result


def throughput(batch_size: int, workdir: Path, count: int) -> dict[str, Any]:
    """Backlog processing rate, then the table's recovery time after kill -9."""
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"producer_max_batch_size": batch_size, "records": count}
    with LocalBroker(workdir / "broker") as broker:
        bootstrap = broker.bootstrap
        specs = [TopicSpec(t, PARTITIONS, 1) for t in (TOPIC_A, TOPIC_B, TOPIC_OUT)]
        asyncio.run(create_topics(Settings(bootstrap_servers=bootstrap), specs))
        asyncio.run(publish(bootstrap, 0, count))
        runs = [Run("w1", bootstrap, workdir, batch_size)]
        try:
            runs[0].wait_ready()
            t = time.monotonic()
            wait_for("backlog processed", lambda: len(runs[0].records()) >= count, 600, runs[0].proc)
            elapsed = time.monotonic() - t
            result["processing_msgs_per_second"] = round(count / elapsed)
            wait_for(
                "backlog committed",
                lambda: asyncio.run(committed_total(bootstrap)) >= count,
                60,
                runs[0].proc,
            )
            result["changelog"] = changelog_facts(bootstrap)
            runs[0].kill9()
            runs.append(Run("w2", bootstrap, workdir, batch_size))
            result["restart_ready_seconds"] = runs[1].wait_ready()
            stamps = [
                line[1:24]
                for line in (runs[1].datadir / "worker.log").read_text().splitlines()
                if "Restoring state from changelog" in line or "Recovery complete" in line
            ]
            fmt = "%Y-%m-%d %H:%M:%S,%f"
            began, ended = (datetime.strptime(stamp, fmt) for stamp in stamps[:2])
            result["recovery_seconds"] = round((ended - began).total_seconds(), 2)
            state = get_state(runs[1].port)
            result["recovered_counts_sum"] = sum(v["count"] for v in state.values())
        finally:
            for run in runs:
                if run.proc.poll() is None:
                    run.proc.kill()
                    run.proc.wait(timeout=10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker")
    worker.add_argument("--bootstrap", required=True)
    worker.add_argument("--datadir", required=True)
    worker.add_argument("--web-port", type=int, required=True)
    worker.add_argument("--batch-size", type=int, required=True)
    worker.add_argument("--processed", required=True)
    parser.add_argument("--batch-sizes", default="16384,1", help="producer_max_batch_size values to try")
    parser.add_argument("--repeat", type=int, default=1, help="runs per batch size")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--throughput", type=int, default=0, help="instead: N-record backlog timing")
    args = parser.parse_args()
    if args.command == "worker":
        # execute_from_commandline parses sys.argv itself; leave it only the program name.
        sys.argv = sys.argv[:1]
        run_worker(args)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="faust-on-tansu-"))
    results = []
    if args.throughput:
        for size in (int(s) for s in args.batch_sizes.split(",")):
            results.append(throughput(size, workdir / f"throughput-batch-{size}", args.throughput))
            print(json.dumps(results[-1]), flush=True)
        return
    for n in range(args.repeat):
        for size in (int(s) for s in args.batch_sizes.split(",")):
            results.append(scenario(size, workdir / f"run{n}-batch-{size}"))
            print(json.dumps(results[-1]), flush=True)
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {workdir / 'results.json'}")


if __name__ == "__main__":
    main()
