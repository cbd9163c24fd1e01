"""Repro: holes and repeats after kill -9 + restart of a faust worker (docs/notes/faust-on-tansu.md).

Per run, on a fresh Tansu broker: publish 100 records over two co-partitioned topics (4 partitions),
let worker w1 process and commit them, publish 100 more, SIGKILL w1 once ~30 of those are processed,
start w2, wait until every input offset is committed (30 s at most), then stop w2 (SIGTERM).
Every delivery to the agent is logged with pid/topic/partition/offset. Analysis of w2, per input
partition, from the offset committed at the kill:

- hole: an offset w2 never delivered to the agent although it delivered a later one of that partition;
- repeat: an offset w2 delivered to the agent twice;
- never processed: an offset no process ever delivered;
- stuck: the committed offset stayed below the end of the partition.

    python bench/spikes/holes_repro.py --runs 10                 # stock faust
    python bench/spikes/holes_repro.py --runs 10 --fix           # with workers.kafka.faust_fixes
    python bench/spikes/holes_repro.py --runs 3 --trace          # + consumer trace (trace.jsonl)

Not a test: it prints one JSON line per run and a summary.
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
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workers.config.settings import Settings  # noqa: E402
from workers.kafka.topics import TopicSpec, create_topics  # noqa: E402
from workers.local.broker import LocalBroker, free_port  # noqa: E402

APP_ID = "holes"
TOPIC_A, TOPIC_B, TOPIC_OUT = "holes.a", "holes.b", "holes.out"
PARTITIONS = 4
KEYS = [f"k{n:02d}" for n in range(10)]
HALF = 100


# --------------------------------------------------------------------------- worker side


def tracing_transport(base: Any, trace_path: Path) -> Any:
    """A transport whose consumer logs what aiokafka hands over, what faust yields, and seeks."""
    out = trace_path.open("a", buffering=1)

    def emit(**fields: Any) -> None:
        out.write(json.dumps({"t": time.time(), **fields}) + "\n")

    class TracingConsumer(base.Consumer):  # type: ignore[misc]
        async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
            records = await super()._getmany(active_partitions, timeout)
            for tp, recs in (records or {}).items():
                if recs:
                    emit(ev="fetched", tp=f"{tp.topic}/{tp.partition}", first=recs[0].offset,
                         last=recs[-1].offset, n=len(recs), flow=self.flow_active,
                         active=tp in (active_partitions or ()))  # fmt: skip
            return records

        async def perform_seek(self) -> None:
            before = {f"{tp.topic}/{tp.partition}": v for tp, v in self._read_offset.items()}
            emit(ev="perform_seek.start", read_offset=before)
            await super().perform_seek()
            after = {f"{tp.topic}/{tp.partition}": v for tp, v in self._read_offset.items()}
            emit(ev="perform_seek.end", read_offset=after)

        async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
            emit(ev="add_gap", tp=f"{tp.topic}/{tp.partition}", start=offset_from, end=offset_to)
            await super()._add_gap(tp, offset_from, offset_to)

        def resume_partitions(self, tps: Any) -> None:
            emit(ev="resume_partitions", tps=sorted(f"{tp.topic}/{tp.partition}" for tp in tps))
            super().resume_partitions(tps)

        async def _commit(self, offsets: Any) -> bool:
            emit(ev="commit", offsets={f"{tp.topic}/{tp.partition}": o for tp, o in offsets.items()})
            result: bool = await super()._commit(offsets)
            return result

    class TracingTransport(base):  # type: ignore[misc]
        Consumer = TracingConsumer

    return TracingTransport


def build_app(args: argparse.Namespace) -> Any:
    import faust

    kwargs: dict[str, Any] = {
        "broker": f"kafka://{args.bootstrap}",
        "store": "memory://",
        "datadir": str(args.datadir),
        "autodiscover": False,
        "web_enabled": True,
        "web_host": "127.0.0.1",
        "web_bind": "127.0.0.1",
        "web_port": args.web_port,
        "topic_partitions": PARTITIONS,
        "topic_replication_factor": 1,
        "producer_acks": -1,
        "producer_max_batch_size": 1,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 1.0,
        "broker_commit_interval": 1.0,
        "table_standby_replicas": 0,
        "processing_guarantee": "at_least_once",
    }
    if args.fix:
        from workers.kafka.faust_fixes import apply_to

        kwargs = apply_to(kwargs)
    app = faust.App(APP_ID, **kwargs)
    if args.trace:
        base = type(app.transport)
        app.transport = tracing_transport(base, Path(args.trace_file))(app.conf.broker_consumer, app)

    raw: dict[str, Any] = {
        "key_type": None,
        "value_type": None,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    inputs = app.topic(TOPIC_A, TOPIC_B, **raw)
    output = app.topic(TOPIC_OUT, **raw)
    table = app.Table("state", partitions=PARTITIONS, key_type=str, value_type=str)
    log = Path(args.processed).open("a", buffering=1)  # noqa: SIM115 (open for the process's life)

    @app.agent(inputs)
    async def apply(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            key = message.key.decode()
            table[key] = message.value.decode()
            await output.send(key=message.key, value=message.value)
            row = {"pid": os.getpid(), "id": message.value.decode(), "topic": message.topic,
                   "partition": message.partition, "offset": message.offset, "t": time.time()}  # fmt: skip
            log.write(json.dumps(row) + "\n")

    return app


def run_worker(args: argparse.Namespace) -> None:
    import faust

    app = build_app(args)
    faust.Worker(
        app, loglevel="INFO", logfile=str(Path(args.datadir) / "worker.log")
    ).execute_from_commandline()


# --------------------------------------------------------------------------- orchestrator


def wait_for(what: str, check: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return True
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: worker exited with {proc.returncode}")
        time.sleep(0.05)
    return False


async def publish(bootstrap: str, first: int, last: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                TOPIC_A if n % 2 == 0 else TOPIC_B,
                key=KEYS[n % len(KEYS)].encode(),
                value=f"m{n:03d}".encode(),
            )
            for n in range(first, last)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed(bootstrap: str) -> dict[str, int]:
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tps = [TopicPartition(t, p) for t in (TOPIC_A, TOPIC_B) for p in range(PARTITIONS)]
        offsets = await admin.list_consumer_group_offsets(APP_ID, partitions=tps)
    finally:
        await admin.close()
    return {f"{tp.topic}/{tp.partition}": max(meta.offset, 0) for tp, meta in offsets.items()}


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def spawn(args: argparse.Namespace, bootstrap: str, workdir: Path, name: str) -> subprocess.Popen[bytes]:
    datadir = workdir / name
    datadir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "worker", "--bootstrap", bootstrap, "--datadir", str(datadir),
           "--web-port", str(free_port()), "--processed", str(workdir / "processed.jsonl"),
           "--trace-file", str(datadir / "trace.jsonl")]  # fmt: skip
    if args.fix:
        cmd.append("--fix")
    if args.trace:
        cmd.append("--trace")
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=(datadir / "stdout.log").open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)  # fmt: skip


def stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def scenario(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    processed = workdir / "processed.jsonl"
    result: dict[str, Any] = {"fix": args.fix, "workdir": str(workdir)}
    procs: list[subprocess.Popen[bytes]] = []
    with LocalBroker(workdir / "broker") as broker:
        bootstrap = broker.bootstrap
        specs = [TopicSpec(t, PARTITIONS, 1) for t in (TOPIC_A, TOPIC_B, TOPIC_OUT)]
        asyncio.run(create_topics(Settings(bootstrap_servers=bootstrap), specs))
        try:
            asyncio.run(publish(bootstrap, 0, HALF))
            w1 = spawn(args, bootstrap, workdir, "w1")
            procs.append(w1)

            def total() -> int:
                return sum(asyncio.run(committed(bootstrap)).values())

            if not wait_for("first half committed", lambda: total() >= HALF, 90, w1):
                raise TimeoutError("first half not committed")
            asyncio.run(publish(bootstrap, HALF, 2 * HALF))
            wait_for("second half started", lambda: len(read_log(processed)) >= HALF + args.kill_at, 60, w1)
            stop(w1, signal.SIGKILL)
            at_kill = asyncio.run(committed(bootstrap))
            w2 = spawn(args, bootstrap, workdir, "w2")
            procs.append(w2)
            t0 = time.monotonic()
            done = wait_for("all committed", lambda: total() >= 2 * HALF, args.wait, w2)
            result["all_committed_s"] = round(time.monotonic() - t0, 1) if done else None
            time.sleep(0.5)
            final = asyncio.run(committed(bootstrap))
            stop(w2, signal.SIGTERM)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    stop(proc, signal.SIGKILL)
    rows = read_log(processed)
    per_tp_all: dict[str, set[int]] = {}
    for r in rows:
        per_tp_all.setdefault(f"{r['topic']}/{r['partition']}", set()).add(r["offset"])
    w2_rows = [r for r in rows if r["pid"] == w2.pid]
    holes: dict[str, list[int]] = {}
    repeats: dict[str, list[int]] = {}
    never: dict[str, list[int]] = {}
    stuck: dict[str, list[int]] = {}
    for tp, seen in sorted(per_tp_all.items()):
        end = max(seen) + 1  # every published offset was processed by someone, or is a trailing loss
        mine = Counter(r["offset"] for r in w2_rows if f"{r['topic']}/{r['partition']}" == tp)
        start = at_kill.get(tp, 0)
        if mine:
            missing = [o for o in range(start, max(mine)) if o not in mine]
            if missing:
                holes[tp] = missing
        twice = sorted(o for o, c in mine.items() if c > 1)
        if twice:
            repeats[tp] = twice
        lost = [o for o in range(0, end) if o not in seen]
        if lost:
            never[tp] = lost
        if final.get(tp, 0) < end:
            stuck[tp] = [final.get(tp, 0), end]
    result.update(
        w1_processed_second_half=len([r for r in rows if r["pid"] == w1.pid]) - HALF,
        committed_at_kill=sum(at_kill.values()) - HALF,
        committed_final=sum(final.values()),
        hole_offsets=sum(len(v) for v in holes.values()),
        holes=holes,
        repeated_offsets=sum(len(v) for v in repeats.values()),
        repeats=repeats,
        never_processed=len({f"m{n:03d}" for n in range(2 * HALF)} - {r["id"] for r in rows}),
        never_offsets=never,
        stuck=stuck,
        distinct_processed=sum(len(v) for v in per_tp_all.values()),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker")
    worker.add_argument("--bootstrap", required=True)
    worker.add_argument("--datadir", required=True)
    worker.add_argument("--web-port", type=int, required=True)
    worker.add_argument("--processed", required=True)
    worker.add_argument("--trace-file", required=True)
    for p in (parser, worker):
        p.add_argument(
            "--fix",
            action="store_true",
            help="app kwargs through workers.kafka.faust_fixes.apply_to",
        )
        p.add_argument("--trace", action="store_true", help="log the consumer's fetches, seeks and gaps")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--kill-at", type=int, default=30)
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "worker":
        sys.argv = sys.argv[:1]
        run_worker(args)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="holes-repro-"))
    results = []
    for n in range(args.runs):
        try:
            results.append(scenario(args, workdir / f"run{n}"))
        except Exception as exc:  # a failed run is reported, not hidden
            results.append({"fix": args.fix, "error": repr(exc), "workdir": str(workdir / f"run{n}")})
        print(json.dumps(results[-1]), flush=True)
    ok = [r for r in results if "error" not in r]
    summary = {
        "fix": args.fix,
        "runs": len(results),
        "errors": len(results) - len(ok),
        "runs_with_holes": sum(1 for r in ok if r["hole_offsets"]),
        "hole_offsets_total": sum(r["hole_offsets"] for r in ok),
        "runs_with_repeats": sum(1 for r in ok if r["repeated_offsets"]),
        "repeated_offsets_total": sum(r["repeated_offsets"] for r in ok),
        "runs_with_never_processed": sum(1 for r in ok if r["never_processed"]),
        "never_processed_total": sum(r["never_processed"] for r in ok),
        "runs_stuck_below_end": sum(1 for r in ok if r["stuck"]),
    }
    print(json.dumps({"summary": summary}), flush=True)
    (workdir / "results.json").write_text(json.dumps({"runs": results, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
