"""How long a RocksDB worker takes to be ready again after kill -9, and after losing its folder.

    .venv/bin/python bench/restart_after_crash.py --orders 10000 100000
    .venv/bin/python bench/restart_after_crash.py --orders 10000 --tree ../baseline --tree .

Per tree (`--tree`: a checkout whose `workers` package the worker runs; default this one) and per size,
on a fresh local broker: one worker (`OMS_STORE=rocksdb://`) takes the chaos traffic's stock snapshots
and `--orders` order creates (each reserves stock: orders, stock and source tables and their changelogs
grow), until the group has committed them all. Then:

1. `kill -9`, and the same worker restarted on the same folder: seconds from its start to `/ready`
   (partitions assigned and table recovery done);
2. the folder deleted (a new node, a lost volume, or a folder the worker refused): the same time, now
   with every table restored from its changelog.

Prints a table per tree, and the folder's size. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testkit.chaos import Progress, publish_wave, wave_records  # noqa: E402
from testkit.chaos_traffic import RULES_TOML, Wave, chaos_waves  # noqa: E402
from testkit.live import isolated  # noqa: E402
from workers.config import logging as worker_logging  # noqa: E402
from workers.config.rules_file import load_rules  # noqa: E402
from workers.config.settings import Settings  # noqa: E402
from workers.engine.pipeline import Pipeline  # noqa: E402
from workers.local.broker import LocalBroker, free_port  # noqa: E402
from workers.local.dev import terminate  # noqa: E402


def start_worker(tree: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers", "worker"],
            cwd=str(tree),
            env={**os.environ, **env, "PYTHONPATH": str(tree)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("worker not ready")


async def publish_and_commit(settings: Settings, waves: list[Wave], now: datetime) -> None:
    pipeline = Pipeline(load_rules(settings.rules_file), max_record_bytes=settings.max_record_bytes)
    progress = Progress(settings)
    producer = AIOKafkaProducer(acks="all", enable_idempotence=False, **settings.kafka_client_kwargs())
    await progress.start()
    await producer.start()
    try:
        first = 0
        for wave in waves:
            records = wave_records(wave, settings, pipeline, now, first)
            first += len(records)
            await publish_wave(producer, records, progress.targets)
        while (await progress.done())[1] > 0:
            await asyncio.sleep(0.5)
    finally:
        await producer.stop()
        await progress.stop()


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def restart(tree: Path, env: dict[str, str], log: Path) -> tuple[float, subprocess.Popen[bytes]]:
    port = free_port()
    started = time.monotonic()
    process = start_worker(tree, {**env, "OMS_WEB_PORT": str(port)}, log)
    wait_ready(port, process)
    return time.monotonic() - started, process


def stop(process: subprocess.Popen[bytes]) -> None:
    terminate(process, 60)


def one(tree: Path, orders: int, workdir: Path) -> dict[str, float]:
    rules = workdir / "rules.toml"
    rules.write_text(RULES_TOML, encoding="utf-8")
    waves = [w for w in chaos_waves(orders * 3, seed=5) if w.name in ("stock", "create")]
    creates = sum(len(w.records) for w in waves if w.name == "create")
    broker = LocalBroker(log_dir=workdir)
    broker.start()
    try:
        env, settings = isolated(broker.bootstrap, workdir, rules, "r", OMS_STORE="rocksdb://")
        env["OMS_DATA_DIR"] = str(workdir / "data")
        log = workdir / "worker.log"
        _, process = restart(tree, env, log)
        started = time.monotonic()
        asyncio.run(publish_and_commit(settings, waves, datetime.now(UTC)))
        loaded = time.monotonic() - started
        process.send_signal(signal.SIGKILL)
        process.wait()
        size = folder_bytes(workdir / "data")
        after_kill, process = restart(tree, env, log)
        stop(process)
        shutil.rmtree(workdir / "data")
        after_loss, process = restart(tree, env, log)
        stop(process)
        return {
            "creates": creates,
            "load_s": loaded,
            "folder_mb": size / 1e6,
            "ready_after_kill_s": after_kill,
            "ready_after_loss_s": after_loss,
        }
    finally:
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, nargs="+", default=[10_000])
    parser.add_argument("--tree", type=Path, action="append", help="a checkout to run (repeatable)")
    args = parser.parse_args()
    worker_logging.configure("WARNING", sys.stderr)
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    print(
        "| tree | orders (creates) | load s | folder MB | ready after kill -9, s "
        "| ready after losing the folder, s |"
    )
    print("|---|---|---|---|---|---|")
    for orders in args.orders:
        for tree in trees:
            with tempfile.TemporaryDirectory(prefix="oms-restart-") as work:
                figures = one(tree, orders, Path(work))
            print(
                f"| {tree.name} | {figures['creates']:,.0f} | {figures['load_s']:.0f} "
                f"| {figures['folder_mb']:.1f} | {figures['ready_after_kill_s']:.1f} "
                f"| {figures['ready_after_loss_s']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
