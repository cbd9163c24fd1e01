"""Hostile input: bad records of every kind, interleaved with the example log, as a replay JSONL file.

    .venv/bin/python bench/hostile.py --bad 10000 --out /tmp/hostile.jsonl [--seed 7]
    .venv/bin/python bench/hostile.py --bad 10000 --live /tmp/hostile-live   # through a live worker

Kinds: random bytes, invalid UTF-8, truncated JSON, deep nesting, oversized payloads, JSON that is not
an object, unknown message names, schema-aware mutations of the valid messages (required member
removed or nulled, wrong type, non-numeric or negative amount, absurd quantity, huge string, unknown
enum value) and well-formed messages the rules must refuse (unknown line or order, over-refund).
The live test and `replay` take the same file; their outputs must be equal.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from domain import names  # noqa: E402
from workers.broker import LocalBroker  # noqa: E402
from workers.dev import Collected, WorkerProcess, isolated, keyed, normalised, through_kafka  # noqa: E402
from workers.logging import configure  # noqa: E402
from workers.pipeline import Pipeline, partition_for  # noqa: E402
from workers.replay import read_records  # noqa: E402
from workers.rules_file import load_rules  # noqa: E402
from workers.settings import Settings  # noqa: E402

LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
# Below the client's 1 MiB request limit, so that oversized records can be published at all.
LIVE_LIMIT = 65_536
Record = dict[str, Any]


def _valid(log: list[Record]) -> list[Record]:
    return [r for r in log if isinstance(r["value"], dict) and "jsonrpc" in r["value"]]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(rng: random.Random, params: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(params)
    path = rng.choice(_paths(document))
    parent: Any = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    choice = rng.randrange(8)
    if choice == 0 and isinstance(parent, dict):
        del parent[last]
    else:
        parent[last] = [None, 12.5, "not-a-number", -999999, 10**12, "x" * 5000, {"nested": []}, True][choice]
    return document


def _raw(rng: random.Random, oversize: int) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return "".join(
            chr(rng.randrange(0xDC80, 0xDD00)) for _ in range(rng.randrange(1, 64))
        )  # bytes not UTF-8
    if kind == 1:
        return '{"order": {"id": "' + "x" * rng.randrange(0, 40)  # truncated
    if kind == 2:
        depth = rng.randrange(1200, 5000)
        return "[" * depth + "]" * depth
    if kind == 3:
        return json.dumps({"padding": "y" * (oversize + rng.randrange(10))})
    if kind == 4:
        return json.dumps(rng.choice([[1, 2], "text", 42, None, True]))
    return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 200)))


def bad_records(rng: random.Random, valid: list[Record], count: int, oversize: int) -> list[Record]:
    makers: list[Callable[[], Record]] = []

    def raw() -> Record:
        return {"topic": rng.choice(valid)["topic"], "value": _raw(rng, oversize)}

    def unknown_name() -> Record:
        source = rng.choice(valid)
        envelope = {**source["value"], "id": f"h-{rng.random()}", "method": "magento.postsales.teleport"}
        return {"topic": source["topic"], "value": envelope}

    def mutated() -> Record:
        source = rng.choice(valid)
        envelope = {
            **source["value"],
            "id": f"h-{rng.random()}",
            "params": _mutate(rng, source["value"]["params"]),
        }
        return {"topic": source["topic"], "value": envelope}

    def refused() -> Record:
        source = rng.choice([r for r in valid if "appeasement" in r["value"]["params"]])
        params = copy.deepcopy(source["value"]["params"])
        params["appeasement"]["lines"][0]["line_number"] = rng.choice([77, 1])
        params["appeasement"]["lines"][0]["amount"] = rng.choice(["99999.00", "0.01"])
        params["appeasement"]["order_id"] = rng.choice(["1234", "nope-" + str(rng.randrange(100))])
        return {
            "topic": source["topic"],
            "value": {**source["value"], "id": f"h-{rng.random()}", "params": params},
        }

    makers = [raw, unknown_name, mutated, mutated, mutated, refused]
    return [rng.choice(makers)() for _ in range(count)]


def hostile_log(count: int, seed: int, oversize: int = 1_048_577) -> list[Record]:
    """`oversize`: the size of the payloads meant to exceed the worker's record limit."""
    rng = random.Random(seed)
    log = [json.loads(line) for line in LOG.read_text().splitlines()]
    bad = bad_records(rng, _valid(log), count, oversize)
    mixed: list[Record] = []
    spacing = max(1, len(bad) // (len(log) + 1))
    for index, record in enumerate(log):
        mixed.extend(bad[index * spacing : (index + 1) * spacing])
        mixed.append(record)
    mixed.extend(bad[len(log) * spacing :])
    for offset, record in enumerate(mixed):
        record["timestamp"] = 1_793_523_600_000 + offset * 1000
    return mixed


def write_log(records: list[Record], path: Path) -> None:
    with path.open("w", encoding="utf-8", errors="surrogateescape") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)


def barriers(log: Path, rules: Path | None, partitions: int, max_record_bytes: int) -> list[bool]:
    """For each record of the log, whether it must wait until everything before it was handled.

    Kafka keeps order per partition and topic only. A record that replay dead-letters touches no state,
    so its place does not matter; a record that touches state must not overtake, or be overtaken by,
    another pending one of its partition on another topic (credit notes are numbered per store and
    partition), nor any record whose stock movements could interleave with its own."""
    pipeline = Pipeline(load_rules(rules), max_record_bytes=max_record_bytes, partitions=partitions)
    with log.open(encoding="utf-8", errors="surrogateescape") as lines:
        records = keyed(list(read_records(lines, str(log))), pipeline)
    flags: list[bool] = []
    pending: list[tuple[int | None, str, bool]] = []  # touching state, published since the last barrier
    for record in records:
        processed = pipeline.process(record)
        pipeline.store(processed)
        if processed.status == "dead_letter":
            flags.append(False)
            continue
        where = partition_for(record.key, partitions) if record.key is not None else None
        moves = bool(processed.movements)
        clash = moves or any(
            other_moves or where is None or at is None or (at == where and topic != record.topic)
            for at, topic, other_moves in pending
        )
        flags.append(clash)
        pending = [*([] if clash else pending), (where, record.topic, moves)]
    return flags


@dataclass
class LiveRun:
    settings: Settings
    found: Collected
    expected: list[dict[str, Any]]
    waits: int
    ready: bool
    handled: int
    exit_code: int | None


def through_worker(broker: LocalBroker, records: list[Record], workdir: Path, timeout: float) -> LiveRun:
    """The records through a live worker on `broker`, published with the waits `barriers` asks for."""
    log = workdir / "hostile.jsonl"
    write_log(records, log)
    env, settings = isolated(broker.bootstrap, workdir, RULES, "h", OMS_MAX_RECORD_BYTES=str(LIVE_LIMIT))
    flags = barriers(log, RULES, settings.partitions, LIVE_LIMIT)
    worker = WorkerProcess(env, workdir / "worker.log").start()
    try:
        worker.wait_ready()
        found, expected = through_kafka(
            settings, worker, log, RULES, timeout=timeout, barrier=lambda n: flags[n - 1]
        )
        ready, handled = worker.get("/ready")[0] == 200, worker.handled()
    finally:
        code = worker.stop()
    return LiveRun(settings, found, expected, sum(flags), ready, handled, code)


def live(bad: int, seed: int, workdir: Path) -> int:
    """The hostile log through a live worker on a local broker; outputs compared with replay's."""
    workdir.mkdir(parents=True, exist_ok=True)
    configure("ERROR")  # the in-process replays stay quiet; the worker logs to its own file
    records = hostile_log(bad, seed, oversize=LIVE_LIMIT + 1)
    started = time.monotonic()
    with LocalBroker(log_dir=workdir) as broker:
        run = through_worker(broker, records, workdir, timeout=600)
    dlq, found = run.settings.dlq_topic, run.found.records
    dead = Counter(r["headers"]["dlq.error.class"] for r in found if r["topic"] == dlq)
    rejected = sum(1 for r in found if r["topic"] == run.settings.topic_for(names.ERROR_NOTIFY))
    same = normalised(found, dlq) == normalised(run.expected, dlq) and len(found) == len(run.expected)
    print(
        f"{len(records)} records ({bad} bad), {run.handled} handled, {run.waits} waits; "
        f"{len(found)} outputs of {len(run.expected)} expected, "
        f"{'equal to' if same else 'DIFFERENT from'} replay; {sum(dead.values())} dead letters "
        f"({', '.join(f'{k} {v}' for k, v in dead.most_common())}), {rejected} rejections; "
        f"worker ready at the end: {run.ready}, exit {run.exit_code}; {time.monotonic() - started:.0f}s"
    )
    return 0 if same and run.ready and run.exit_code == 0 and run.handled == len(records) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bad", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the log here (replay JSONL)")
    parser.add_argument("--live", type=Path, metavar="WORKDIR", help="run it through a live worker")
    args = parser.parse_args()
    if args.live is not None:
        return live(args.bad, args.seed, args.live)
    if args.out is None:
        parser.error("--out or --live is needed")
    records = hostile_log(args.bad, args.seed)
    write_log(records, args.out)
    print(f"{len(records)} records ({args.bad} bad) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
