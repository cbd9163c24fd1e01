"""No names, emails, phones or addresses in any log line, offline and live (DEBUG level)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.live import isolated
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, through_kafka

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"
PERSONAL = ("first_name", "last_name", "email", "phone", "address1", "address2", "city", "zip")


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def personal_data() -> set[str]:
    """Every personal value in the example log (names, emails, phones, street, city, zip)."""
    found = set()
    for line in LOG.read_text().splitlines():
        value = json.loads(line)["value"]
        for key, item in _walk(value):
            if key in PERSONAL and isinstance(item, str) and len(item) >= 3:
                found.add(item)
    return found


def leaks(text: str) -> list[str]:
    return sorted(value for value in personal_data() if value in text)


def test_the_example_log_carries_personal_data() -> None:
    assert {"Veronica", "Costello", "you@youremail.com", "(555) 229-3326", "6146 Honey Bluff Parkway"} <= (
        personal_data()
    )


def test_replay_logs_at_debug_carry_no_personal_data() -> None:
    cli = str(Path(sys.executable).parent / "oms-postsales")
    done = subprocess.run(
        [cli, "replay", str(LOG), "--rules", str(RULES), "--log-level", "DEBUG"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "record.dead_letter" in done.stderr  # the logs are there …
    assert leaks(done.stderr) == []  # … without personal data
    assert leaks(done.stdout) != []  # the records themselves do carry it (they are the orders)


@pytest.mark.integration
def test_live_worker_logs_at_debug_carry_no_personal_data(broker: LocalBroker, tmp_path: Path) -> None:
    env, settings = isolated(broker.bootstrap, tmp_path, RULES, "p", OMS_LOG_LEVEL="DEBUG")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        found, expected = through_kafka(settings, worker, LOG, RULES)
        assert len(found.records) == len(expected)
    finally:
        assert worker.stop() == 0
    text = (tmp_path / "worker.log").read_text(errors="replace")
    assert '"event": "record.handled"' in text and len(text.splitlines()) > 50
    assert leaks(text) == []
