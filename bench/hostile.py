"""Hostile input: bad records of every kind, interleaved with the example log, as a replay JSONL file.

    .venv/bin/python bench/hostile.py --bad 10000 --out /tmp/hostile.jsonl [--seed 7]

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "examples" / "message-log.jsonl"
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bad", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    records = hostile_log(args.bad, args.seed)
    with args.out.open("w", encoding="utf-8", errors="surrogateescape") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    print(f"{len(records)} records ({args.bad} bad) -> {args.out}")


if __name__ == "__main__":
    main()
