"""A broker stall (SIGSTOP) in the middle of the traffic: the worker neither crashes nor dead-letters
anything for the outage, and once the broker is back its outputs are exactly replay's.

STALL_SECONDS (default 10 here) sets the pause; the issue's 30 s run: STALL_SECONDS=30."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.integration.test_worker import normalised
from workers.broker import LocalBroker
from workers.dev import WorkerProcess, isolated, through_kafka

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"

pytestmark = pytest.mark.integration


def test_worker_rides_out_a_broker_stall(broker: LocalBroker, tmp_path: Path) -> None:
    stall = float(os.environ.get("STALL_SECONDS", "10"))
    env, settings = isolated(broker.bootstrap, tmp_path, RULES, "x")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    stalled: dict[str, float] = {}

    def pause_mid_traffic() -> None:
        deadline = time.monotonic() + 120
        while worker.handled() < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        broker.pause()
        stalled["from"] = time.monotonic()
        try:
            time.sleep(stall)
        finally:
            broker.resume()
            stalled["to"] = time.monotonic()

    try:
        worker.wait_ready()
        pauser = threading.Thread(target=pause_mid_traffic, daemon=True)
        pauser.start()
        found, expected = through_kafka(settings, worker, LOG, RULES, timeout=120, step_timeout=stall + 120)
        pauser.join(timeout=stall + 130)
        assert stalled["to"] - stalled["from"] >= stall
        assert worker.process is not None and worker.process.poll() is None  # never crashed
    finally:
        if broker.paused:  # never leave the shared broker stopped
            broker.resume()
        assert worker.stop() == 0
    assert normalised(found.records, settings.dlq_topic) == normalised(expected, settings.dlq_topic)
    assert all(
        r["headers"]["dlq.error.class"] != "InternalError"
        for r in found.records
        if r["topic"] == settings.dlq_topic
    )
