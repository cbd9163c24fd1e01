"""A worker whose broker is gone: SIGTERM ends it within OMS_SHUTDOWN_TIMEOUT_SECONDS (faust alone
waited for minutes), and the Kafka client's per-retry errors are logged once per interval. A worker
refused at start (unusable data folder) has created nothing on the broker."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path

from testkit.live import isolated
from workers.kafka.topics import catalogue, describe_partitions
from workers.local.broker import LocalBroker, free_port
from workers.local.dev import WorkerProcess, local_env, settings_from_env

SHUTDOWN_TIMEOUT = 5.0


def test_worker_stops_in_bounded_time_without_its_broker_and_logs_the_outage_sparingly(
    tmp_path: Path,
) -> None:
    broker = LocalBroker(tmp_path / "tansu").start()
    try:
        env, _settings = isolated(
            broker.bootstrap,
            tmp_path,
            None,
            "o",
            OMS_LOG_LEVEL="INFO",
            OMS_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT),
            OMS_LOG_REPEAT_INTERVAL_SECONDS="3600",
        )
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            worker.wait_ready()
            broker.stop()
            # The worker notices (its readiness probe fails) before it is asked to stop.
            deadline = time.monotonic() + 30
            while worker.get("/ready")[0] == 200:
                assert time.monotonic() < deadline, "still ready without a broker"
                time.sleep(0.1)
            assert worker.process is not None
            started = time.monotonic()
            worker.process.send_signal(signal.SIGTERM)
            code = worker.process.wait(SHUTDOWN_TIMEOUT + 20)
            elapsed = time.monotonic() - started
        finally:
            worker.stop()
    finally:
        broker.stop()
    assert elapsed < SHUTDOWN_TIMEOUT + 10, elapsed
    lines = [json.loads(line) for line in worker.log_path.read_text().splitlines() if line.startswith("{")]
    events = Counter(line["event"] for line in lines)
    # Either faust finished its stop on its own (0) or the watchdog ended it (1, and says so).
    assert code in (0, 1)
    assert (code == 1) == (events["shutdown.forced"] == 1)
    client_errors = Counter(
        (line["logger"], line["event"])
        for line in lines
        if line.get("logger", "").startswith("aiokafka") and line["level"] in ("warning", "error")
    )
    assert client_errors, "the outage left no trace in the log"
    # Per retry there would be hundreds of these; one template can still yield a few distinct texts.
    assert max(client_errors.values()) == 1, client_errors.most_common(3)
    assert sum(client_errors.values()) < 30, client_errors.most_common(10)


def test_a_refused_start_creates_no_topic(broker: LocalBroker, tmp_path: Path) -> None:
    env = local_env(broker.bootstrap, tmp_path, None, free_port())
    (tmp_path / "file").write_text("")
    env.update(
        {
            "OMS_TOPIC_PREFIX": "refused.",
            "OMS_CONSUMER_GROUP": "oms-refused",
            "OMS_STORE": "rocksdb://",
            "OMS_DATA_DIR": str(tmp_path / "file" / "data"),
        }
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    assert worker.process is not None
    code = worker.process.wait(60)
    assert code == 2
    assert "OMS_DATA_DIR" in worker.log_path.read_text()
    settings = settings_from_env(env)
    wanted = [spec.name for spec in catalogue(settings)]
    assert asyncio.run(describe_partitions(settings, wanted)) == {}
