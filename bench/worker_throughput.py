"""Throughput and latency of `oms-postsales worker` on the local Tansu broker, against bare aiokafka
pipes measured on the same broker in the same run.

    .venv/bin/python bench/worker_throughput.py                          # producer batch 16384
    .venv/bin/python bench/worker_throughput.py --batch-bytes 1 16384 --runs 2
    .venv/bin/python bench/worker_throughput.py --profile /tmp/worker.txt --messages 20000 --batch-bytes 16384

Traffic: the chaos run's message log (testkit/chaos_traffic.py: stock snapshots, creates, line cancels,
cancels, shipments, returns, receipts, appeasements, reshipments, upstream refunds, recounts, with
duplicates and refusals), each record keyed as a real producer keys it and stamped in log order.

Per run, on one broker (each pipeline on topics of its own):

1. One worker process. The backlog (`--messages`) is published before the worker starts. Its clock
   runs from the timestamp of the first record the worker stamps itself (an output, a stock movement
   or a dead letter; the intake's forwards keep the producer's timestamp) to that of the last output
   caused by the backlog; msgs/s = backlog messages / that span. Then every record the worker wrote
   is counted by kind. Then fresh messages are sent at each `--rate` (msgs/s) for `--paced-seconds`:
   latency of a message = its producer timestamp -> timestamp of the first output carrying its id as
   `correlation_id` (the worker's producer stamps it when it sends the record).
2. The batched bare pipe: getmany -> decode JSON -> send every output without waiting -> wait for all
   acknowledgements -> commit. Per input it sends as many records, of the same mean size, as the worker
   wrote per inbound message in step 1 (outputs, forwards, movements, adjustments, changelog writes).
3. The one-record-at-a-time bare pipe (one output per input, each acknowledged before the next).
4. Two worker processes on the same 4 partitions, same backlog.

CPU seconds per message are read from /proc/<pid>/stat (utime + stime) of the worker processes, the
pipes and the broker, sampled over each clock span, and the time each main thread waited for a CPU
from /proc/<pid>/schedstat (the machine may be shared). `--profile FILE` instead runs only step 1's
backlog with py-spy (`pip install py-spy==0.4.3`) attached to the worker, and prints the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain import names  # noqa: E402
from testkit.chaos_traffic import RULES_TOML, chaos_waves  # noqa: E402
from testkit.live import isolated  # noqa: E402
from workers.config import logging as worker_logging  # noqa: E402
from workers.config.rules_file import load_rules  # noqa: E402
from workers.config.settings import Settings  # noqa: E402
from workers.engine.codec import InboundRecord, dumps, loads  # noqa: E402
from workers.engine.pipeline import Pipeline  # noqa: E402
from workers.kafka.topics import (  # noqa: E402
    INBOUND_TOPIC,
    STOCK_MOVEMENTS_TOPIC,
    TABLES,
    TopicSpec,
    changelog_topic,
    create_topics,
    describe_partitions,
)
from workers.local.broker import LocalBroker, free_port  # noqa: E402
from workers.local.dev import WorkerProcess, terminate  # noqa: E402
from workers.replay.runner import replay  # noqa: E402

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
RUNQUEUE = " runqueue"
DRAIN_TIMEOUT = 900.0
# Records stop arriving this long after the last one: the worker is done writing (changelogs included).
QUIET_SECONDS = 1.5


# -- traffic ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    topic: str  # message name (the worker's topic is settings.topic_for(topic))
    key: str | None
    value: bytes
    message_id: str
    kind: str  # the chaos log's wave


def chaos_log(messages: int, seed: int, rename: str | None = None) -> list[Message]:
    """The chaos run's log in wave order. `rename` gives the orders and message ids other names, so a
    second log does not touch the first one's orders."""
    key_pipeline = Pipeline(load_rules(None))
    out: list[Message] = []
    for wave in chaos_waves(messages, seed):
        for record in wave.records:
            text = json.dumps(record["value"])
            if rename is not None:
                text = re.sub(r"CH(\d{6})", rf"{rename}\1", text)
            envelope = json.loads(text)
            if rename is not None:
                envelope["id"] = f"{rename}-{envelope['id']}"
            value = dumps(envelope).encode("utf-8")
            key = key_pipeline.key_for(InboundRecord(wave.topic, value, None, {}, 0, 0, None))
            out.append(Message(wave.topic, key, value, str(envelope["id"]), wave.name))
    return out


def expected_causes(log: Sequence[Message], rules: Path, partitions: int) -> set[str]:
    """The message ids replay emits something for: the worker must emit something for each."""
    lines = (dumps({"topic": m.topic, "key": m.key, "value": m.value.decode("utf-8")}) for m in log)
    out = io.StringIO()
    replay(lines, out, load_rules(rules), partitions=partitions)
    causes = set()
    for line in out.getvalue().splitlines():
        correlation = (loads(line).get("headers") or {}).get("correlation_id")
        if correlation:
            causes.add(str(correlation))
    return causes


async def publish(
    settings: Settings, log: Sequence[Message], topic: Any, batch_bytes: int, rate: float = 0.0
) -> dict[str, float]:
    """Send the log in order, timestamps strictly increasing in log order (so the worker's merge by
    timestamp sees the log's order); paced at `rate` msgs/s when given. Message id -> first send time."""
    producer = AIOKafkaProducer(
        acks="all",
        linger_ms=2 if rate else 5,
        max_batch_size=max(batch_bytes, 16384),
        **settings.kafka_client_kwargs(),
    )
    await producer.start()
    sent: dict[str, float] = {}
    try:
        if rate:
            begin = time.monotonic()
            for number, message in enumerate(log):
                # Paced against the schedule, not by sleeping a fixed gap: a slow send does not slow
                # the offered load.
                delay = begin + number / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.time()
                sent.setdefault(message.message_id, now)
                await producer.send(
                    topic(message.topic), message.value, key=_bytes(message.key), timestamp_ms=int(now * 1000)
                )
        else:
            base = int(time.time() * 1000) - len(log) - 1000
            futures = []
            for number, message in enumerate(log):
                sent.setdefault(message.message_id, (base + number) / 1000)
                futures.append(
                    await producer.send(
                        topic(message.topic),
                        message.value,
                        key=_bytes(message.key),
                        timestamp_ms=base + number,
                    )
                )
            await asyncio.gather(*futures)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _bytes(text: str | None) -> bytes | None:
    return text.encode("utf-8") if text is not None else None


# -- reading what was written -----------------------------------------------------------------------


@dataclass
class Seen:
    count: int = 0
    bytes: int = 0
    first_ms: int | None = None
    last_ms: int | None = None


class Collector:
    """Reads the given topics from offset 0 for the whole run: per topic counts and bytes, and per
    correlation id the timestamp of its first record on the output topics."""

    def __init__(self, settings: Settings, topics: Iterable[str], outputs: Iterable[str]) -> None:
        self.settings = settings
        self.topics = list(dict.fromkeys(topics))
        self.outputs = set(outputs)
        self.per_topic: dict[str, Seen] = {t: Seen() for t in self.topics}
        self.first: dict[str, int] = {}  # correlation id -> first output timestamp (ms)
        self.last_output_ms: dict[str, int] = {}  # correlation id -> last output timestamp (ms)
        self.self_stamped_first_ms: int | None = None
        self.last_arrival = time.monotonic()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.self_stamped: set[str] = set()

    async def start(self) -> None:
        counts = await describe_partitions(self.settings, self.topics)
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False, fetch_max_wait_ms=20, **self.settings.kafka_client_kwargs()
        )
        await self._consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in range(counts.get(t, 1))]
        self._consumer.assign(tps)
        for tp in tps:
            self._consumer.seek(tp, 0)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            for tp, records in batches.items():
                seen = self.per_topic[tp.topic]
                output = tp.topic in self.outputs
                stamped = tp.topic in self.self_stamped
                for record in records:
                    seen.count += 1
                    seen.bytes += len(record.value or b"") + len(record.key or b"")
                    stamp = record.timestamp
                    seen.first_ms = stamp if seen.first_ms is None else min(seen.first_ms, stamp)
                    seen.last_ms = stamp if seen.last_ms is None else max(seen.last_ms, stamp)
                    if stamped and (self.self_stamped_first_ms is None or stamp < self.self_stamped_first_ms):
                        self.self_stamped_first_ms = stamp
                    if output:
                        cause = _header(record.headers, "correlation_id")
                        if cause is not None:
                            if cause not in self.first or stamp < self.first[cause]:
                                self.first[cause] = stamp
                            self.last_output_ms[cause] = max(stamp, self.last_output_ms.get(cause, stamp))
                if records:
                    self.last_arrival = time.monotonic()

    async def wait_for(self, causes: set[str], timeout: float) -> set[str]:
        """Wait until every cause has an output; the ones still missing at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if causes <= self.first.keys():
                return set()
            self._check()
            await asyncio.sleep(0.05)
        return causes - self.first.keys()

    async def wait_quiet(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() - self.last_arrival < QUIET_SECONDS and time.monotonic() < deadline:
            self._check()
            await asyncio.sleep(0.05)

    def snapshot(self) -> dict[str, Seen]:
        return {t: Seen(s.count, s.bytes, s.first_ms, s.last_ms) for t, s in self.per_topic.items()}

    def _check(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return bytes(value).decode("utf-8", "replace")
    return None


# -- CPU --------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def runqueue_seconds(pid: int) -> float:
    """How long the process's main thread (the worker's event loop) has been runnable but waiting for
    a CPU: the second field of /proc/<pid>/schedstat, in ns. On a shared machine this tells waiting
    for the broker from waiting for other jobs' CPU."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


class CpuSampler:
    """CPU seconds of some processes over wall time, sampled, so that the CPU spent inside a span of
    record timestamps can be read afterwards (start-up and shutdown left out)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.1)

    def sample(self) -> None:
        now = time.time()
        values: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                values[name] = cpu_seconds(pid)
                values[name + RUNQUEUE] = runqueue_seconds(pid)
            except (OSError, ValueError, IndexError):
                continue
        self.samples.append((now, values))

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each process used from `start` to `end` (epoch seconds), linearly interpolated."""
        keys = [k for name in self.pids for k in (name, name + RUNQUEUE)]
        return {key: self._at(key, end) - self._at(key, start) for key in keys}

    def _at(self, name: str, when: float) -> float:
        points = [(t, v[name]) for t, v in self.samples if name in v]
        if not points:
            return 0.0
        if when <= points[0][0]:
            return points[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if t0 <= when <= t1:
                return v0 + (v1 - v0) * (when - t0) / (t1 - t0) if t1 > t0 else v1
        return points[-1][1]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- the worker -------------------------------------------------------------------------------------


@dataclass
class Drain:
    """One pipeline draining a backlog."""

    name: str
    messages: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    missing: int = 0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def cpu_ms_per_message(self, names_: Iterable[str]) -> float:
        return sum(self.cpu.get(n, 0.0) for n in names_) * 1000 / self.messages


@dataclass
class Latency:
    rate: float
    values_ms: list[float]
    missing: int


@dataclass
class WorkerRun:
    drain: Drain
    kinds: dict[str, Seen]
    latencies: list[Latency]
    profile: str = ""


def kind_topics(settings: Settings) -> dict[str, list[str]]:
    """The worker's topics grouped by what their records are."""
    adjusted = settings.topic_for(names.STOCK_ADJUSTED)
    return {
        "outputs": [settings.topic_for(n) for n in names.OUTBOUND if n != names.STOCK_ADJUSTED],
        "dead letters": [settings.dlq_topic],
        "internal forwards": [settings.topic_prefix + INBOUND_TOPIC],
        "stock movements": [settings.topic_prefix + STOCK_MOVEMENTS_TOPIC],
        "stock adjustments": [adjusted],
        **{f"changelog {table}": [changelog_topic(settings, table)] for table in TABLES},
    }


def output_topics(settings: Settings) -> list[str]:
    return [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]


def self_stamped_topics(settings: Settings) -> list[str]:
    """Records whose timestamp the worker's producer sets when it sends them (forwards keep theirs)."""
    return [*output_topics(settings), settings.topic_prefix + STOCK_MOVEMENTS_TOPIC]


def start_workers(env: dict[str, str], workdir: Path, count: int, tag: str) -> list[WorkerProcess]:
    workers = []
    for index in range(count):
        overrides = {
            **env,
            "OMS_WEB_PORT": str(free_port()),
            "OMS_DATA_DIR": str(workdir / f"{tag}-data{index}"),
        }
        workers.append(WorkerProcess(overrides, workdir / f"{tag}-worker{index}.log").start())
    return workers


def _pid(worker: WorkerProcess) -> int:
    assert worker.process is not None
    return worker.process.pid


async def worker_run(
    broker: LocalBroker,
    workdir: Path,
    rules: Path,
    backlog: Sequence[Message],
    paced: Sequence[tuple[float, Sequence[Message]]],
    options: Options,
    processes: int,
    batch_bytes: int,
) -> WorkerRun:
    env, settings = await asyncio.to_thread(
        isolated,
        broker.bootstrap,
        workdir,
        rules,
        "w",
        OMS_PRODUCER_MAX_BATCH_BYTES=str(batch_bytes),
        OMS_LOG_LEVEL="WARNING",
        OMS_STORE=options.store,
    )
    kinds = kind_topics(settings)
    all_topics = [t for topics in kinds.values() for t in topics]
    expected = expected_causes(backlog, rules, settings.partitions)
    sent = await publish(settings, backlog, settings.topic_for, batch_bytes)
    collector = Collector(settings, all_topics, output_topics(settings))
    collector.self_stamped = set(self_stamped_topics(settings))
    await collector.start()
    workers = start_workers(env, workdir, processes, f"w{processes}-{batch_bytes}")
    pids = {f"worker{i}": _pid(w) for i, w in enumerate(workers)}
    assert broker.pid is not None
    sampler = CpuSampler({**pids, "broker": broker.pid})
    sampler.start()
    profiler: subprocess.Popen[bytes] | None = None
    try:
        if options.profile is not None:
            while collector.self_stamped_first_ms is None:
                collector._check()
                await asyncio.sleep(0.02)
            profiler = start_profiler(pids["worker0"], options.profile)
        missing = await collector.wait_for(expected, DRAIN_TIMEOUT)
        if profiler is not None:
            stop_profiler(profiler)
            profiler = None
        await collector.wait_quiet()
        kinds_seen = collector.snapshot()
        first_ms = collector.self_stamped_first_ms or 0
        backlog_ids = set(sent)
        last_ms = max(
            (collector.last_output_ms[c] for c in backlog_ids if c in collector.last_output_ms), default=0
        )
        seconds = (last_ms - first_ms) / 1000
        cpu = sampler.between(first_ms / 1000, last_ms / 1000)
        drain = Drain(f"worker x{processes}", len(backlog), seconds, cpu, len(missing))
        latencies: list[Latency] = []
        for rate, log in paced if options.profile is None else []:
            wanted = expected_causes(log, rules, settings.partitions)
            # Messages held for an order that comes later wait for it by design: not a latency.
            wanted -= {m.message_id for m in log if m.kind == "early"}
            paced_sent = await publish(settings, log, settings.topic_for, batch_bytes, rate)
            missing_paced = len(await collector.wait_for(wanted, 120.0))
            values = [
                (collector.first[c] / 1000 - paced_sent[c]) * 1000 for c in wanted if c in collector.first
            ]
            latencies.append(Latency(rate, values, missing_paced))
            await collector.wait_quiet()
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        await sampler.stop()
        await collector.stop()
        for worker in workers:
            await asyncio.to_thread(worker.stop)
    summary = ""
    if options.profile is not None:
        summary = summarise_profile(options.profile)
    return WorkerRun(drain, _by_kind(kinds, kinds_seen), latencies, summary)


def _by_kind(kinds: dict[str, list[str]], seen: dict[str, Seen]) -> dict[str, Seen]:
    out: dict[str, Seen] = {}
    for kind, topics in kinds.items():
        total = Seen()
        for topic in topics:
            total.count += seen[topic].count
            total.bytes += seen[topic].bytes
        out[kind] = total
    return out


# -- the bare pipes ---------------------------------------------------------------------------------


async def pipe_run(
    broker: LocalBroker,
    workdir: Path,
    backlog: Sequence[Message],
    mode: str,
    fanout: float,
    record_bytes: int,
    batch_bytes: int,
) -> Drain:
    _env, settings = await asyncio.to_thread(isolated, broker.bootstrap, workdir, None, "p")
    tag = settings.topic_prefix.rstrip(".")
    source, target = f"{tag}.pipe-in", f"{tag}.pipe-out"
    await create_topics(
        settings, [TopicSpec(source, settings.partitions, 1), TopicSpec(target, settings.partitions, 1)]
    )
    await publish(settings, backlog, lambda _name: source, batch_bytes)
    collector = Collector(settings, [target], [target])
    collector.self_stamped = {target}
    await collector.start()
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--pipe",
        mode,
        "--pipe-args",
        json.dumps(
            {
                "bootstrap": broker.bootstrap,
                "source": source,
                "target": target,
                "count": len(backlog),
                "fanout": fanout if mode == "batched" else 1.0,
                "record_bytes": record_bytes,
                "batch_bytes": batch_bytes,
                "linger_ms": settings.producer_linger_ms,
                "max_records": settings.batch_max_records,
                "fetch_wait_ms": settings.fetch_max_wait_ms,
            }
        ),
    ]
    log = (workdir / f"pipe-{mode}-{batch_bytes}.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    assert broker.pid is not None
    sampler = CpuSampler({"pipe": process.pid, "broker": broker.pid})
    sampler.start()
    try:
        while process.poll() is None:
            await asyncio.sleep(0.05)
        if process.returncode != 0:
            raise RuntimeError(f"the {mode} pipe exited {process.returncode}; see {log.name}")
        await collector.wait_quiet(10.0)
        first_ms = collector.self_stamped_first_ms or 0
        last_ms = max(collector.last_output_ms.values(), default=0)
        cpu = sampler.between(first_ms / 1000, last_ms / 1000)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        await sampler.stop()
        await collector.stop()
    name = (
        f"bare pipe, batched, {fanout:.2f} records out per input"
        if mode == "batched"
        else ("bare pipe, one record at a time, 1 record out per input")
    )
    return Drain(name, len(backlog), (last_ms - first_ms) / 1000, cpu)


async def pipe(mode: str, args: dict[str, Any]) -> None:
    """The baseline itself, in its own process like the worker: no state, no validation, no encoding
    (the stdlib's C JSON decoder; outputs are the input's bytes cut or repeated to the wanted size), so
    that what is left is the Kafka plumbing: the cheapest pipe with this fan-out."""
    client = {"bootstrap_servers": args["bootstrap"]}
    consumer = AIOKafkaConsumer(
        args["source"],
        group_id=f"pipe-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        fetch_max_wait_ms=args["fetch_wait_ms"],
        **client,
    )
    producer = AIOKafkaProducer(
        acks="all", max_batch_size=args["batch_bytes"], linger_ms=args["linger_ms"], **client
    )
    await consumer.start()
    await producer.start()
    target, fanout, count = args["target"], float(args["fanout"]), int(args["count"])
    done = 0
    try:
        while done < count:
            batches = await consumer.getmany(timeout_ms=100, max_records=args["max_records"])
            if mode == "single":
                for tp, records in batches.items():
                    for record in records:
                        headers = [("correlation_id", str(json.loads(record.value)["id"]).encode())]
                        await producer.send_and_wait(target, record.value, key=record.key, headers=headers)
                        done += 1
                    await consumer.commit({tp: records[-1].offset + 1})
                continue
            futures = []
            for records in batches.values():
                for record in records:
                    headers = [("correlation_id", str(json.loads(record.value)["id"]).encode())]
                    value = sized(record.value, args["record_bytes"])
                    # Input n sends floor((n+1)·f) − floor(n·f) records: f per input on average.
                    for _ in range(int((done + 1) * fanout) - int(done * fanout)):
                        futures.append(await producer.send(target, value, key=record.key, headers=headers))
                    done += 1
            await asyncio.gather(*futures)
            if batches:
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
    finally:
        await producer.stop()
        await consumer.stop()


def sized(value: bytes, size: int) -> bytes:
    return (value * (size // max(len(value), 1) + 1))[:size] if size > 0 else value


# -- py-spy -----------------------------------------------------------------------------------------


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy==0.4.3")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    terminate(profiler, 60, signal.SIGINT)


def summarise_profile(path: Path, top: int = 15) -> str:
    """Top frames of a py-spy raw profile, over the samples where the worker's main thread (the event
    loop every agent runs on) was not waiting in `select`: by own samples (the innermost frame) and
    by inclusive samples (every frame on the stack, less the entry chain every sample shares)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = idle = other = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        if not frames[0].endswith("_run_module_as_main"):
            other += count  # faust's consumer thread (fetches), mostly idle
            continue
        if frames[-1].endswith(".select"):
            idle += count
            continue
        busy += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not busy:
        return "no samples"
    shown = [(f, n) for f, n in inclusive.most_common() if n < 0.98 * busy][: 2 * top]
    lines = [
        f"py-spy: main thread {busy} busy samples, {idle} waiting in select; {other} samples of other "
        "threads. Percentages are of the busy main-thread samples.",
        "",
        "| own samples | % | frame |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {100 * n / busy:.1f} | `{f}` |" for f, n in own.most_common(top)]
    lines += ["", "| inclusive samples | % | frame |", "|---|---|---|"]
    lines += [f"| {n} | {100 * n / busy:.1f} | `{f}` |" for f, n in shown]
    return "\n".join(lines)


def _frame(text: str) -> str:
    """`function (path:line)` -> `path:function`, the path from site-packages or the repo on."""
    match = re.match(r"(?P<func>.*?) \((?P<path>[^:)]*)(?::\d+)?\)$", text.strip())
    if not match:
        return text.strip()
    path = match["path"]
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{match['func']}"


# -- the run ----------------------------------------------------------------------------------------


@dataclass
class Options:
    messages: int = 5000
    paced_seconds: float = 10.0
    rates: tuple[float, ...] = (200.0, 50.0)
    seed: int = 1
    profile: Path | None = None
    two: bool = True
    store: str = "memory://"


@dataclass
class Run:
    batch_bytes: int
    one: WorkerRun
    two: WorkerRun | None
    batched: Drain | None
    single: Drain | None
    when: str
    load: float


async def one_run(options: Options, batch_bytes: int) -> Run:
    workdir = Path(tempfile.mkdtemp(prefix="oms-bench-"))
    rules = workdir / "rules.toml"
    rules.write_text(RULES_TOML)
    backlog = chaos_log(options.messages, options.seed)
    paced = [
        (rate, chaos_log(int(rate * options.paced_seconds), options.seed + 1 + n, rename=f"L{n}"))
        for n, rate in enumerate(options.rates)
    ]
    when = datetime.now(UTC).isoformat(timespec="seconds")
    load = os.getloadavg()[0]
    with LocalBroker(log_dir=workdir) as broker:
        one = await worker_run(broker, workdir, rules, backlog, paced, options, 1, batch_bytes)
        if options.profile is not None:
            return Run(batch_bytes, one, None, None, None, when, load)
        written = sum(s.count for s in one.kinds.values())
        written_bytes = sum(s.bytes for s in one.kinds.values())
        fanout = written / len(backlog)
        batched = await pipe_run(
            broker, workdir, backlog, "batched", fanout, written_bytes // max(written, 1), batch_bytes
        )
        single = await pipe_run(broker, workdir, backlog, "single", 1.0, 0, batch_bytes)
        two = (
            await worker_run(broker, workdir, rules, backlog, [], options, 2, batch_bytes)
            if options.two
            else None
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return Run(batch_bytes, one, two, batched, single, when, load)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(run: Run, options: Options) -> str:
    one = run.one.drain
    lines = [
        f"### Run {run.when}, producer batch {run.batch_bytes} bytes",
        "",
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores shared with "
        f"other jobs (load average {run.load:.1f} at the start); backlog {one.messages} chaos-mix "
        "messages, 4 partitions, Tansu in memory.",
        "",
        "| pipeline | msgs/s | drain s | CPU ms/msg (process) | waiting for a CPU ms/msg (main thread) "
        "| CPU ms/msg (broker) |",
        "|---|---|---|---|---|---|",
    ]
    drains = [one, *(d for d in (run.batched, run.single) if d), *([run.two.drain] if run.two else [])]
    for drain in drains:
        procs = [n for n in drain.cpu if n != "broker" and not n.endswith(RUNQUEUE)]
        waits = [n + RUNQUEUE for n in procs]
        lines.append(
            f"| {drain.name} | {drain.rate:,.0f} | {drain.seconds:.2f} "
            f"| {drain.cpu_ms_per_message(procs):.2f} | {drain.cpu_ms_per_message(waits):.2f} "
            f"| {drain.cpu_ms_per_message(['broker']):.2f} |"
        )
    lines.append("")
    if run.batched:
        lines.append(f"Worker / batched pipe: **{one.rate / run.batched.rate:.2f}**.")
    if run.two:
        lines.append(f"Two workers / one: **{run.two.drain.rate / one.rate:.2f}**.")
    for drain in drains:
        if drain.missing:
            lines.append(f"{drain.name}: {drain.missing} messages never produced their expected output.")
    for latency in run.one.latencies:
        values = latency.values_ms
        if not values:
            continue
        lines.append(
            f"Latency at {latency.rate:.0f} msgs/s offered ({len(values)} messages, {latency.missing} "
            f"without output): p50 {statistics.median(values):.1f} ms, p99 {pct(values, 0.99):.1f} ms, "
            f"max {max(values):.1f} ms."
        )
    lines += ["", "| records written per inbound message (backlog) | records | per message | mean bytes |"]
    lines.append("|---|---|---|---|")
    total = Seen()
    for kind, seen in run.one.kinds.items():
        total.count += seen.count
        total.bytes += seen.bytes
        mean = seen.bytes // max(seen.count, 1)
        lines.append(f"| {kind} | {seen.count} | {seen.count / one.messages:.2f} | {mean} |")
    mean = total.bytes // max(total.count, 1)
    lines.append(f"| **all** | {total.count} | {total.count / one.messages:.2f} | {mean} |")
    if run.one.profile:
        lines += ["", run.one.profile]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000, help="backlog size (chaos-mix messages)")
    parser.add_argument("--paced-seconds", type=float, default=10.0, help="how long each paced load lasts")
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[200.0, 50.0], help="offered loads for latency, msgs/s"
    )
    parser.add_argument(
        "--batch-bytes",
        type=int,
        nargs="+",
        default=[16384],
        help="producer batch sizes to run (1 = what `dev` sets for table recovery on Tansu)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per batch size, each on a fresh broker")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-two", action="store_true", help="skip the two-process run")
    parser.add_argument("--profile", type=Path, help="only the one-worker backlog, with py-spy writing here")
    parser.add_argument("--pipe", choices=["batched", "single"], help=argparse.SUPPRESS)
    parser.add_argument("--pipe-args", help=argparse.SUPPRESS)
    parser.add_argument(
        "--store", choices=("memory://", "rocksdb://"), default="memory://", help="the worker's table store"
    )
    args = parser.parse_args()
    if args.pipe:
        asyncio.run(pipe(args.pipe, json.loads(args.pipe_args)))
        return
    # The replay that predicts the expected outputs would log every record.
    worker_logging.configure("WARNING", sys.stderr)
    options = Options(
        args.messages,
        args.paced_seconds,
        tuple(args.rate),
        args.seed,
        args.profile,
        not args.no_two,
        args.store,
    )
    for _ in range(args.runs):
        for batch_bytes in args.batch_bytes:
            run = asyncio.run(one_run(options, batch_bytes))
            print(report(run, options), flush=True)
            print(flush=True)


if __name__ == "__main__":
    main()
