"""Hostile input through the live worker, interleaved with the example traffic: every record ends as
output equal to replay's (dead letters and rejections included) and the worker stays ready.

The count is reduced here (HOSTILE_BAD, default 100); the full run, 10,000 bad records through a live
worker on its own broker: `.venv/bin/python bench/hostile.py --bad 10000 --live /tmp/hostile-live`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from domain import names
from workers.broker import LocalBroker
from workers.dev import normalised

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from hostile import LIVE_LIMIT, hostile_log, through_worker  # noqa: E402

pytestmark = pytest.mark.integration


def test_hostile_records_through_the_worker_equal_replay(broker: LocalBroker, tmp_path: Path) -> None:
    bad = int(os.environ.get("HOSTILE_BAD", "100"))
    records = hostile_log(bad, seed=11, oversize=LIVE_LIMIT + 1)
    run = through_worker(broker, records, tmp_path, timeout=120)
    found, expected, settings = run.found, run.expected, run.settings
    assert run.ready and run.handled == len(records) and run.exit_code == 0
    assert len(found.records) == len(expected)
    assert normalised(found.records, settings.dlq_topic) == normalised(expected, settings.dlq_topic)
    undecodable = sum(
        1 for r in records if isinstance(r["value"], str) or r["value"].get("method", "").endswith("teleport")
    )
    refused = [
        r for r in found.records if r["topic"] in (settings.dlq_topic, settings.topic_for(names.ERROR_NOTIFY))
    ]
    assert len(refused) >= undecodable > 0
    classes = {r["headers"]["dlq.error.class"] for r in found.records if r["topic"] == settings.dlq_topic}
    assert {"InvalidUtf8", "TooDeep", "PayloadTooLarge", "SchemaValidation", "UnknownMessage"} <= classes
