"""A broker stall (SIGSTOP) in the middle of the traffic: the worker neither crashes nor dead-letters
anything for the outage, and once the broker is back its outputs are exactly replay's.

While paused, /ready must answer 503 (broker unreachable) and /health 200; after the resume the worker
is ready again and moving. STALL_SECONDS (default 10 here) sets the pause; the issue's 30 s run:
`STALL_SECONDS=30 pytest -s tests/integration/test_stall.py` (prints the figures)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from domain import names
from testkit.live import isolated, normalised
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, through_kafka

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
from testkit.reading import read_counts  # noqa: E402


@pytest.mark.slow
def test_worker_rides_out_a_broker_stall(broker: LocalBroker, tmp_path: Path) -> None:
    stall = float(os.environ.get("STALL_SECONDS", "10"))
    env, settings = isolated(broker.bootstrap, tmp_path, RULES, "x")
    outputs = [settings.topic_for(n) for n in names.OUTBOUND] + [settings.dlq_topic]
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    seen: dict[str, Any] = {"ready": [], "health": []}

    def pause_mid_traffic() -> None:
        deadline = time.monotonic() + 120
        while worker.handled() < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["handled_before"] = worker.handled()
        broker.pause()
        seen["from"] = time.monotonic()
        try:
            while time.monotonic() - seen["from"] < stall:
                status, body = worker.get("/ready")
                seen["ready"].append((time.monotonic() - seen["from"], status, body))
                seen["health"].append(worker.get("/health")[0])
                time.sleep(0.5)
        finally:
            broker.resume()
            seen["to"] = time.monotonic()
        while time.monotonic() - seen["to"] < 120:
            if "ready_again" not in seen and worker.get("/ready")[0] == 200:
                seen["ready_again"] = time.monotonic() - seen["to"]
            if "moving_again" not in seen and worker.handled() > seen["handled_before"]:
                seen["moving_again"] = time.monotonic() - seen["to"]
            if "ready_again" in seen and "moving_again" in seen:
                return
            time.sleep(0.1)

    try:
        worker.wait_ready()
        pauser = threading.Thread(target=pause_mid_traffic, daemon=True)
        pauser.start()
        _, expected = through_kafka(settings, worker, LOG, RULES, timeout=120, step_timeout=stall + 120)
        # Every topic read until it holds what replay predicts, then to the end offsets; loud if not.
        want = Counter(r["topic"] for r in expected)
        found = asyncio.run(read_counts(settings, outputs, want, timeout=120))
        pauser.join(timeout=stall + 130)
        assert seen["to"] - seen["from"] >= stall
        assert worker.process is not None and worker.process.poll() is None  # never crashed
    finally:
        if broker.paused:  # never leave the shared broker stopped
            broker.resume()
        assert worker.stop() == 0
    assert normalised(found, settings.dlq_topic) == normalised(expected, settings.dlq_topic)
    assert all(
        r["headers"]["dlq.error.class"] != "InternalError" for r in found if r["topic"] == settings.dlq_topic
    )
    # Not ready while the broker does not answer (the probe times out within a few seconds), alive
    # all along (a liveness probe must not restart it), ready again once the broker is back.
    unready = [(at, body) for at, status, body in seen["ready"] if status == 503]
    assert unready and not unready[-1][1]["broker_reachable"], seen["ready"]
    assert set(seen["health"]) == {200}
    assert "ready_again" in seen and "moving_again" in seen, seen
    print(
        f"stall {stall:.0f}s: not ready from {unready[0][0]:.1f}s into the pause "
        f"({len(unready)} of {len(seen['ready'])} polls 503); after resume: ready in "
        f"{seen['ready_again']:.1f}s, next record handled in {seen['moving_again']:.1f}s"
    )
