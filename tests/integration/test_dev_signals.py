"""`oms-postsales dev` stops what it started: on SIGTERM, SIGHUP and Ctrl-C (SIGINT) the broker and
the worker are gone and the temporary folder is removed."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workers.local.broker import pid_exists

CLI = str(Path(sys.executable).parent / "oms-postsales")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 45.0


def wait_gone(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not pid_exists(pid):
            return True
        time.sleep(0.05)
    return not pid_exists(pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_dev_stops_broker_and_worker_and_removes_its_folder(sig: signal.Signals, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    env.update({"PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)})  # the temporary folder lands here
    process = subprocess.Popen(
        [CLI, "dev"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not any(line.startswith("running;") for line in seen):
            assert process.poll() is None, "".join(seen)
            assert time.monotonic() < deadline, "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        text = "".join(seen)
        broker_pid = int(re.search(r"Tansu, pid (\d+)", text).group(1))  # type: ignore[union-attr]
        worker_pid = int(re.search(r"worker  pid (\d+)", text).group(1))  # type: ignore[union-attr]
        folder = Path(re.search(r"log (\S+)/worker\.log", text).group(1))  # type: ignore[union-attr]
        assert folder.parent == tmp_path and folder.is_dir()
        assert pid_exists(broker_pid) and pid_exists(worker_pid)

        process.send_signal(sig)
        code = process.wait(STOP_TIMEOUT)
        reader.join(5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(seen) + "".join(iter_queue(lines))
    assert code == 128 + sig, output
    stop_deadline = time.monotonic() + 10
    assert wait_gone(broker_pid, stop_deadline), f"broker pid {broker_pid} survived {sig.name}"
    assert wait_gone(worker_pid, stop_deadline), f"worker pid {worker_pid} survived {sig.name}"
    assert not folder.exists(), output
    assert f"stopped by {sig.name}" in output


def iter_queue(lines: queue.Queue[str]) -> list[str]:
    out = []
    while not lines.empty():
        out.append(lines.get_nowait())
    return out
