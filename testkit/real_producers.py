"""The outsider's test: ordinary scenarios produced as a real upstream would, against a live worker,
compared with `oms-postsales replay` of the log in the order the producer wrote it.

    .venv/bin/python bench/real_producers.py                     # every scenario, every variant
    .venv/bin/python bench/real_producers.py --scenario seed-000-octopus --variant na --workdir /tmp/rp

Producers are confluent-kafka (librdkafka) clients with their default settings, one topic per message
name (with the run's topic prefix), records written in story order, each waited for only until its
delivery report (a flush per record), never for the worker:

- `n*` no key at all (librdkafka spreads unkeyed records over the partitions);
- `k*` the `<sales channel>:<order id>` key (stock: the source), but written by two producers: the
  default `consistent_random` partitioner (crc32) for shipments, returns and reshipments, and
  `partitioner=murmur2_random` (the Java client's) for orders, cancellations, refunds, appeasements
  and stock.

Timings: `*a` back to back; `*b` every scenario's records spread over `--spread` seconds, scenarios
interleaved; `*c` back to back, except that a scenario's first shipment is written `--delay` seconds
after the first message that needs it (a return or an upstream refund), the way an upstream whose
shipments come from a slower system would.

Everything runs on one broker and one worker with a fresh prefix and consumer group. The log as
written (topics, keys, timestamps from the delivery reports) goes through `oms-postsales replay
--partitions N` (N = the worker's partitions). The output topics are read until replay's count of
records is there (or the deadline passes), and compared per scenario: per topic and key the same
records in the same order, with the same message ids and values. Credit note numbers of the worker's
own series (`CN-<store>-<partition>-<seq>`) are compared without their sequence, and per series as a
set that must be gap-free: orders of one partition whose records reach the worker on different topics
may take numbers in another order than replay, which reads one file in order. Exit 0 when everything
matches; the work folder keeps the produced log, replay's output, the outputs read and the worker log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from domain import names
from testkit.live import isolated
from testkit.scenarios import DEPENDS_ON_SHIPMENT, RULES, SHIPMENT, STORIES, Scenario, Step, build, log_line
from workers.config.settings import Settings
from workers.engine.codec import dumps, loads
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, collect

ROOT = Path(__file__).resolve().parents[1]

Json = dict[str, Any]
PRODUCERS = {
    "n": "no key",
    "k": "keyed, crc32 + murmur2 producers",
    "m": "control: keyed, murmur2 everywhere",
}
TIMINGS = {"a": "back to back", "b": "spread over seconds", "c": "shipment after its return"}
# The control producer writes what the worker has always expected; it is not an upstream's default.
VARIANTS = [p + t for p in PRODUCERS for t in TIMINGS if p != "m"]
CONTROLS = [f"m{t}" for t in TIMINGS]
# Written by the murmur2 producer in the keyed variants; the rest by the default (crc32) one.
MURMUR2_TOPICS = {
    names.ORDER_CREATE,
    names.ORDER_CANCEL,
    names.ORDER_CANCEL_LINE,
    names.APPEASEMENT_CREATE,
    names.REFUND_CREATE,
    names.STOCK_UPDATE,
}
_VARIANT_NAMES = {p + t: f"{PRODUCERS[p]}, {TIMINGS[t]}" for p in PRODUCERS for t in TIMINGS}
DELIVERY_TIMEOUT = 30.0
OWN_NUMBER = re.compile(r"^(CN-.+-\d+)-(\d{6})$")


@dataclass(frozen=True)
class Planned:
    at: float  # seconds after the start of the variant
    step: Step
    variant: str


@dataclass
class Written:
    step: Step
    variant: str
    key: str | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def plan(scenarios: list[Scenario], variant: str, spread: float, delay: float) -> list[Planned]:
    """When each record is written, relative to the variant's start, in write order."""
    timing = variant[1]
    planned: list[tuple[float, int, int, Step]] = []
    if timing == "b":
        # Scenarios start staggered and interleave; one scenario's records are `spread` apart in all.
        for index, scenario in enumerate(scenarios):
            start = spread * index / max(len(scenarios), 1)
            gap = spread / max(len(scenario.steps) - 1, 1)
            planned += [(start + n * gap, index, n, step) for n, step in enumerate(scenario.steps)]
    else:
        clock = 0.0
        for index, scenario in enumerate(scenarios):
            steps = late_shipment(scenario.steps) if timing == "c" else scenario.steps
            for n, step in enumerate(steps):
                if timing == "c" and step is not scenario.steps[n] and step.role == SHIPMENT:
                    clock += delay
                planned.append((clock, index, n, step))
    planned.sort(key=lambda p: (p[0], p[1], p[2]))
    return [Planned(at, step, variant) for at, _i, _n, step in planned]


def late_shipment(steps: list[Step]) -> list[Step]:
    """The first shipment moved after the first later record that needs it."""
    first = next((i for i, s in enumerate(steps) if s.role == SHIPMENT), None)
    if first is None:
        return steps
    needing = next((i for i in range(first + 1, len(steps)) if steps[i].role == DEPENDS_ON_SHIPMENT), None)
    if needing is None:
        return steps
    moved = steps[:first] + steps[first + 1 : needing + 1] + [steps[first]] + steps[needing + 1 :]
    return moved


class Upstream:
    """The producers of one variant, librdkafka defaults except where the variant says otherwise."""

    def __init__(self, bootstrap: str, variant: str) -> None:
        self.keyed = variant[0] in "km"
        self.everywhere = variant[0] == "m"
        self.default = Producer({"bootstrap.servers": bootstrap})
        self.murmur2 = (
            Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
            if self.keyed
            else None
        )

    def write(self, topic: str, step: Step, variant: str) -> Written:
        by_murmur2 = self.everywhere or step.name in MURMUR2_TOPICS
        producer = self.murmur2 if self.murmur2 is not None and by_murmur2 else self.default
        key = step.key if self.keyed else None
        reports: list[tuple[KafkaError | None, Message]] = []
        producer.produce(
            topic,
            dumps(step.value).encode("utf-8"),
            key=key.encode("utf-8") if key is not None else None,
            on_delivery=lambda error, message: reports.append((error, message)),
        )
        left = producer.flush(DELIVERY_TIMEOUT)
        if left or not reports:
            raise RuntimeError(f"{step.message_id}: no delivery report within {DELIVERY_TIMEOUT:.0f}s")
        error, message = reports[0]
        if error is not None:
            raise RuntimeError(f"{step.message_id}: delivery failed: {error}")
        _kind, timestamp = message.timestamp()
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        return Written(step, variant, key, topic, partition, offset, timestamp)


def produce(bootstrap: str, prefix: str, plans: dict[str, list[Planned]]) -> list[Written]:
    written: list[Written] = []
    for variant, planned in plans.items():
        upstream = Upstream(bootstrap, variant)
        started = time.monotonic()
        for item in planned:
            # Traffic shaping of the producer, as an upstream's own pace: never a wait for the worker.
            pause = started + item.at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            written.append(upstream.write(prefix + item.step.name, item.step, variant))
    return written


# -- comparison -------------------------------------------------------------------------------------


def masked(topic: str, value: Any) -> Any:
    """The value with the sequence of the worker's own credit note numbers hidden (compared per series)."""
    if not isinstance(value, dict):
        return value
    copy = json.loads(json.dumps(value, default=str))
    params = copy.get("params", {})
    if topic == names.REFUND_UPDATED:
        refund = params.get("refund", {})
        refund["credit_note_number"] = _mask(refund.get("credit_note_number"))
    elif topic == names.ORDER_UPDATED:
        for transaction in params.get("order", {}).get("postsales", {}).get("transactions", []):
            transaction["credit_note_number"] = _mask(transaction.get("credit_note_number"))
    return copy


def _mask(number: Any) -> Any:
    match = OWN_NUMBER.match(number) if isinstance(number, str) else None
    return f"{match.group(1)}-######" if match else number


def series(records: Iterable[Json]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = defaultdict(list)
    for record in records:
        if record["topic"] == names.REFUND_UPDATED:
            number = record["value"]["params"]["refund"]["credit_note_number"]
            match = OWN_NUMBER.match(number)
            if match:
                found[match.group(1)].append(int(match.group(2)))
    return {name: sorted(numbers) for name, numbers in found.items()}


def describe(topic: str, value: Any) -> str:
    """A short human line for one output record."""
    if not isinstance(value, dict):
        return str(value)[:80]
    params = value.get("params", {})
    if topic == names.ERROR_NOTIFY:
        return f"REFUSED {params.get('code')} {params.get('delivery_id')}: {str(params.get('message'))[:70]}"
    if topic == names.REFUND_UPDATED:
        r = params["refund"]
        lines = ",".join(f"{x['order_line']}x{x['quantity']}" for x in r["lines"])
        totals = r["totals"]["cost_gross"]
        return f"{r['refund_type']} {r['document_type']} {totals} {r['credit_note_number']} [{lines}]"
    if topic == names.RETURN_UPDATED:
        r = params["return"]
        return f"{r['rma']} {r['status']['code']} lines {[x['line_number'] for x in r['lines']]}"
    if topic == names.STOCK_ADJUSTED:
        a = params["adjustment"]
        items = ";".join(
            f"{x['sku']} {x['quantity']:+} oh={x.get('on_hand')} res={x.get('reserved')}"
            for x in a["adjustments"]
        )
        return f"{a['reason']} {items}"
    if topic == names.ORDER_UPDATED:
        o = params["order"]
        lines = " ".join(
            f"{x['line_number']}:s{x['shipped']}r{x['returned']}c{x['cancelled']}"
            for x in o["postsales"]["lines"]
        )
        return f"{o['postsales']['status']} refunded {o['postsales']['refunded']['cost_gross']} {lines}"
    return json.dumps(params, default=str)[:80]


def first_difference(expected: Any, found: Any, path: str = "") -> str | None:
    if type(expected) is not type(found):
        left, right = json.dumps(expected, default=str)[:60], json.dumps(found, default=str)[:60]
        return f"{path or '/'}: {left} != {right}"
    if isinstance(expected, dict):
        for key in sorted(set(expected) | set(found)):
            if key not in expected or key not in found:
                return f"{path}/{key}: only in {'found' if key in found else 'replay'}"
            difference = first_difference(expected[key], found[key], f"{path}/{key}")
            if difference:
                return difference
        return None
    if isinstance(expected, list):
        if len(expected) != len(found):
            return f"{path}: {len(expected)} items in replay, {len(found)} found"
        for index, (a, b) in enumerate(zip(expected, found, strict=True)):
            difference = first_difference(a, b, f"{path}/{index}")
            if difference:
                return difference
        return None
    return None if expected == found else f"{path}: {expected!r} != {found!r}"


Stream = list[tuple[str, Any]]


def streams(records: Iterable[Json], dlq: str) -> dict[tuple[str, str | None], Stream]:
    """Per topic (message name) and key, in the order written: message id and masked value. Dead
    letters keep their original key and headers; they are compared per original message id."""
    grouped: dict[tuple[str, str | None], Stream] = defaultdict(list)
    for record in records:
        if record["topic"] == dlq:
            value = record["value"]
            headers = {k: v for k, v in record["headers"].items() if not k.startswith("dlq.original.")}
            headers.pop("dlq.failed_at", None)
            grouped[("DLQ", None)].append((str(value), headers))
        else:
            grouped[(record["topic"], record["key"])].append(
                (record["headers"]["message_id"], masked(record["topic"], record["value"]))
            )
    if ("DLQ", None) in grouped:
        grouped[("DLQ", None)].sort(key=lambda item: item[0])
    return dict(grouped)


@dataclass
class Outcome:
    scenarios: list[tuple[str, Scenario]]
    written: int = 0
    expected: list[Json] = field(default_factory=list)
    found: list[Json] = field(default_factory=list)
    differences: dict[str, list[str]] = field(default_factory=dict)
    matching: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    read_timeout: float = 0.0
    series_problems: list[str] = field(default_factory=list)
    replay_refusals: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences and not self.series_problems and not self.replay_refusals

    def report(self) -> str:
        lines = [
            f"{len(self.scenarios)} scenario runs, {self.written} records written, "
            f"{len(self.expected)} outputs predicted by replay, {len(self.found)} read, {self.elapsed:.1f}s"
        ]
        if len(self.found) < len(self.expected):
            lines.append(
                f"DEADLINE: {self.read_timeout:.0f}s passed with {len(self.found)} of the "
                f"{len(self.expected)} outputs replay predicts"
            )
        for label in self.matching:
            lines.append(f"  same     {label}")
        for label, details in self.differences.items():
            lines.append(f"  DIFFER   {label}")
            lines += [f"           {d}" for d in details]
        if self.replay_refusals:
            lines.append(
                "replay itself refuses records of ordinary scenarios (the expectation is not ordinary):"
            )
            lines += [f"  {r}" for r in self.replay_refusals]
        if self.series_problems:
            lines.append("credit note series:")
            lines += [f"  {p}" for p in self.series_problems]
        lines.append("per variant: same / runs; how the others differ")
        for variant in dict.fromkeys(v for v, _s in self.scenarios):
            runs = [f"{variant} {s.name}" for v, s in self.scenarios if v == variant]
            same = sum(1 for label in runs if label in self.matching)
            how = Counter(_coarse(self.kinds[label]) for label in runs if label in self.kinds)
            lines.append(f"  {variant} ({_VARIANT_NAMES[variant]}): {same}/{len(runs)} same; {dict(how)}")
        codes = Counter(r["value"]["params"]["code"] for r in self.found if r["topic"] == names.ERROR_NOTIFY)
        lines.append(
            f"summary: scenarios={len(self.scenarios)} differ={len(self.differences)} "
            f"missing={max(len(self.expected) - len(self.found), 0)} refusals_live={dict(codes)}"
        )
        return "\n".join(lines)


def compare(outcome: Outcome, expected: list[Json], found: list[Json], dlq: str, limit: int = 4) -> None:
    tokens = {scenario.token: f"{variant} {scenario.name}" for variant, scenario in outcome.scenarios}
    pattern = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))

    def owner(record: Json) -> str:
        where = record["value"] if record["topic"] == dlq else record["key"]
        match = pattern.search(str(where))
        return tokens[match.group(0)] if match else "(no scenario)"

    for record in expected:
        if record["topic"] in (names.ERROR_NOTIFY, dlq):
            outcome.replay_refusals.append(f"{owner(record)}: {describe(record['topic'], record['value'])}")
    by_owner_expected: dict[str, list[Json]] = defaultdict(list)
    by_owner_found: dict[str, list[Json]] = defaultdict(list)
    for record in expected:
        by_owner_expected[owner(record)].append(record)
    for record in found:
        by_owner_found[owner(record)].append(record)
    labels = [f"{variant} {scenario.name}" for variant, scenario in outcome.scenarios]
    upstream_key = {step.message_id: step.key for _v, s in outcome.scenarios for step in s.steps}
    cause_key = {
        r["headers"]["message_id"]: upstream_key.get(r["headers"].get("causation_id", ""), "")
        for r in [*expected, *found]
        if r["topic"] == names.STOCK_ADJUSTED
    }
    for label in labels + sorted(set(by_owner_found) - set(labels)):
        want = streams(by_owner_expected[label], dlq)
        have = streams(by_owner_found[label], dlq)
        details: list[str] = []
        for stream in sorted(set(want) | set(have), key=lambda s: (s[0], s[1] or "")):
            a, b = want.get(stream, []), have.get(stream, [])
            if a == b or (stream[0] == names.STOCK_ADJUSTED and same_stock(a, b, cause_key)):
                continue
            topic = stream[0].rsplit(".", 2)[-2] + "." + stream[0].rsplit(".", 1)[-1]
            index = next(
                (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
            )
            if index < len(a) and index < len(b):
                (id_a, va), (id_b, vb) = a[index], b[index]
                what = "id differs" if id_a != id_b else "same id"
                where = (
                    first_difference(va.get("params"), vb.get("params"), "/params") if id_a != id_b else None
                )
                details.append(
                    f"{topic} {stream[1]} #{index + 1} of {len(a)}/{len(b)}: {what}; "
                    f"{where or first_difference(va, vb)}\n"
                    f"              replay: {describe(stream[0], va)}\n"
                    f"              worker: {describe(stream[0], vb)}"
                )
            elif index < len(a):
                missing = "; ".join(describe(stream[0], v) for _i, v in a[index : index + 3])
                details.append(f"{topic} {stream[1]}: {len(a) - index} missing from #{index + 1}: {missing}")
            else:
                extra = "; ".join(describe(stream[0], v) for _i, v in b[index : index + 3])
                details.append(f"{topic} {stream[1]}: {len(b) - index} extra from #{index + 1}: {extra}")
        if details:
            outcome.kinds[label] = verdict(want, have)
            outcome.differences[label] = [outcome.kinds[label], *details[:limit]] + (
                [f"… {len(details) - limit} more streams differ"] if len(details) > limit else []
            )
        elif label in labels:
            outcome.matching.append(label)
    want_series, have_series = series(expected), series(found)
    for name in sorted(set(want_series) | set(have_series)):
        replayed, live = want_series.get(name, []), have_series.get(name, [])
        if replayed != live:
            outcome.series_problems.append(f"{name}: replay {_ranges(replayed)}, worker {_ranges(live)}")
        if live != list(range(1, len(live) + 1)):
            outcome.series_problems.append(
                f"{name}: worker's numbers are not 1..{len(live)}: {_ranges(live)}"
            )


def same_stock(a: Stream, b: Stream, cause_key: dict[str, str]) -> bool:
    """One stock item's adjustments, as far as the worker promises them: the same adjustments (ids and
    movements), in the same order among those caused by one upstream key, ending at the same levels.
    Movements caused by different keys (a source's snapshot, two orders) reach the item in the order
    they are handled, so the levels in between may differ."""
    if sorted(_movement(i, v) for i, v in a) != sorted(_movement(i, v) for i, v in b):
        return False
    if not a:
        return True
    if _levels(a[-1][1]) != _levels(b[-1][1]):
        return False
    for key in {cause_key.get(i, "") for i, _v in a}:
        if [i for i, _v in a if cause_key.get(i, "") == key] != [
            i for i, _v in b if cause_key.get(i, "") == key
        ]:
            return False
    return True


def _movement(message_id: str, value: Any) -> str:
    adjustment = json.loads(json.dumps(value["params"]["adjustment"], default=str))
    for item in adjustment["adjustments"]:
        for level in ("quantity", "on_hand", "reserved", "available_to_sell"):
            item.pop(level, None)
    return message_id + json.dumps(adjustment, sort_keys=True)


def _levels(value: Any) -> list[tuple[Any, Any, Any]]:
    return [
        (item.get("on_hand"), item.get("reserved"), item.get("available_to_sell"))
        for item in value["params"]["adjustment"]["adjustments"]
    ]


def verdict(want: dict[tuple[str, str | None], Stream], have: dict[tuple[str, str | None], Stream]) -> str:
    """How a scenario differs, in a few words: refusals replay did not make, records missing or extra,
    or only the partition in the worker's own credit note numbers."""
    refused = Counter(
        value["params"]["code"]
        for (topic, _key), stream in have.items()
        if topic == names.ERROR_NOTIFY
        for _id, value in stream
    ) - Counter(
        value["params"]["code"]
        for (topic, _key), stream in want.items()
        if topic == names.ERROR_NOTIFY
        for _id, value in stream
    )
    wanted = sum(len(v) for v in want.values())
    got = sum(len(v) for v in have.values())
    parts = [f"refused {code} x{n}" for code, n in sorted(refused.items())]
    if wanted != got:
        parts.append(f"{wanted} records in replay, {got} from the worker")
    if not parts:
        bare_want = {k: [(i, _unnumbered(v)) for i, v in s] for k, s in want.items()}
        bare_have = {k: [(i, _unnumbered(v)) for i, v in s] for k, s in have.items()}
        same_ids = all([i for i, _v in want[k]] == [i for i, _v in have.get(k, [])] for k in want)
        if bare_want == bare_have:
            parts.append("only the partition of credit note numbers")
        elif same_ids:
            parts.append("same records and ids, other values")
        else:
            parts.append("same number of records, other order or ids")
    return "(" + "; ".join(parts) + ")"


def _coarse(kind: str) -> str:
    if "refused" in kind:
        return "refusals replay did not make"
    counts = re.search(r"(\d+) records in replay, (\d+) from the worker", kind)
    if counts:
        return "records missing" if int(counts.group(2)) < int(counts.group(1)) else "records extra"
    return kind.strip("()")


def _unnumbered(value: Any) -> Any:
    text = json.dumps(value, sort_keys=True, default=str)
    return re.sub(r'"CN-[^"]*-\d+-######"', '"CN"', text)


def _ranges(numbers: list[int]) -> str:
    return f"{len(numbers)} numbers {numbers[:8]}{'…' if len(numbers) > 8 else ''}"


# -- the run ----------------------------------------------------------------------------------------


def replay_expected(log: Path, rules: Path, partitions: int, out: Path) -> list[Json]:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "workers", "replay", str(log), "--rules", str(rules)),
            *("--partitions", str(partitions), "--output", str(out)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"replay failed ({done.returncode}): {done.stderr.strip()}")
    return [loads(line) for line in out.read_text("utf-8").splitlines() if line]


def emitted(worker: WorkerProcess, topics: list[str]) -> int:
    """Records the worker says it delivered to these topics (its /metrics)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return 0  # no figure: the count replay predicts is all that is read
    total = 0.0
    for line in text.splitlines():
        match = re.match(r'^oms_emitted_records_total\{topic="([^"]+)"\} (\S+)$', line)
        if match and match.group(1) in topics:
            total += float(match.group(2))
    return int(total)


def read_outputs(settings: Settings, worker: WorkerProcess, expected: int, timeout: float) -> list[Json]:
    """Every output record, read from offset 0 until `expected` are there or the deadline passes; then,
    if the worker says it emitted more than that, until those are there too (extras are differences).

    Records are counted, never compared with the broker's end offsets (the local broker's are wrong
    after multi-record batches)."""
    topics = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
    records = asyncio.run(collect(settings, topics, expected, timeout)).records
    more = emitted(worker, topics)
    if more > len(records):
        records = asyncio.run(collect(settings, topics, more, timeout)).records
    records.sort(key=lambda r: (r["topic"], r["partition"], r["offset"]))
    return records


def run_live(
    bootstrap: str,
    workdir: Path,
    variants: list[str],
    stories: list[str] | None = None,
    spread: float = 3.0,
    delay: float = 0.4,
    read_timeout: float = 60.0,
    store: str = "rocksdb://",
    echo: Any = print,
) -> Outcome:
    """`store`: the worker's tables. RocksDB, as in production, keeps each partition's table apart;
    memory tables answer a lookup from any partition and hide a record read on the wrong one."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    rules = workdir / "rules.toml"
    rules.write_text(RULES, "utf-8")
    chosen = {variant: build(stories, variant) for variant in variants}
    outcome = Outcome([(variant, s) for variant, scenarios in chosen.items() for s in scenarios])
    outcome.read_timeout = read_timeout
    env, settings = isolated(bootstrap, workdir, rules, "r", OMS_STORE=store)
    worker = WorkerProcess(env, workdir / "worker.log").start()
    try:
        worker.wait_ready()
        echo(f"worker ready (prefix {settings.topic_prefix}, {settings.partitions} partitions, {store})")
        plans = {variant: plan(scenarios, variant, spread, delay) for variant, scenarios in chosen.items()}
        written = produce(bootstrap, settings.topic_prefix, plans)
        outcome.written = len(written)
        log = workdir / "produced.jsonl"
        with log.open("w", encoding="utf-8") as out:
            for w in written:
                out.write(log_line(w.step, w.key, w.timestamp_ms) + "\n")
        spread_over = Counter(w.partition for w in written)
        echo(f"wrote {len(written)} records (partitions {dict(sorted(spread_over.items()))}); log {log}")
        predicted = replay_expected(log, rules, settings.partitions, workdir / "replay.jsonl")
        expected = [
            {**r, "topic": settings.dlq_topic if r["topic"] == names.DEFAULT_DLQ_TOPIC else r["topic"]}
            for r in predicted
        ]
        outcome.expected = expected
        raw = read_outputs(settings, worker, len(expected), read_timeout)
        found = [
            {
                **r,
                "topic": r["topic"]
                if r["topic"] == settings.dlq_topic
                else r["topic"][len(settings.topic_prefix) :],
            }
            for r in raw
        ]
        outcome.found = found
        with (workdir / "outputs.jsonl").open("w", encoding="utf-8") as out:
            for record in found:
                out.write(json.dumps(record, default=str) + "\n")
        compare(outcome, expected, found, settings.dlq_topic)
    finally:
        code = worker.stop()
        echo(f"worker stopped (exit {code}); log {worker.log_path}")
    outcome.elapsed = time.monotonic() - started
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/oms-real-producers"))
    parser.add_argument("--scenario", action="append", choices=list(STORIES), help="repeatable; default all")
    parser.add_argument(
        "--variant",
        action="append",
        choices=VARIANTS + CONTROLS,
        help="repeatable; default all but the m* controls (keys and murmur2 on every topic)",
    )
    parser.add_argument("--spread", type=float, default=3.0, help="seconds over which *b spreads a scenario")
    parser.add_argument("--delay", type=float, default=0.4, help="seconds *c writes a shipment late")
    parser.add_argument("--read-timeout", type=float, default=60.0, help="seconds to wait for the outputs")
    parser.add_argument("--store", choices=["rocksdb://", "memory://"], default="rocksdb://")
    args = parser.parse_args(argv)
    with LocalBroker(log_dir=args.workdir) as broker:
        outcome = run_live(
            broker.bootstrap,
            args.workdir,
            args.variant or VARIANTS,
            args.scenario,
            args.spread,
            args.delay,
            args.read_timeout,
            args.store,
        )
    print(outcome.report())
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
