"""The chaos run's quick mode, on each table store: two workers, SIGKILLed at random moments while a
generated post-sales log flows through the broker wave by wave; nothing lost, no effect doubled, credit
notes and final stock equal to replay's. The full run (10,000 messages, 20 kills) is `bench/chaos.py`
with its defaults (`--store rocksdb://` for the production store)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.local.broker import LocalBroker, pid_exists

ROOT = Path(__file__).resolve().parents[2]
from testkit.chaos import Options, run  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_kill_9_at_random_moments_loses_nothing_and_doubles_nothing(
    broker: LocalBroker, tmp_path: Path, store: str
) -> None:
    messages = int(os.environ.get("CHAOS_MESSAGES", "600"))
    kills = int(os.environ.get("CHAOS_KILLS", "3"))
    lines: list[str] = []
    verdict, done = run(
        Options(messages=messages, kills=kills, seed=7, workdir=tmp_path, store=store),
        broker=broker,
        echo=lines.append,
    )
    report = "\n".join(lines)
    assert done == kills, report
    assert verdict.ok, report
    assert lines[-1].startswith("lost=0 double_effects=0 "), report


# As soon as the workers are up, and in the middle of the traffic: there the signal lands while the
# event loop runs, where raised in a Kafka client's task it once ended that task instead of the run.
@pytest.mark.parametrize("after", ["workers ready", "  wave "])
def test_sigterm_stops_the_broker_and_workers_the_run_started(tmp_path: Path, after: str) -> None:
    """An operator who stops a long chaos run must not be left with its broker and workers."""
    command = [sys.executable, str(ROOT / "bench" / "chaos.py"), "--messages", "3000", "--kills", "0"]
    process = subprocess.Popen(
        [*command, "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        for line in process.stdout:
            seen.append(line)
            if line.startswith(after) or (after == "workers ready" and after in line):
                break
        text = "".join(seen)
        started = re.search(r"\(pid (\d+)\); \d+ workers ready on \S+ \(pids ([\d ]+)\)", text)
        assert started is not None, text
        pids = [int(started.group(1)), *map(int, started.group(2).split())]
        assert all(pid_exists(pid) for pid in pids)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, text + rest
    assert "stopped by SIGTERM" in rest
    deadline = time.monotonic() + 10
    while any(pid_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if pid_exists(pid)] == [], text + rest
