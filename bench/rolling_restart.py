"""A rolling restart measured: three workers under steady traffic, each restarted in turn with SIGTERM,
then one kill -9 (restarted at once), with and without static group membership.

    .venv/bin/python bench/rolling_restart.py                    # both modes, 200 msgs/s, rocksdb://
    .venv/bin/python bench/rolling_restart.py --mode static --rate 200 --store rocksdb://

Traffic: order creates (one physical line, a reservation) and, 50 records later, an appeasement of the
same order (a credit note), sent at `--rate` records a second for as long as the roll lasts, each
stamped when it is sent. Every output names its cause (`causation_id`) and is stamped when the worker
produced it, so for every output:

- end-to-end latency = output timestamp - its cause's timestamp;
- a pause of an order partition = the longest gap between consecutive outputs of orders on that
  partition (traffic is steady: 50 records a second per partition at 200 msgs/s, so a gap is the time
  that partition was not processed); the group pause = the longest gap with no output at all.

At the end the outputs are read and compared with replay of exactly what was sent, by the chaos run's
verifier (bench/chaos.py): lost, double effects, redeliveries, credit note series, final stock. Each
step reports its own figures: the partitions that paused longer than a second (with static membership
those of the restarted worker only), the longest gap of the others, the longest latency, how long the
restarted worker took to be ready, and the group's member ids before and after (a static member comes
back under the id it had). `table.rebuilding` lines in the worker logs say a RocksDB folder was not
resumed. Exit 0 when every mode lost nothing and doubled nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import signal
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain import names  # noqa: E402
from testkit.chaos import _as_output, identity, verify  # noqa: E402
from testkit.live import isolated  # noqa: E402
from testkit.reading import Awaited, TopicReader  # noqa: E402
from workers.config import logging as worker_logging  # noqa: E402
from workers.config.rules_file import load_rules  # noqa: E402
from workers.config.settings import Settings  # noqa: E402
from workers.engine.codec import dumps, loads  # noqa: E402
from workers.engine.pipeline import partition_for  # noqa: E402
from workers.local.broker import LocalBroker, free_port  # noqa: E402
from workers.local.dev import WorkerProcess, terminate  # noqa: E402
from workers.replay.runner import replay  # noqa: E402

Output = dict[str, Any]
CHANNEL = "ROLL"
# An appeasement follows its order's create this many records later.
APPEASE_AFTER = 50
PAUSED = 1000  # ms: a partition without output this long during a step counts as paused


@dataclass
class Options:
    mode: str = "both"
    workers: int = 3
    rate: float = 200.0
    partitions: int = 4
    store: str = "rocksdb://"
    # None: the worker's defaults (10 s dynamic, 45 s static).
    session: float | None = None
    steady: float = 10.0
    ready_timeout: float = 120.0
    workdir: Path | None = None


def create(order_id: str, day: str) -> dict[str, Any]:
    return {
        "order": {
            "id": order_id,
            "store": CHANNEL,
            "ip": "203.0.113.5",
            "vat_country": "NL",
            "origin": "WEB",
            "origin_date": f"{day}T00:00:00Z",
            "customer": {"id": "c"},
            "addresses": [],
            "lines": [
                {
                    "id": "L1",
                    "line_number": 1,
                    "product_type": "PHYSICAL",
                    "sku": f"S{int(order_id[2:]) % 11}",
                    "shipping_address_reference": "A",
                    "payment_reference": "P",
                    "amount": {
                        "net_amount": 10,
                        "gross_amount": "12.10",
                        "tax_amount": "2.10",
                        "tax_rate": 21,
                        "taxes": [{"type": "VAT", "amount": "2.10", "rate": 21}],
                    },
                }
            ],
        }
    }


def appeasement(order_id: str) -> dict[str, Any]:
    line = {"line_number": 1, "amount": "1.21", "reason": "R", "reason_description": "rolling"}
    return {"appeasement": {"sales_channel_id": CHANNEL, "order_id": order_id, "user": "u", "lines": [line]}}


def message(n: int, day: str) -> tuple[str, str, str, dict[str, Any]]:
    """The n-th record of the traffic: (message name, key, message id, envelope). Even records create
    order n/2; odd ones appease the order created APPEASE_AFTER records before (or create one more
    order at the start)."""
    appeased = (n - APPEASE_AFTER) // 2
    if n % 2 == 0 or appeased < 0:
        order_id = f"RR{n:07d}"
        name, params, kind = names.ORDER_CREATE, create(order_id, day), "create"
    else:
        order_id = f"RR{2 * appeased:07d}"
        name, params, kind = names.APPEASEMENT_CREATE, appeasement(order_id), "appease"
    message_id = f"{order_id}-{kind}"
    envelope = {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}
    return name, f"{CHANNEL}:{order_id}", message_id, envelope


@dataclass
class Sent:
    """What the traffic thread sent: replay's input, and each message's send time."""

    lines: list[str] = field(default_factory=list)
    at: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


class Traffic(threading.Thread):
    """Records at a steady rate until stopped."""

    def __init__(self, settings: Settings, rate: float) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.rate = rate
        self.sent = Sent()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.day = datetime.now(UTC).date().isoformat()

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the caller
            self.error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            acks="all", enable_idempotence=False, linger_ms=1, **self.settings.kafka_client_kwargs()
        )
        await producer.start()
        pending: list[asyncio.Future[Any]] = []
        try:
            started = time.monotonic()
            n = 0
            while not self.stopping.is_set():
                due = started + n / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                name, key, message_id, envelope = message(n, self.day)
                stamp = int(time.time() * 1000)
                value = dumps(envelope)
                pending.append(
                    await producer.send(
                        self.settings.topic_for(name), value.encode(), key=key.encode(), timestamp_ms=stamp
                    )
                )
                self.sent.lines.append(
                    json.dumps({"topic": name, "key": key, "timestamp": stamp, "value": envelope})
                )
                self.sent.at[message_id] = stamp
                self.sent.keys[message_id] = key
                n += 1
                if len(pending) > 1000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()


async def members(settings: Settings) -> list[str]:
    """The member ids of the worker's consumer group (a static member's starts with its instance id)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([settings.consumer_group])
        return sorted(member[0] for group in response.groups for member in group[5])
    finally:
        await admin.close()


@dataclass
class Step:
    name: str
    start: int  # ms, wall clock
    end: int = 0
    exit_code: int | None = None
    ready_seconds: float = 0.0
    members_before: list[str] = field(default_factory=list)
    members_after: list[str] = field(default_factory=list)


def now_ms() -> int:
    return int(time.time() * 1000)


def wait_all_ready(workers: list[WorkerProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.wait_ready(timeout=max(1.0, deadline - time.monotonic()))


def run_mode(broker: LocalBroker, options: Options, static: bool, workdir: Path, echo: Any) -> dict[str, Any]:
    mode = "static" if static else "dynamic"
    folder = workdir / mode
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"OMS_STORE": options.store, "OMS_PARTITIONS": str(options.partitions)}
    # local_env's short test session is replaced by the worker's own default for the mode, unless given.
    session = options.session or (45.0 if static else 10.0)
    extra["OMS_SESSION_TIMEOUT_SECONDS"] = str(session)
    env, settings = isolated(broker.bootstrap, folder, None, mode[0], **extra)
    overrides = [
        {
            **env,
            "OMS_WEB_PORT": str(free_port()),
            "OMS_DATA_DIR": str(folder / f"data{i}"),
            **({"OMS_GROUP_INSTANCE_ID": f"{settings.consumer_group}-{i}"} if static else {}),
        }
        for i in range(options.workers)
    ]
    workers = [WorkerProcess(o, folder / f"worker{i}.log").start() for i, o in enumerate(overrides)]
    steps: list[Step] = []
    traffic = Traffic(settings, options.rate)
    try:
        wait_all_ready(workers, options.ready_timeout)
        echo(f"[{mode}] {options.workers} workers ready, session {session:g}s; traffic {options.rate:g}/s")
        traffic.start()
        steady = Step("steady", now_ms())
        time.sleep(options.steady)  # traffic before the roll: the baseline of each figure
        steady.end = now_ms()
        steps.append(steady)
        plan = [(i, signal.SIGTERM) for i in range(options.workers)] + [(0, signal.SIGKILL)]
        for index, signum in plan:
            step = Step(f"{signal.Signals(signum).name} worker {index}", now_ms())
            step.members_before = asyncio.run(members(settings))
            process = workers[index].process
            assert process is not None
            step.exit_code = terminate(process, 60.0, signum)
            began = time.monotonic()
            workers[index] = WorkerProcess(overrides[index], workers[index].log_path).start()
            wait_all_ready(workers, options.ready_timeout)
            step.ready_seconds = time.monotonic() - began
            time.sleep(options.steady)  # let the group settle (and any delayed rebalance show)
            step.members_after = asyncio.run(members(settings))
            step.end = now_ms()
            steps.append(step)
            echo(f"[{mode}] {step.name}: exit {step.exit_code}, ready again after {step.ready_seconds:.1f}s")
        traffic.stopping.set()
        traffic.join(timeout=60)
        if traffic.error is not None or traffic.is_alive():
            raise RuntimeError(f"traffic failed: {traffic.error!r}")
        echo(f"[{mode}] sent {len(traffic.sent.lines)} records; reading outputs")
        expected = expected_of(traffic.sent, options.partitions)
        found = read_outputs(settings, expected)
    finally:
        traffic.stopping.set()
        for worker in workers:
            worker.stop(timeout=60)
    verdict = verify(found, expected, len(traffic.sent.lines), len(traffic.sent.lines))
    rebuilds = sum(
        (folder / f"worker{i}.log").read_text(errors="replace").count("table.rebuilding")
        for i in range(options.workers)
    )
    report = figures(found, traffic.sent, steps, options.partitions)
    report.update(
        mode=mode,
        session=session,
        store=options.store,
        sent=len(traffic.sent.lines),
        lost=len(verdict.lost),
        doubled=len(verdict.doubled),
        redeliveries=verdict.redeliveries,
        problems=verdict.problems[:5],
        rebuilds=rebuilds,
    )
    return report


def expected_of(sent: Sent, partitions: int) -> list[Output]:
    out = io.StringIO()
    replay(iter(sent.lines), out, load_rules(None), partitions=partitions, settle_at_end=False)
    return [loads(line) for line in out.getvalue().splitlines()]


def read_outputs(settings: Settings, expected: list[Output]) -> list[Output]:
    """Every output, each with the time it was produced (`produced`, ms), once replay's all arrived."""
    want = {identity(r) for r in expected}
    topics = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]

    async def read() -> list[Output]:
        deadline = time.monotonic() + 180
        awaited = Awaited(want, lambda r: identity(_as_output(r, settings)))
        async with TopicReader(settings, topics) as reader:
            await reader.until(lambda rs: not awaited.missing(rs), deadline, lambda: "outputs missing")
            await reader.to_end(deadline)
            stamps = reader.timestamps
            return [
                {**_as_output(r, settings), "produced": stamps[(r["topic"], r["partition"], r["offset"])]}
                for r in reader.records
            ]

    return asyncio.run(read())


def figures(
    found: list[Output],
    sent: Sent,
    steps: list[Step],
    partitions: int,
) -> dict[str, Any]:
    """Latency and pauses, over the whole roll and per step."""
    first: dict[tuple[str, str], tuple[int, int, str]] = {}  # identity -> (produced, latency, partition)
    for record in found:
        cause = record["headers"].get("causation_id")
        if cause not in sent.at:
            continue
        produced = record["produced"]
        key = identity(record)
        if key not in first or produced < first[key][0]:
            order_partition = partition_for(sent.keys[cause], partitions)
            first[key] = (produced, produced - sent.at[cause], str(order_partition))
    by_partition: dict[str, list[int]] = defaultdict(list)
    for produced, _latency, partition in first.values():
        by_partition[partition].append(produced)
    every = sorted(p for p, _, _ in first.values())
    result_steps = []
    for step in steps:
        gaps = {p: longest_gap(sorted(times), step.start, step.end) for p, times in by_partition.items()}
        paused = sorted(p for p, gap in gaps.items() if gap >= PAUSED)
        others = [gap for p, gap in gaps.items() if p not in paused]
        latencies = [lat for produced, lat, _ in first.values() if step.start <= produced <= step.end]
        result_steps.append(
            {
                "step": step.name,
                "exit": step.exit_code,
                "ready_s": round(step.ready_seconds, 1),
                "paused_partitions": {p: round(gaps[p] / 1000, 1) for p in paused},
                "others_longest_gap_s": round(max(others, default=0) / 1000, 2),
                "group_longest_gap_s": round(longest_gap(every, step.start, step.end) / 1000, 2),
                "latency_max_s": round(max(latencies, default=0) / 1000, 2),
                "latency_p50_s": round(percentile(latencies, 50) / 1000, 3),
                "members_kept": bool(step.members_before) and step.members_before == step.members_after,
                "members_before": step.members_before,
                "members_after": step.members_after,
            }
        )
    latencies = [lat for _, lat, _ in first.values()]
    roll = [s for s in steps if s.name != "steady"]
    return {
        "latency_max_s": round(max(latencies, default=0) / 1000, 2),
        "latency_p99_s": round(percentile(latencies, 99) / 1000, 3),
        "latency_p50_s": round(percentile(latencies, 50) / 1000, 3),
        "longest_partition_pause_s": round(
            max(
                (longest_gap(sorted(t), roll[0].start, roll[-1].end) for t in by_partition.values()),
                default=0,
            )
            / 1000,
            1,
        ),
        "longest_group_pause_s": round(longest_gap(every, roll[0].start, roll[-1].end) / 1000, 1),
        "steps": result_steps,
    }


def longest_gap(times: list[int], start: int, end: int) -> int:
    """The longest time within [start, end] with no output (the window's ends count as outputs)."""
    inside = [start] + [t for t in times if start < t < end] + [end]
    return max((b - a for a, b in itertools.pairwise(inside)), default=0)


def percentile(values: list[int], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["both", "static", "dynamic"], default="both")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--store", default="rocksdb://")
    parser.add_argument("--session", type=float, default=None, help="seconds (default: the worker's)")
    parser.add_argument("--steady", type=float, default=10.0, help="seconds of traffic between steps")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    options = Options(**vars(args))
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="oms-rolling-"))
    worker_logging.configure("WARNING")  # replay's own record lines
    reports = []
    with LocalBroker(log_dir=workdir) as broker:
        for static in {"both": [False, True], "static": [True], "dynamic": [False]}[options.mode]:
            report = run_mode(broker, options, static, workdir, print)
            reports.append(report)
            print(json.dumps(report, indent=1))
    (workdir / "report.json").write_text(json.dumps(reports, indent=1))
    for report in reports:
        print(
            f"{report['mode']}: lost={report['lost']} double_effects={report['doubled']} "
            f"redeliveries={report['redeliveries']} sent={report['sent']} "
            f"latency max={report['latency_max_s']}s p99={report['latency_p99_s']}s "
            f"longest pause: a partition {report['longest_partition_pause_s']}s, "
            f"the group {report['longest_group_pause_s']}s; rebuilds={report['rebuilds']}"
        )
    print(f"work folder: {workdir}")
    return 0 if all(r["lost"] == 0 and r["doubled"] == 0 and not r["problems"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
