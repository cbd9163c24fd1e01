"""No names, emails, phones or addresses in the live worker's log lines at DEBUG level."""

from __future__ import annotations

from pathlib import Path

from testkit.live import isolated
from testkit.pii import LOG, RULES, leaks
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, through_kafka


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
