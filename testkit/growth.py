"""Growth of state over a history of 1x, 3x and 10x the retention, through `replay` and the live worker.

    .venv/bin/python bench/growth.py                                   # retain_days 10, 40 orders a day
    .venv/bin/python bench/growth.py --multiples 1,3,10 --orders-per-day 40 --retain-days 10 --no-live

A history is generated in message time (compressed: days of message time go by in seconds): each day
`--orders-per-day` orders of one to three lines; most ship within two days, a third of the shipped ones
are returned and received a few days later, some get an upstream refund, some are cancelled before
shipping. With `--retain-days R`, a history of N x R days is run through:

- `replay --state`: orders in state at the end, the state folder's bytes, the child's peak RSS, seconds;
- the live worker (`--store`, RocksDB tables by default; one process, the local broker), the log
  published unkeyed as fast as the producer goes: orders in state (the orders changelog, last record
  per key), the local data folder's bytes, the worker's peak RSS (VmHWM), and the changelogs' live set
  after compaction, computed here since the local broker does not compact: the last record per key of
  every table's changelog, tombstones dropped (as Kafka's cleaner does once `delete.retention.ms`
  passed); then the seconds to
  `/ready` of a fresh worker (empty data folder, a consumer group of its own) whose changelogs hold only
  that live set, i.e. a restore from a compacted copy.

`--unbounded` also runs every history with `retain_days = 3650`, longer than any of them: what growth
looks like without retention.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from domain import names
from testkit.live import isolated
from tests.unit.harness import line, order
from workers.config.settings import Settings
from workers.kafka.topics import TABLES, changelog_topic
from workers.local.broker import LocalBroker, free_port
from workers.local.dev import WorkerProcess
from workers.ops.reading import read_topic
from workers.replay.disk_stores import DiskStores

ROOT = Path(__file__).resolve().parents[1]

START = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
CHANNEL = "GROW"
Line = tuple[str, int, str]


def rules_toml(retain_days: int) -> str:
    return f"""\
[defaults]
refund_on = "approval"
auto_approve_return = true
shipping_refund_rule = "onLast"
default_source = "WH"
retain_days = {retain_days}
"""


def history(days: int, per_day: int, seed: int) -> list[tuple[str, dict[str, Any], datetime]]:
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any], datetime]] = []

    def add(name: str, params: dict[str, Any], message_id: str, moment: datetime) -> None:
        envelope = {"jsonrpc": "2.0", "id": message_id, "method": name, "params": params}
        out.append((name, envelope, moment))

    for day in range(days):
        for n in range(per_day):
            order_id = f"G{day:04d}-{n:03d}"
            at = START + timedelta(days=day, minutes=rng.randrange(600))
            lines = [
                (f"SKU-{rng.randrange(40):02d}", rng.randint(1, 2), str(rng.randrange(10, 200)))
                for _ in range(rng.randint(1, 3))
            ]
            params = order(
                order_id,
                [line(n, sku, net, qty=qty) for n, (sku, qty, net) in enumerate(lines, start=1)],
                store=CHANNEL,
                origin_date=at.isoformat().replace("+00:00", "Z"),
            )
            add(names.ORDER_CREATE, params, f"{order_id}-c", at)
            fate = rng.random()
            if fate < 0.05:
                add(
                    names.ORDER_CANCEL,
                    {"sales_channel_id": CHANNEL, "order_id": order_id},
                    f"{order_id}-x",
                    at + timedelta(hours=2),
                )
                continue
            shipped = at + timedelta(hours=rng.randrange(1, 48))
            items = [
                {"order_line_id": f"L{i}", "order_line_number": i, "quantity": q}
                for i, (_, q, _) in enumerate(lines, start=1)
            ]
            shipment = {
                "shipment": {
                    "store_id": CHANNEL,
                    "order_id": order_id,
                    "source_id": "WH",
                    "method": "std",
                    "packages": [],
                    "items": items,
                }
            }
            add(names.SHIPMENT_DONE, shipment, f"{order_id}-s", shipped)
            if fate < 0.35:
                asked = shipped + timedelta(days=rng.randint(1, 4))
                ret: dict[str, Any] = {
                    "sales_channel_id": CHANNEL,
                    "order_id": order_id,
                    "source_id": "WH",
                    "user": "u",
                    "rma": f"RMA-{order_id}",
                    "lines": [
                        {
                            "id": "L1",
                            "line_number": 1,
                            "sku": lines[0][0],
                            "reason": "R",
                            "reason_description": "d",
                        }
                    ],
                }
                add(names.RETURN_AUTHORIZE, {"return": ret}, f"{order_id}-r", asked)
                received = {**ret, "lines": [{**ret["lines"][0], "condition": "GOOD"}]}
                add(
                    names.RETURN_RECEIVED,
                    {"return": received},
                    f"{order_id}-v",
                    asked + timedelta(days=rng.randint(1, 3)),
                )
            elif fate < 0.45:
                refund = {
                    "refund": {
                        "client": "pos",
                        "order_id": order_id,
                        "store_id": CHANNEL,
                        "status": {"date": (shipped + timedelta(days=1)).isoformat()},
                        "lines": [
                            {
                                "order_line": "1",
                                "reason_description": "r",
                                "payments": [{"ref": "PAY1", "details": {"cost_gross": "1.00"}}],
                            }
                        ],
                    }
                }
                add(names.REFUND_CREATE, refund, f"{order_id}-u", shipped + timedelta(days=1))
    return sorted(out, key=lambda item: item[2])


def write_log(path: Path, messages: list[tuple[str, dict[str, Any], datetime]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for name, envelope, moment in messages:
            out.write(
                json.dumps({"topic": name, "timestamp": int(moment.timestamp() * 1000), "value": envelope})
                + "\n"
            )


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@dataclass
class Replayed:
    orders: int
    state_bytes: int
    peak_mb: float
    seconds: float


def _peak_while_running(process: subprocess.Popen[bytes]) -> float:
    """The child's own peak RSS in MB (VmHWM, read until it exits). Not rusage's ru_maxrss: that counts
    the parent's pages the child had between fork and exec, so it would follow this process's size."""
    peak = 0.0
    while process.poll() is None:
        try:
            # Until exec, the child is a copy of this process: its pages are not the replay's.
            if b"replay" in Path(f"/proc/{process.pid}/cmdline").read_bytes():
                peak = max(peak, _vm_hwm_mb(process.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.02)
    return peak


def run_replay(log: Path, rules: Path, state: Path, partitions: int) -> Replayed:
    command = [
        sys.executable,
        "-m",
        "workers",
        "replay",
        str(log),
        "--rules",
        str(rules),
        "--state",
        str(state),
        "--partitions",
        str(partitions),
        "-o",
        os.devnull,
    ]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    peak = _peak_while_running(process)
    status = process.wait()
    seconds = time.monotonic() - started
    if status != 0:
        raise RuntimeError(f"replay failed ({status})")
    stores = DiskStores(state)
    try:
        orders = sum(1 for _ in stores.orders)
    finally:
        stores.close()
    return Replayed(orders, folder_bytes(state), peak, seconds)


@dataclass
class Live:
    orders: int
    data_bytes: int
    peak_mb: float
    live_records: int
    live_bytes: int
    restore_seconds: float


def _vm_hwm_mb(pid: int) -> float:
    for text in Path(f"/proc/{pid}/status").read_text().splitlines():
        if text.startswith("VmHWM:"):
            return int(text.split()[1]) / 1024
    return 0.0


async def _publish(settings: Settings, messages: list[tuple[str, dict[str, Any], datetime]]) -> None:
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.kafka_client_kwargs())
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.topic_for(name),
                json.dumps(envelope).encode(),
                timestamp_ms=int(moment.timestamp() * 1000),
            )
            for name, envelope, moment in messages
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _live_set(settings: Settings) -> dict[str, dict[tuple[int, bytes], bytes]]:
    """Per table, what compaction keeps: the last value per (partition, key), tombstones dropped."""
    kept: dict[str, dict[tuple[int, bytes], bytes]] = {}
    for table in TABLES:
        last: dict[tuple[int, bytes], bytes | None] = {}
        for record in await read_topic(settings, changelog_topic(settings, table), idle_seconds=2.0):
            last[(record.partition, record.key or b"")] = record.value
        kept[table] = {key: value for key, value in last.items() if value is not None}
    return kept


async def _write_changelogs(settings: Settings, kept: dict[str, dict[tuple[int, bytes], bytes]]) -> None:
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.kafka_client_kwargs())
    await producer.start()
    try:
        sent = [
            await producer.send(changelog_topic(settings, table), value, key=key, partition=partition)
            for table, records in kept.items()
            for (partition, key), value in records.items()
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def run_live(
    bootstrap: str,
    workdir: Path,
    rules: Path,
    messages: list[tuple[str, dict[str, Any], datetime]],
    store: str = "rocksdb://",
) -> Live:
    (workdir / "fresh").mkdir(parents=True, exist_ok=True)
    env, settings = isolated(bootstrap, workdir, rules, "g", OMS_STORE=store)
    worker = WorkerProcess(env, workdir / "worker.log").start()
    try:
        worker.wait_ready()
        before = worker.handled()
        asyncio.run(_publish(settings, messages))
        worker.wait_handled(before + len(messages), timeout=1800.0)
        assert worker.process is not None
        peak = _vm_hwm_mb(worker.process.pid)
        kept = asyncio.run(_live_set(settings))
    finally:
        worker.stop()
    orders = len(kept["orders"])
    data = folder_bytes(Path(env["OMS_DATA_DIR"]))
    # A fresh worker of its own group whose changelogs hold only the compacted live set.
    fresh_env, fresh = isolated(bootstrap, workdir / "fresh", rules, "h", OMS_STORE=store)
    asyncio.run(_write_changelogs(fresh, kept))
    port = free_port()
    fresh_env = {**fresh_env, "OMS_WEB_PORT": str(port), "OMS_DATA_DIR": str(workdir / "fresh-data")}
    started = time.monotonic()
    again = WorkerProcess(fresh_env, workdir / "fresh-worker.log").start()
    try:
        again.wait_ready(timeout=1800.0)
        restore = time.monotonic() - started
    finally:
        again.stop()
    records = sum(len(r) for r in kept.values())
    size = sum(len(k[1]) + len(v) for r in kept.values() for k, v in r.items())
    return Live(orders, data, peak, records, size, restore)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--retain-days", type=int, default=10)
    parser.add_argument("--orders-per-day", type=int, default=40)
    parser.add_argument("--multiples", default="1,3,10", help="history lengths, in retention periods")
    parser.add_argument("--partitions", type=int, default=3, help="replay numbers as on this many partitions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-live", action="store_true", help="replay only")
    parser.add_argument("--store", choices=("rocksdb://", "memory://"), default="rocksdb://")
    parser.add_argument("--unbounded", action="store_true", help="also without retention (3650 days)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="oms-growth-"))
    workdir.mkdir(parents=True, exist_ok=True)
    variants = {"retention": workdir / "rules.toml"}
    variants["retention"].write_text(rules_toml(args.retain_days))
    if args.unbounded:
        variants["unbounded"] = workdir / "rules-unbounded.toml"
        variants["unbounded"].write_text(rules_toml(3650))
    multiples = [int(m) for m in args.multiples.split(",")]
    print(
        f"retain_days {args.retain_days}, {args.orders_per_day} orders a day, worker {args.store}; "
        f"workdir {workdir}"
    )
    header = "rules | multiple | days | messages | replay: orders, state KB, peak MB, s"
    if not args.no_live:
        header += " | worker: orders, data KB, peak MB, live-set records, live-set KB, restore s"
    print(header)
    broker = None if args.no_live else LocalBroker(log_dir=workdir)
    try:
        if broker is not None:
            broker.start()
        for multiple in multiples:
            days = multiple * args.retain_days
            messages = history(days, args.orders_per_day, args.seed)
            log = workdir / f"history-{multiple}x.jsonl"
            write_log(log, messages)
            for variant, rules in variants.items():
                tag = f"{variant}-{multiple}x"
                r = run_replay(log, rules, workdir / f"state-{tag}", args.partitions)
                row = (
                    f"{variant} | {multiple}x | {days} | {len(messages)} | {r.orders}, "
                    f"{r.state_bytes // 1024}, {r.peak_mb:.0f}, {r.seconds:.1f}"
                )
                if broker is not None:
                    live = run_live(broker.bootstrap, workdir / f"live-{tag}", rules, messages, args.store)
                    row += (
                        f" | {live.orders}, {live.data_bytes // 1024}, {live.peak_mb:.0f}, "
                        f"{live.live_records}, {live.live_bytes // 1024}, {live.restore_seconds:.1f}"
                    )
                print(row, flush=True)
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
