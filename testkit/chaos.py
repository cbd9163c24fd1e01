"""Chaos run: two workers on one consumer group, killed with SIGKILL at random moments, must lose
nothing and double no effect.

    .venv/bin/python bench/chaos.py                         # 10,000 messages, 20 kills (a few minutes)
    .venv/bin/python bench/chaos.py --messages 600 --kills 3 # the quick mode CI runs

The message log (testkit/chaos_traffic.py) goes through a local Tansu broker, wave by wave, to
`--workers` worker processes on topics of `--partitions` partitions. While they work, a worker picked
at random is sent SIGKILL each time the committed progress passes one of `--kills` random points, and
is restarted at once. When everything is committed and every expected output has arrived, a verifier
reads every output topic and compares it with what `replay` emits for the same log:

- lost: an output replay emits that never arrived;
- double effects: an output replay does not emit (a second credit note or stock adjustment for the
  same cause), or one with replay's id but other content;
- redeliveries: the same output again, same id and same content (at-least-once delivery; harmless);
- credit note numbers: per series, gap-free and the very numbers replay gives;
- stock: the final on hand / reserved / ATS per source and SKU equal to replay's;
- rules: halfway through the traffic a new version of CHAOS-A's rules (credit notes wait PENDINGRELEASE) is
  published on the rules topic, effective from the first message of the next wave; the workers follow
  it with no restart (a killed one reads it at start), and replay's expectation has the rules record at
  the same place, so the notes of CHAOS-A name CHAOS-A@1 before it and CHAOS-A@2 after it.

The outputs are read once the group has committed everything published: until every output replay
emits has arrived, then up to the end offsets (testkit/reading.py), so late redeliveries count too; past
the deadline the run fails and names what is missing. An expectation that proves nothing is refused:
replay emitting no outputs, no credit notes or no stock adjustments, or a log shorter than asked for.

Exit 0 only if all of these hold. The last line reads
`lost=0 double_effects=0 redeliveries=R kills=K messages=N`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from domain import names
from domain.rule_versions import RuleVersion
from testkit.chaos_traffic import RULES_TOML, Wave, chaos_waves, spare_waves
from testkit.live import isolated
from testkit.reading import Awaited, ReadTimeout, TopicReader
from workers.config import logging as worker_logging
from workers.config.rules_file import load_rules
from workers.config.settings import Settings
from workers.engine.codec import InboundRecord, dumps, loads
from workers.engine.pipeline import Pipeline
from workers.engine.rule_records import RULES_TOPIC, encode
from workers.kafka.crashpoints import POINTS
from workers.kafka.crashpoints import VARIABLE as CRASH_VARIABLE
from workers.kafka.rules_reader import publish as publish_rules
from workers.kafka.topics import catalogue, create_topics
from workers.local.broker import LocalBroker, free_port
from workers.local.dev import (
    Stopped,
    WorkerProcess,
    expected_outputs,
    raising_on_stop_signals,
    settings_from_env,
)
from workers.replay.runner import replay

ROOT = Path(__file__).resolve().parents[1]

Output = dict[str, Any]
CREDIT_NOTE = re.compile(r"^CN-(?P<series>.+-\d+)-(?P<number>\d{6})$")
# A crash-point run's spare traffic (testkit/chaos_traffic.py, `spare_waves`): at most this many pairs of
# small waves, enough for the four points taken the 8th time to be taken in a row after the log's end.
SPARE_ROUNDS = 30


@dataclass
class Options:
    messages: int = 10_000
    kills: int = 20
    seed: int = 1
    partitions: int = 4
    workers: int = 2
    min_gap: float = 2.0
    wave_timeout: float = 900.0
    workdir: Path | None = None
    store: str = "memory://"
    # Crash points (workers/kafka/crashpoints.py), comma-separated, each `POINT` or `POINT@N`: a worker
    # is started with every point not reached yet armed, kills itself at the first it reaches (the N-th
    # time), and is restarted with the rest; so one worker dies once at each point in turn.
    crash_at: str | None = None
    # Publish a new version of CHAOS-A's rules halfway through the traffic (module docstring).
    rule_change: bool = True
    # The workers' consumer group session (OMS_SESSION_TIMEOUT_SECONDS; unset: the local default, 6 s).
    # A member killed with SIGKILL holds its partitions until its session ends, and this broker answers
    # a join only after about half a session: a worker restarted after a kill is ready about 15 s later
    # with 6 s, 6 s later with 3 s.
    session_timeout: float | None = None


@dataclass
class Pool:
    """The worker processes, one slot each (its own web port and data dir), killed and restarted."""

    env: dict[str, str]
    workdir: Path
    count: int
    slots: list[WorkerProcess] = field(default_factory=list)
    kills: list[tuple[float, int]] = field(default_factory=list)
    # Workers that died by themselves (a crash point): when, which slot, the exit status.
    deaths: list[tuple[float, int, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False
    crash_at: str | None = None
    # The crash points not reached yet, in the order asked, and the ones reached, in the order reached.
    pending: list[str] = field(default_factory=list)
    reached: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pending = [p.strip() for p in (self.crash_at or "").split(",") if p.strip()]

    def armed(self, overrides: dict[str, str]) -> dict[str, str]:
        """`overrides` with the pending crash points armed: one count per point, the first asked (a
        point asked plain and again as `@8` is armed plain until it has been reached)."""
        first: dict[str, str] = {}
        for spec in self.pending:
            first.setdefault(spec.partition("@")[0], spec)
        return {**overrides, CRASH_VARIABLE: ",".join(first.values())} if first else overrides

    def _reached(self, worker: WorkerProcess) -> None:
        """Take the point a worker that died at one named in its log off the pending list."""
        lines = worker.log_path.read_text("utf-8", "replace").splitlines()
        said = [line for line in lines if line.startswith("crash point reached: ")]
        if not said:
            return
        point = said[-1].removeprefix("crash point reached: ").strip()
        for spec in self.pending:
            if spec.partition("@")[0] == point:
                self.pending.remove(spec)
                self.reached.append(spec)
                return

    def start(self) -> None:
        for index in range(self.count):
            overrides = {
                **self.env,
                "OMS_WEB_PORT": str(free_port()),
                "OMS_DATA_DIR": str(self.workdir / f"data{index}"),
            }
            worker = WorkerProcess(self.armed(overrides), self.workdir / f"worker{index}.log").start()
            worker.overrides = overrides  # without crash points: a restart arms the ones still pending
            self.slots.append(worker)
        for worker in self.slots:
            worker.wait_ready(timeout=120)

    def revive(self, started: float) -> None:
        """Restart every worker that died by itself."""
        with self.lock:
            if self.stopped:
                return
            for index, worker in enumerate(self.slots):
                code = worker.process.poll() if worker.process is not None else None
                if code is not None:
                    self.deaths.append((time.monotonic() - started, index, code))
                    self._reached(worker)
                    env = self.armed(worker.overrides)
                    self.slots[index] = WorkerProcess(env, worker.log_path).start()
                    self.slots[index].overrides = worker.overrides

    def kill(self, rng: random.Random, started: float) -> None:
        with self.lock:
            if self.stopped:  # the run is ending: nothing is started again
                return
            index = rng.randrange(self.count)
            worker = self.slots[index]
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
            self.slots[index] = WorkerProcess(self.armed(worker.overrides), worker.log_path).start()
            self.slots[index].overrides = worker.overrides
            self.kills.append((time.monotonic() - started, index))

    def stop(self) -> list[int | None]:
        with self.lock:
            self.stopped = True
            return [worker.stop(timeout=60) for worker in self.slots]

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.slots if w.process is not None]


@dataclass
class Progress:
    """Offsets the group must commit before the next wave, and the kill points along the way."""

    settings: Settings
    targets: dict[TopicPartition, int] = field(default_factory=dict)
    consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            **self.settings.kafka_client_kwargs(),
        )
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def committed(self) -> dict[TopicPartition, int]:
        assert self.consumer is not None
        tps = list(self.targets)
        values = await asyncio.gather(*(self.consumer.committed(tp) for tp in tps))
        return {tp: value or 0 for tp, value in zip(tps, values, strict=True)}

    async def done(self) -> tuple[int, int]:
        """Records committed so far, and how many of the published ones are still uncommitted."""
        committed = await self.committed()
        behind = sum(max(0, self.targets[tp] - committed[tp]) for tp in self.targets)
        return sum(committed.values()), behind


class Killer:
    """Sends SIGKILL to a random worker when the committed progress passes each kill point."""

    def __init__(self, pool: Pool, points: list[int], min_gap: float, rng: random.Random) -> None:
        self.pool = pool
        self.points = sorted(points)
        self.min_gap = min_gap
        self.rng = rng
        self.started = time.monotonic()
        self.last = 0.0

    async def maybe_kill(self, progress: int) -> None:
        if self.points and progress >= self.points[0] and time.monotonic() - self.last >= self.min_gap:
            self.points.pop(0)
            await asyncio.to_thread(self.pool.kill, self.rng, self.started)
            self.last = time.monotonic()

    async def finish(self) -> None:
        while self.points:
            await self.maybe_kill(self.points[0])
            await asyncio.sleep(0.2)


def wave_records(
    wave: Wave, settings: Settings, pipeline: Pipeline, now: datetime, first: int
) -> list[InboundRecord]:
    """The wave's records, stamped as replay's expectation stamps the log: `now` plus their line
    number in milliseconds (`first`: the wave's first line)."""
    records = []
    for index, record in enumerate(wave.records, start=first):
        at = now + timedelta(milliseconds=index)
        inbound = InboundRecord(
            record["topic"], json.dumps(record["value"]).encode("utf-8"), None, {}, 0, 0, at
        )
        key = pipeline.key_for(inbound)
        records.append(
            InboundRecord(settings.topic_prefix + record["topic"], inbound.value, key, {}, 0, 0, at)
        )
    return records


async def publish_wave(
    producer: AIOKafkaProducer, records: list[InboundRecord], targets: dict[TopicPartition, int]
) -> None:
    for start in range(0, len(records), 200):
        futures = [
            await producer.send(
                r.topic,
                r.value,
                key=r.key.encode("utf-8") if r.key is not None else None,
                timestamp_ms=int(r.timestamp.timestamp() * 1000) if r.timestamp else None,
            )
            for r in records[start : start + 200]
        ]
        for future in futures:
            meta = await future
            tp = TopicPartition(meta.topic, meta.partition)
            targets[tp] = max(targets.get(tp, 0), meta.offset + 1)


async def wait_committed(progress: Progress, killer: Killer, base: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        total, behind = await progress.done()
        await killer.maybe_kill(total - base)
        killer.pool.revive(killer.started)
        if behind == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{behind} published records still uncommitted after {timeout:.0f}s")
        await asyncio.sleep(0.5)


def _as_output(record: Output, settings: Settings) -> Output:
    """An output record under its message name, as replay names it."""
    dead = record["topic"] == settings.dlq_topic
    topic = names.DEFAULT_DLQ_TOPIC if dead else record["topic"].removeprefix(settings.topic_prefix)
    return {**record, "topic": topic}


def identity(record: Output) -> tuple[str, str]:
    message_id = record["headers"].get("message_id")
    if message_id is None:  # a dead letter keeps its record's headers: the value tells it apart
        message_id = json.dumps(record["value"], sort_keys=True, default=str)
    return record["topic"], message_id


def content(record: Output) -> Any:
    """What must be equal between a delivery and replay. A stock adjustment's levels after the change
    depend on how movements from several order partitions interleave, so only the change is compared
    there; the final levels are compared separately."""
    if record["topic"] == names.STOCK_ADJUSTED:
        return [(a["sku"], a["quantity"]) for a in record["value"]["params"]["adjustment"]["adjustments"]]
    return record["value"]


def final_stock(records: list[Output]) -> dict[str, tuple[int, int, int]]:
    """The levels after the last adjustment of each source and SKU (one key, one partition: in order)."""
    levels: dict[str, tuple[int, int, int]] = {}
    for record in records:
        if record["topic"] == names.STOCK_ADJUSTED:
            for item in record["value"]["params"]["adjustment"]["adjustments"]:
                levels[record["key"]] = (item["on_hand"], item["reserved"], item["available_to_sell"])
    return levels


def credit_notes(records: list[Output]) -> dict[str, dict[int, set[tuple[str, str]]]]:
    """Per series, each number with the refund outputs that carry it."""
    series: dict[str, dict[int, set[tuple[str, str]]]] = defaultdict(lambda: defaultdict(set))
    for record in records:
        if record["topic"] == names.REFUND_UPDATED:
            number = record["value"]["params"]["refund"]["credit_note_number"]
            match = CREDIT_NOTE.match(number or "")
            if match:
                series[match["series"]][int(match["number"])].add(identity(record))
    return series


# The channel whose rules change halfway, and how.
CHANGED_CHANNEL = "CHAOS-A"


def rule_change(rules: Path, now: datetime, line: int) -> RuleVersion:
    """CHAOS-A's version 2 (credit notes wait PENDINGRELEASE), effective from the message time of log line
    `line` as the waves stamp it (`now` plus the line number in milliseconds, whole milliseconds)."""
    current = load_rules(rules).sales_channels[CHANGED_CHANNEL]
    changed = current.model_copy(update={"auto_release_refund": False})
    at = datetime.fromtimestamp((int(now.timestamp() * 1000) + line) / 1000, UTC)
    return RuleVersion(CHANGED_CHANNEL, 2, at, changed)


def expected_with_rules(
    log: Path, rules: Path, partitions: int, now: datetime, change: RuleVersion, line: int
) -> list[Output]:
    """What replay emits for the log stamped as `expected_outputs` stamps it, with the rules record of
    `change` before log line `line` (it takes no line number: the messages keep their times)."""
    stamp = int(now.timestamp() * 1000)
    texts = [text for text in log.read_text("utf-8").splitlines() if text.strip()]
    lines = [dumps({**loads(text), "timestamp": stamp + index}) for index, text in enumerate(texts)]
    record = encode(change, RULES_TOPIC)
    rules_line = dumps({"topic": RULES_TOPIC, "key": record.key, "value": loads(record.value)})
    out = io.StringIO()
    replay(
        iter([*lines[:line], rules_line, *lines[line:]]),
        out,
        load_rules(rules),
        partitions=partitions,
        settle_at_end=False,
    )
    return [loads(text) for text in out.getvalue().splitlines()]


def rules_versions_seen(expected: list[Output]) -> set[str]:
    return {
        str(r["value"]["params"].get("rules_version"))
        for r in expected
        if r["topic"] == names.REFUND_UPDATED and r["key"].startswith(CHANGED_CHANNEL + ":")
    }


def wait_rules_read(pool: Pool, version: int, timeout: float = 60.0) -> None:
    """Until every worker process alive has read `version` of CHAOS-A's rules (its /metrics); one
    that was (re)started after the publication reads it before it handles anything."""
    deadline = time.monotonic() + timeout
    while True:
        behind = []
        for worker in list(pool.slots):
            if worker.process is None or worker.process.poll() is not None:
                continue
            try:
                with worker._open("/metrics") as response:
                    text = response.read().decode()
            except OSError:
                behind.append(worker)  # starting: its web server is not up yet
                continue
            wanted = f'oms_rules_version{{sales_channel="{CHANGED_CHANNEL}"}} {float(version)}'
            if wanted not in text:
                behind.append(worker)
        if not behind:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(behind)} workers did not read {CHANGED_CHANNEL}@{version} in time")
        time.sleep(0.1)


@dataclass
class Verdict:
    lost: list[tuple[str, str]] = field(default_factory=list)
    doubled: list[tuple[str, str]] = field(default_factory=list)
    redeliveries: int = 0
    problems: list[str] = field(default_factory=list)
    # Workers that died by themselves at a crash point: (seconds into the run, slot, exit status).
    deaths: list[tuple[float, int, int]] = field(default_factory=list)
    # The crash points asked for that a worker died at, in the order it did.
    reached: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.doubled and not self.problems


def trivial(expected: list[Output], messages: int | None = None, asked: int | None = None) -> list[str]:
    """Why an expectation proves nothing: a run that must emit no credit note, move no stock, or emit
    nothing at all, or a log shorter than asked for, passes whatever the workers do."""
    problems = []
    if not expected:
        problems.append("replay expects no outputs at all: nothing to verify")
    if not credit_notes(expected):
        problems.append("replay expects no credit notes: the series cannot be verified")
    if not final_stock(expected):
        problems.append("replay expects no stock adjustments: stock cannot be verified")
    if asked is not None and (messages or 0) < asked:
        problems.append(f"the log holds {messages or 0} messages, fewer than the {asked} asked for")
    return problems


def verify(
    found: list[Output], expected: list[Output], messages: int | None = None, asked: int | None = None
) -> Verdict:
    """`messages`: how many the log holds; `asked`: how many the run was asked for."""
    verdict = Verdict(problems=trivial(expected, messages, asked))
    want: dict[tuple[str, str], Any] = {}
    for record in expected:
        if want.setdefault(identity(record), content(record)) != content(record):
            verdict.problems.append(f"replay itself emitted {identity(record)} twice, differently")
    seen: dict[tuple[str, str], list[Output]] = defaultdict(list)
    for record in found:
        seen[identity(record)].append(record)
    verdict.lost = sorted(set(want) - set(seen))
    for key, records in seen.items():
        if key not in want:
            verdict.doubled += [key] * len(records)
            continue
        # Copies of one output are a redelivery only if they are identical, levels included: a
        # movement applied twice carries the same id and change, but other levels after it.
        good = [r for r in records if content(r) == want[key]]
        variants = {json.dumps(r["value"], sort_keys=True, default=str) for r in good}
        verdict.doubled += [key] * (len(records) - len(good) + max(0, len(variants) - 1))
        verdict.redeliveries += len(good) - len(variants)
    have_notes, want_notes = credit_notes(found), credit_notes(expected)
    for name in sorted(set(have_notes) | set(want_notes)):
        numbers = sorted(have_notes.get(name, {}))
        if numbers != list(range(1, len(numbers) + 1)):
            verdict.problems.append(f"credit note series {name} has gaps: {numbers[:5]}…")
        if dict(have_notes.get(name, {})) != dict(want_notes.get(name, {})):
            verdict.problems.append(f"credit note series {name} differs from replay")
    ordered = sorted(found, key=lambda r: (r["topic"], r["partition"], r["offset"]))
    have_stock, want_stock = final_stock(ordered), final_stock(expected)
    for item in sorted(set(have_stock) | set(want_stock)):
        if have_stock.get(item) != want_stock.get(item):
            verdict.problems.append(
                f"stock {item}: on hand/reserved/ATS {have_stock.get(item)}, replay {want_stock.get(item)}"
            )
    return verdict


async def drive(
    options: Options,
    settings: Settings,
    pool: Pool,
    waves: list[Wave],
    expect: Callable[[int], list[Output]],
    now: datetime,
    echo: Any,
    change: tuple[int, RuleVersion] | None = None,
    spare: Sequence[Wave] = (),
) -> tuple[list[Output], list[Output], dict[str, float]]:
    """Publish the waves, then the `spare` ones one by one while a crash point is still to come;
    read the outputs. Returns them, what replay expects (`expect(n)`: for the log and the first `n`
    spare waves) and the timings. `change`: before wave number `change[0]`, publish that rule set
    version and wait until every live worker has read it."""
    rng = random.Random(options.seed)
    total = sum(len(w.records) for w in waves)
    killer = Killer(pool, rng.sample(range(1, total), min(options.kills, total - 1)), options.min_gap, rng)
    pipeline = Pipeline(load_rules(settings.rules_file), max_record_bytes=settings.max_record_bytes)
    progress = Progress(settings)
    producer = AIOKafkaProducer(acks="all", enable_idempotence=False, **settings.kafka_client_kwargs())
    timings: dict[str, float] = {}
    await progress.start()
    await producer.start()
    started = time.monotonic()
    try:
        base, _ = await progress.done()
        first, published = 0, 0
        for number, wave in enumerate(waves):
            if change is not None and number == change[0]:
                await publish_rules(settings, [change[1]])
                await asyncio.to_thread(wait_rules_read, pool, change[1].version)
                echo(f"  rules: published {change[1].label}, read by every live worker")
            wave_started = time.monotonic()
            records = wave_records(wave, settings, pipeline, now, first)
            first += len(wave.records)
            await publish_wave(producer, records, progress.targets)
            try:
                await wait_committed(progress, killer, base, options.wave_timeout)
            except RuntimeError as exc:  # stuck: still read and verify what did arrive
                echo(f"  wave {wave.name}: STUCK, {exc}")
                timings["stuck"] = time.monotonic() - started
                break
            timings[wave.name] = time.monotonic() - wave_started
            echo(
                f"  wave {wave.name}: {len(wave.records)} records committed in {timings[wave.name]:.1f}s "
                f"(kills so far {len(pool.kills)})"
            )
        else:
            await killer.finish()
            for wave in spare:
                if not pool.pending:
                    break
                records = wave_records(wave, settings, pipeline, now, first)
                first += len(wave.records)
                published += 1
                await publish_wave(producer, records, progress.targets)
                try:
                    await wait_committed(progress, killer, base, options.wave_timeout)
                except RuntimeError as exc:
                    echo(f"  wave {wave.name}: STUCK, {exc}")
                    timings["stuck"] = time.monotonic() - started
                    break
                pool.revive(started)  # a point reached as the wave was committed: off the list
            if published:
                left = ", ".join(pool.pending) or "none"
                echo(f"  spare waves: {published} of {len(spare)} published; points still to come: {left}")
        timings["traffic"] = time.monotonic() - started
    finally:
        await producer.stop()
    expected = expect(published)
    outputs = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
    want = {identity(r) for r in expected}
    deadline = time.monotonic() + (60.0 if "stuck" in timings else options.wave_timeout)
    reader = TopicReader(settings, outputs)
    await reader.start()
    try:
        # After the last kill, whatever was redelivered must still be processed and committed; the
        # workers deliver before they commit, so the end offsets then cover every copy written.
        while (behind := (await progress.done())[1]) > 0:
            if time.monotonic() > deadline:
                raise ReadTimeout(f"{behind} published records still uncommitted at the end")
            await reader.poll()  # read meanwhile: a stuck run still shows what did arrive
            pool.revive(started)

        awaited = Awaited(want, lambda r: identity(_as_output(r, settings)))
        await reader.until(
            lambda records: not awaited.missing(records),
            deadline,
            lambda: f"{len(awaited.missing(reader.records))} expected outputs missing",
        )
        await reader.to_end(deadline)
    except ReadTimeout as exc:  # still verify what did arrive: the verdict names what is missing
        echo(f"  reading the outputs: {exc}")
        timings["unread"] = time.monotonic() - started
    finally:
        await reader.stop()
        await progress.stop()
    timings["drained"] = time.monotonic() - started
    return [_as_output(r, settings) for r in reader.records], expected, timings


def run(options: Options, broker: LocalBroker | None = None, echo: Any = print) -> tuple[Verdict, int]:
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="oms-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    worker_logging.configure("WARNING")
    waves = chaos_waves(options.messages, options.seed)
    spare = spare_waves(options.seed, SPARE_ROUNDS) if options.crash_at else []
    log, rules = workdir / "chaos.jsonl", workdir / "rules.toml"
    rules.write_text(RULES_TOML, encoding="utf-8")
    now = datetime.now(UTC)
    change: tuple[int, RuleVersion] | None = None
    if options.rule_change and len(waves) > 1:
        halfway = len(waves) // 2
        line = sum(len(w.records) for w in waves[:halfway])
        change = (halfway, rule_change(rules, now, line))

    def expect(spares: int) -> list[Output]:
        """Replay's outputs for the log with the first `spares` spare waves (written to `log`)."""
        with log.open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(r) + "\n" for wave in [*waves, *spare[:spares]] for r in wave.records)
        if change is not None:
            replayed = expected_with_rules(log, rules, options.partitions, now, change[1], line)
        else:
            replayed = expected_outputs(log, rules, options.partitions, now)
        return [{**r, "partition": None, "offset": None} for r in replayed]

    without_spare = expect(0)
    echo(
        f"log {log}: {sum(len(w.records) for w in waves)} messages in {len(waves)} waves "
        f"({', '.join(f'{w.name} {len(w.records)}' for w in waves)}); "
        f"replay expects {len(without_spare)} outputs"
        + (f"; {len(spare)} spare waves while a crash point is still to come" if spare else "")
    )

    own = broker is None
    local = LocalBroker(log_dir=workdir) if broker is None else broker
    if own:
        local.start()
    try:
        env, settings = isolated(
            local.bootstrap,
            workdir,
            rules,
            "c",
            OMS_PARTITIONS=str(options.partitions),
            OMS_INTERNAL_PARTITIONS=str(options.partitions),
            OMS_STORE=options.store,
            **(
                {"OMS_SESSION_TIMEOUT_SECONDS": str(options.session_timeout)}
                if options.session_timeout is not None
                else {}
            ),
        )
        pool = Pool(env, workdir, options.workers, crash_at=options.crash_at)
        # One try from the start on: a stop signal may come at any point after the workers exist (the
        # SIGTERM test sends it as soon as the line below is out, which can be while echo returns).
        try:
            pool.start()
            echo(
                f"broker {local.bootstrap} (pid {local.pid}); {options.workers} workers ready "
                f"on {options.store} "
                f"(pids {' '.join(map(str, pool.pids()))}); logs {workdir}/worker*.log"
            )
            found, expected, timings = asyncio.run(
                drive(
                    options,
                    settings,
                    pool,
                    waves,
                    lambda n: expect(n) if n else without_spare,
                    now,
                    echo,
                    change,
                    spare,
                )
            )
            pool.revive(time.monotonic())  # one that died at its crash point after the last commit
        finally:
            codes = pool.stop()
    finally:
        if own:
            local.stop()
    with (workdir / "outputs.jsonl").open("w", encoding="utf-8") as out:  # for a post-mortem
        out.writelines(dumps(r) + "\n" for r in found)
    messages = sum(1 for text in log.read_text("utf-8").splitlines() if text.strip())
    verdict = verify(found, expected, messages, options.messages)
    if change is not None and rules_versions_seen(expected) != {"CHAOS-A@1", "CHAOS-A@2"}:
        verdict.problems.append(
            f"the rule change decided nothing: CHAOS-A's notes name {sorted(rules_versions_seen(expected))}"
        )
    verdict.deaths = list(pool.deaths)
    verdict.reached = list(pool.reached)
    if pool.pending:
        verdict.problems.append(f"crash points never reached: {', '.join(pool.pending)}")
    if "unread" in timings:
        verdict.problems.append(f"the outputs were not all read by the deadline ({timings['unread']:.0f}s)")
    if "stuck" in timings:
        verdict.problems.append(f"the group stopped committing at {timings['stuck']:.0f}s")
    kills = len(pool.kills)
    by_worker = Counter(index for _, index in pool.kills)
    echo(
        f"traffic {timings['traffic']:.0f}s, drained at {timings['drained']:.0f}s; waves "
        + ", ".join(
            f"{name} {seconds:.0f}s"
            for name, seconds in timings.items()
            if name not in ("traffic", "drained", "unread")
        )
    )
    echo(
        f"kills: {kills} (per worker slot {dict(sorted(by_worker.items()))}) at "
        + ", ".join(f"{at:.0f}s" for at, _ in pool.kills)
    )
    if options.crash_at:
        echo(
            "crash points: workers died by themselves "
            + (", ".join(f"slot {i} at {at:.0f}s (exit {code})" for at, i, code in pool.deaths) or "never")
            + f"; reached in turn: {', '.join(pool.reached) or 'none'}"
            + (f"; never reached: {', '.join(pool.pending)}" if pool.pending else "")
        )
    echo(f"outputs: {len(found)} read, {len(expected)} expected; workers stopped with exit codes {codes}")
    notes = credit_notes(found)
    stock = final_stock(sorted(found, key=lambda r: (r["topic"], r["partition"], r["offset"])))
    echo(
        f"credit notes: {sum(len(n) for n in notes.values())} in {len(notes)} series; "
        f"stock items: {len(stock)}"
    )
    for key in verdict.lost[:10]:
        echo(f"  lost: {key}")
    for key in verdict.doubled[:10]:
        echo(f"  double effect: {key}")
    for problem in verdict.problems[:20]:
        echo(f"  {problem}")
    if any(code != 0 for code in codes):
        verdict.problems.append(f"a worker did not stop cleanly: {codes}")
    echo(
        f"lost={len(verdict.lost)} double_effects={len(verdict.doubled)} "
        f"redeliveries={verdict.redeliveries} kills={kills} messages={messages}"
    )
    return verdict, kills


class Stepwise:
    """The chaos traffic published a few waves at a time, with the test doing what it likes to the
    workers and their folders in between (stop one, swap a folder, move to another broker), then every
    output compared with replay's for the whole log (`verdict`)."""

    def __init__(self, bootstrap: str, workdir: Path, messages: int, seed: int, **extra: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.waves = chaos_waves(messages, seed)
        self.log, self.rules = workdir / "chaos.jsonl", workdir / "rules.toml"
        self.rules.write_text(RULES_TOML, encoding="utf-8")
        with self.log.open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(r) + "\n" for wave in self.waves for r in wave.records)
        self.now = datetime.now(UTC)
        self.env, self.settings = isolated(
            bootstrap, workdir, self.rules, "s", OMS_STORE="rocksdb://", OMS_PARTITIONS="4", **extra
        )
        self.expected = [
            {**r, "partition": None, "offset": None}
            for r in expected_outputs(self.log, self.rules, self.settings.partitions, self.now)
        ]
        self.first = 0  # the log line of the next wave to publish
        self.targets: dict[TopicPartition, int] = {}  # the offsets the group must commit

    def adopt(self, other: Stepwise, bootstrap: str) -> None:
        """From now on, `other`'s topics, group and settings, on `bootstrap` (its topics created there):
        the same group on another cluster, whose data folders can be swapped in."""
        self.env = {**other.env, "OMS_BOOTSTRAP_SERVERS": bootstrap, "OMS_RULES_FILE": str(self.rules)}
        self.settings = settings_from_env(self.env)
        asyncio.run(create_topics(self.settings, catalogue(self.settings)))

    def worker(self, folder: str, name: str, **extra: str) -> WorkerProcess:
        """A ready worker whose tables are in `workdir/folder`, logging to `workdir/name.log`."""
        where = {"OMS_WEB_PORT": str(free_port()), "OMS_DATA_DIR": str(self.workdir / folder)}
        env = {**self.env, **where, **extra}
        worker = WorkerProcess(env, self.workdir / f"{name}.log").start()
        worker.wait_ready(timeout=120)
        return worker

    def through(self, folder: str, name: str, count: int | None = None) -> None:
        """The next `count` waves (all: None) through a worker on `folder`, stopped with SIGTERM after."""
        worker = self.worker(folder, name)
        self.publish(count)
        code = worker.stop()
        if code != 0:
            raise RuntimeError(f"worker {name} stopped with {code}; see {worker.log_path}")

    def publish(self, count: int | None = None, wait: bool = True, timeout: float = 180.0) -> None:
        """The next `count` waves (all that are left: None), each committed by the group before the next
        is published; with `wait=False`, published and not waited for (`committed` waits)."""
        waves = self.waves[: count if count is not None else len(self.waves)]
        self.waves = self.waves[len(waves) :]
        asyncio.run(self._publish(waves, wait, timeout))

    def committed(self, timeout: float = 180.0) -> None:
        asyncio.run(self._publish([], True, timeout))

    async def _publish(self, waves: list[Wave], wait: bool, timeout: float) -> None:
        settings = self.settings
        pipeline = Pipeline(load_rules(settings.rules_file), max_record_bytes=settings.max_record_bytes)
        progress = Progress(settings, self.targets)
        producer = AIOKafkaProducer(acks="all", enable_idempotence=False, **settings.kafka_client_kwargs())
        await progress.start()
        await producer.start()
        try:
            batches: list[Wave | None] = [*waves] or [None]  # no wave: only wait
            for wave in batches:
                if wave is not None:
                    records = wave_records(wave, settings, pipeline, self.now, self.first)
                    self.first += len(wave.records)
                    await publish_wave(producer, records, progress.targets)
                deadline = time.monotonic() + timeout
                while wait and (await progress.done())[1] > 0:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"published records not committed after {timeout:.0f}s")
                    await asyncio.sleep(0.2)
        finally:
            await producer.stop()
            await progress.stop()

    def verdict(self, timeout: float = 120.0) -> Verdict:
        return asyncio.run(self._verdict(timeout))

    async def _verdict(self, timeout: float) -> Verdict:
        outputs = [self.settings.topic_for(n) for n in names.OUTBOUND] + [self.settings.dlq_topic]
        awaited = Awaited(
            {identity(r) for r in self.expected}, lambda r: identity(_as_output(r, self.settings))
        )
        deadline = time.monotonic() + timeout
        reader = TopicReader(self.settings, outputs)
        await reader.start()
        try:
            await reader.until(
                lambda records: not awaited.missing(records),
                deadline,
                lambda: f"{len(awaited.missing(reader.records))} expected outputs missing",
            )
            await reader.to_end(deadline)
        except ReadTimeout:
            pass  # the verdict names what is missing
        finally:
            await reader.stop()
        found = [_as_output(r, self.settings) for r in reader.records]
        return verify(found, self.expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Options()
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--min-gap", type=float, default=defaults.min_gap, help="seconds between kills")
    parser.add_argument(
        "--wave-timeout", type=float, default=defaults.wave_timeout, help="seconds a wave may take to commit"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--store",
        choices=("memory://", "rocksdb://"),
        default=defaults.store,
        help="the workers' table store (rocksdb:// is the production default)",
    )
    parser.add_argument(
        "--crash-at",
        metavar="POINT[@N][,POINT[@N]...]",
        default=None,
        help="instead of random kills: a worker kills itself the first (or N-th) time it reaches POINT, "
        "and is restarted with the points still to come armed; several points: killed at each in turn. "
        f"Points: {', '.join(POINTS)}",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=None,
        help="the workers' consumer group session in seconds (default 6): how long a killed worker's "
        "partitions wait, and about twice what a restarted worker's join waits on the local broker "
        "(which takes any session; Apache Kafka refuses one under 6 s by default)",
    )
    args = parser.parse_args(argv)
    for spec in (args.crash_at or "").split(","):
        if args.crash_at is not None and spec.strip().partition("@")[0] not in POINTS:
            parser.error(f"--crash-at {spec}: no such point")
    options = Options(
        messages=args.messages,
        kills=args.kills,
        seed=args.seed,
        partitions=args.partitions,
        workers=args.workers,
        min_gap=args.min_gap,
        wave_timeout=args.wave_timeout,
        workdir=args.workdir,
        store=args.store,
        crash_at=args.crash_at,
        session_timeout=args.session_timeout,
    )
    try:
        with raising_on_stop_signals():
            verdict, _ = run(options)
    except Stopped as stop:
        print(f"stopped by {stop}; the broker and workers it started are stopped")
        return 128 + stop.signum
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
