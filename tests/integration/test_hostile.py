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
from testkit.hostile import (
    LIVE_LIMIT,
    READY,
    fate_mismatches,
    hostile_log,
    labels,
    poison_log,
    through_worker,
)
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


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_the_poison_pill_through_the_worker_is_refused_and_ordinary_traffic_goes_on(
    broker: LocalBroker, tmp_path: Path, store: str
) -> None:
    """An order of 1,000 lines, its shipment and a 1,000-line return authorize stopped the worker (its
    changelog write was too large) at every restart. At the default OMS_MAX_RECORD_BYTES, on both
    stores, the return is refused ORDER_TOO_LARGE, the example log after it is handled as replay
    handles it, every record meets its fate, and the worker stays up and stops with 0."""
    records = poison_log()
    run = through_worker(broker, records, tmp_path, timeout=120, max_record_bytes=1_000_000, store=store)
    found, expected, settings = run.found.records, run.expected, run.settings
    assert run.ready and run.handled == len(records) and run.exit_code == 0
    error_topic = settings.topic_for(names.ERROR_NOTIFY)
    assert fate_mismatches(records, found, settings.dlq_topic, error_topic, settled=False) == []
    assert len(found) == len(expected)
    assert normalised(found, settings.dlq_topic) == normalised(expected, settings.dlq_topic)
    refused = [r["value"]["params"] for r in found if r["topic"] == error_topic]
    assert [p["code"] for p in refused if p["code"] == "ORDER_TOO_LARGE"] == ["ORDER_TOO_LARGE"]
