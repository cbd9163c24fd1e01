"""`replay` shows a counter on a terminal and nothing of it in pipes, files and CI."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
COMMAND = [sys.executable, "-m", "workers", "replay", str(LOG), "--rules", str(RULES), "-o", os.devnull]


def test_a_terminal_sees_the_counter() -> None:
    parent, child = pty.openpty()
    try:
        done = subprocess.run(COMMAND, stderr=child, stdout=subprocess.DEVNULL, timeout=120, check=False)
        os.close(child)
        shown = b""
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # the terminal's other end is closed: all was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(parent)
    assert done.returncode == 0
    records = sum(1 for line in LOG.read_text().splitlines() if line.strip())
    assert f"\rreplayed {records}".encode() in shown


def test_a_pipe_gets_only_the_summary() -> None:
    done = subprocess.run(COMMAND, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0
    assert "\r" not in done.stderr
    records = sum(1 for line in LOG.read_text().splitlines() if line.strip())
    assert done.stderr.splitlines()[-1].startswith(f"replayed {records} records")
