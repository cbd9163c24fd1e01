"""Repro: with faust's RocksDB store, kill -9 leaves a table write in the local database that its
changelog never gets (docs/notes/rocksdb-crash-safety.md).

One faust app, one agent, one table of 1 partition. The agent handles records `m0`..`m4` as the worker
handles messages: a message whose id is already in the table is "applied" and writes nothing; any other
writes `table[id] = "applied"`. For `m3` the first worker kills itself with SIGKILL right after the
table write, before the batch ends (where the worker's batch would go on to its next step). Then:

1. the killed worker's folder, the changelog and the committed offset are read;
2. the same worker (same folder) is restarted: `m3` is redelivered;
3. a worker with an empty folder (the partition moved to another worker) restores the table from the
   changelog alone, and its table is read.

    python bench/spikes/rocksdb_kill9.py                      # faust's store (rocksdb://)
    python bench/spikes/rocksdb_kill9.py --store oms-rocksdb://   # workers/kafka/durable_tables.py

Not a test; it prints what each side holds. With faust's store the killed worker's folder has `m3`,
the changelog does not, the restarted worker finds `m3` applied and writes nothing, so the changelog
never gets it and the other worker's table lacks it: the message was applied once on one worker and
never on the other. With the durable store the folder holds only what the changelog holds, and the
redelivered `m3` is applied (once) on both.
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
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from workers.config.settings import Settings  # noqa: E402
from workers.kafka.topics import TopicSpec, create_topics  # noqa: E402
from workers.local.broker import LocalBroker  # noqa: E402
from workers.local.dev import terminate  # noqa: E402

APP_ID = "kill9"
TOPIC = "kill9.in"
CHANGELOG = f"{APP_ID}-applied-changelog"
MESSAGES = [f"m{n}" for n in range(5)]
DIE_AT = "m3"


# --------------------------------------------------------------------------- worker side


def worker(bootstrap: str, store: str, datadir: str, die: bool, done_file: str) -> None:
    import faust

    from workers.kafka import durable_tables

    durable_tables.register()
    app = faust.App(
        APP_ID,
        broker=f"kafka://{bootstrap}",
        store=store,
        datadir=datadir,
        Table=durable_tables.SettlingTable,
        web_enabled=False,
        topic_partitions=1,
        producer_max_batch_size=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.2,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )
    table = cast(
        durable_tables.SettlingTable, app.Table("applied", key_type=str, value_type=bytes, partitions=1)
    )
    topic = app.topic(TOPIC, key_type=None, value_type=None, key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def handle(stream: Any) -> None:
        async for value in stream:
            message = value.decode()
            if table.get(message) is None:
                table[message] = b"applied"
                if die and message == DIE_AT:
                    os.kill(os.getpid(), signal.SIGKILL)
                await table.settle()
            with open(done_file, "a") as out:
                out.write(message + "\n")

    async def recovered() -> None:
        if app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            with open(done_file, "a") as out:
                out.write("recovered\n")

    app.timer(0.5)(recovered)
    faust.Worker(app, loglevel="WARNING").execute_from_commandline()


# --------------------------------------------------------------------------- driver side


def start(
    bootstrap: str, store: str, datadir: Path, die: bool, done: Path, log: Path
) -> subprocess.Popen[bytes]:
    arguments = ", ".join(repr(a) for a in (bootstrap, store, str(datadir), die, str(done)))
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.spikes.rocksdb_kill9 import worker; "
        f"worker({arguments})"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=str(ROOT)
    )


def wait_done(done: Path, wanted: set[str], process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = set(done.read_text().split()) if done.exists() else set()
        if wanted <= seen or (process is not None and process.poll() is not None):
            return
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    terminate(process, 30)


def local_table(datadir: Path) -> dict[str, Any]:
    """The partition's RocksDB database: its keys and the offset faust resumes from."""
    import rocksdict

    paths = list(datadir.glob("**/applied-0.db"))
    if not paths:
        return {"keys": [], "offset": None}
    options = rocksdict.Options(raw_mode=True)
    db = rocksdict.Rdict(str(paths[0]), options=options, access_type=rocksdict.AccessType.read_only())
    try:
        raw = [cast(bytes, key) for key in db.keys()]  # noqa: SIM118 (an Rdict is not iterable)
        keys = sorted(json.loads(key) for key in raw if not key.startswith(b"__"))  # str keys are JSON
        offset = db.get(b"__faust\0offset__")
        return {"keys": keys, "offset": int(bytes(offset)) if offset is not None else None}
    finally:
        db.close()


async def changelog_and_commit(settings: Settings) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=APP_ID, **settings.kafka_client_kwargs())
    await consumer.start()
    try:
        part = TopicPartition(CHANGELOG, 0)
        consumer.assign([part])
        consumer.seek(part, 0)
        keys: list[str] = []
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=300)
            keys += [json.loads(r.key) for records in batch.values() for r in records if r.key]
        committed = await consumer.committed(TopicPartition(TOPIC, 0))
        return {"changelog": keys, "committed": committed}
    finally:
        await consumer.stop()


async def publish(settings: Settings) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**settings.kafka_client_kwargs())
    await producer.start()
    try:
        for message in MESSAGES:
            await producer.send_and_wait(TOPIC, message.encode())
    finally:
        await producer.stop()


def show(when: str, local: dict[str, Any], kafka: dict[str, Any] | None) -> None:
    line = f"  {when} folder {json.dumps(local)}"
    print(line + (f"; Kafka {json.dumps(kafka)}" if kafka is not None else ""))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", default="rocksdb://", choices=("rocksdb://", "oms-rocksdb://"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kill9-"))
    broker = LocalBroker(log_dir=work)
    broker.start()
    try:
        settings = Settings(bootstrap_servers=broker.bootstrap)
        asyncio.run(create_topics(settings, [TopicSpec(TOPIC, 1, 1)]))
        asyncio.run(publish(settings))
        first, other, done = work / "w1", work / "w2", work / "done.txt"
        w1 = start(broker.bootstrap, args.store, first, True, done, work / "w1.log")
        w1.wait(120)
        handled = [m for m in (done.read_text().split() if done.exists() else []) if m != "recovered"]
        print(
            f"store {args.store}; worker 1 handled {handled}, "
            f"then killed itself after writing {DIE_AT} (exit {w1.returncode})"
        )
        show("after the kill:   ", local_table(first), asyncio.run(changelog_and_commit(settings)))
        done.unlink(missing_ok=True)
        again = start(broker.bootstrap, args.store, first, False, done, work / "w1.log")
        wait_done(done, {DIE_AT, *MESSAGES[MESSAGES.index(DIE_AT) + 1 :]}, again, 120)
        time.sleep(1.0)  # a commit interval or more: the offsets of what it handled
        stop(again)
        show("same folder again:", local_table(first), asyncio.run(changelog_and_commit(settings)))
        moved = start(broker.bootstrap, args.store, other, False, done, work / "w2.log")
        done.unlink(missing_ok=True)
        wait_done(done, {"recovered"}, moved, 120)  # nothing left to handle: only the table's recovery
        stop(moved)
        show("other worker:     ", local_table(other), None)
    finally:
        broker.stop()
    print(f"(logs in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
