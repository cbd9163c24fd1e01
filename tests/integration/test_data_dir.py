"""One data folder, two consumer groups (a renamed group, or a second deployment on the same volume):
the second worker starts with tables of its own instead of reading the first one's RocksDB files
against its own, empty changelogs (faust stops recovery on that)."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.live import isolated, normalised
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, through_kafka

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"


@pytest.mark.slow
def test_a_second_consumer_group_on_the_same_data_dir_starts_and_applies(
    broker: LocalBroker, tmp_path: Path
) -> None:
    for letter in "ab":
        env, settings = isolated(broker.bootstrap, tmp_path, RULES, letter, OMS_STORE="rocksdb://")
        worker = WorkerProcess(env, tmp_path / f"worker-{letter}.log").start()
        try:
            worker.wait_ready()
            collected, expected = through_kafka(settings, worker, LOG, RULES)
        finally:
            worker.stop()
        assert expected
        assert normalised(collected.records, settings.dlq_topic) == normalised(expected, settings.dlq_topic)
    groups = sorted(p.name[:5] for p in (tmp_path / "data").iterdir() if p.is_dir())
    assert groups == ["oms-a", "oms-b"]
