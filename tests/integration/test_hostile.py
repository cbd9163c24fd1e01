"""Hostile input live: generated records of every kind the code handles, mixed with the example
traffic, through the worker; each meets the fate its kind has in testkit/hostile.py's `KINDS`, every
output equals replay's and the worker stays ready. Kind by kind offline: tests/e2e/test_hostile_offline.py.

The live count is reduced here (HOSTILE_BAD, default 100); the full run, 10,000 generated records
through a live worker on its own broker: `.venv/bin/python bench/hostile.py --bad 10000 --live DIR`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from domain import names
from testkit.hostile import LIVE_LIMIT, READY, fate_mismatches, hostile_log, labels, through_worker
from testkit.live import normalised
from workers.local.broker import LocalBroker


@pytest.mark.slow
def test_hostile_records_through_the_worker_meet_their_fate_and_equal_replay(
    broker: LocalBroker, tmp_path: Path
) -> None:
    bad = int(os.environ.get("HOSTILE_BAD", "100"))
    records = hostile_log(bad, seed=11, oversize=LIVE_LIMIT + 1)
    run = through_worker(broker, records, tmp_path, timeout=120)
    found, expected, settings = run.found.records, run.expected, run.settings
    assert run.ready and run.handled == len(records) and run.exit_code == 0
    error_topic = settings.topic_for(names.ERROR_NOTIFY)
    assert fate_mismatches(records, found, settings.dlq_topic, error_topic, settled=False) == []
    assert len(found) == len(expected)
    assert normalised(found, settings.dlq_topic) == normalised(expected, settings.dlq_topic)
    # The mix holds every kind today's code handles, valid ones included.
    assert set(labels(records).values()) == set(READY)
