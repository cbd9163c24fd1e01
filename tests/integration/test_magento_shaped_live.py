"""The Magento-shaped order (offline payment, nulls, "", "1.0000", []) with its shipment and a blind
return, through a live worker on a real broker: applied, nothing dead-lettered, outputs equal replay's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domain import names
from testkit.live import isolated, normalised
from workers.config.settings import Settings
from workers.local.broker import LocalBroker
from workers.local.dev import WorkerProcess, through_kafka

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "magento-shaped.jsonl"
RULES = ROOT / "examples" / "rules.toml"


@pytest.fixture
def worker(broker: LocalBroker, tmp_path: Path) -> Iterator[tuple[WorkerProcess, Settings]]:
    env, settings = isolated(broker.bootstrap, tmp_path, RULES, "m", OMS_STORE="memory://")
    process = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        process.wait_ready()
        yield process, settings
    finally:
        process.stop()


def test_the_magento_shaped_log_is_applied_live_as_in_replay(worker: tuple[WorkerProcess, Settings]) -> None:
    process, settings = worker
    found, expected = through_kafka(settings, process, LOG, RULES)
    dlq = settings.dlq_topic
    assert not [r for r in found.records if r["topic"] == dlq]
    assert len(found.records) == len(expected) == 12
    assert normalised(found.records, dlq) == normalised(expected, dlq)
    notes = [
        r["value"]["params"]["refund"] for r in found.records if r["topic"].endswith(names.REFUND_UPDATED)
    ]
    assert [n["totals"]["cost_gross"] for n in notes] == ["59.50"]
