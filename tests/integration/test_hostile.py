"""Hostile input: every generated record meets the fate its kind has in testkit/hostile.py's `KINDS`
(dead letter with its class, rejection with its code, held, or applied for shapes that are valid after
all), offline through replay kind by kind, and live through the worker mixed with the example traffic,
where every output must also equal replay's and the worker stays ready.

The live count is reduced here (HOSTILE_BAD, default 100); the full run, 10,000 generated records
through a live worker on its own broker: `.venv/bin/python bench/hostile.py --bad 10000 --live DIR`."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from domain import names
from testkit.live import normalised
from workers.config.logging import configure
from workers.config.rules_file import load_rules
from workers.local.broker import LocalBroker
from workers.replay.runner import replay

ROOT = Path(__file__).resolve().parents[2]
from testkit.hostile import (  # noqa: E402
    KINDS,
    LIVE_LIMIT,
    PENDING_REASON,
    READY,
    RULES,
    fate_mismatches,
    hostile_log,
    labels,
    observed,
    through_worker,
)

PER_KIND = 12


def _kind_param(kind: str) -> object:
    if KINDS[kind].pending:
        return pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason=PENDING_REASON))
    return kind


@pytest.mark.parametrize("kind", [_kind_param(kind) for kind in KINDS])
def test_each_kind_meets_its_fate_in_replay(kind: str) -> None:
    configure("ERROR")
    records = hostile_log(PER_KIND, seed=5, kinds=[kind])
    out = io.StringIO()
    replay(iter(json.dumps(r) for r in records), out, load_rules(RULES), partitions=4)
    outputs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert list(labels(records).values()) == [kind] * PER_KIND
    assert fate_mismatches(records, outputs, names.DEFAULT_DLQ_TOPIC, names.ERROR_NOTIFY, settled=True) == []
    # Not vacuous: every record of the kind left an output of its own (held ones: their rejection).
    assert len(observed(outputs, names.DEFAULT_DLQ_TOPIC, names.ERROR_NOTIFY)) == PER_KIND


def test_the_fate_check_sees_a_record_that_misses_its_fate() -> None:
    """A dead letter where the kind says applied, and a record with no output at all, are reported."""
    records = hostile_log(2, seed=5, kinds=["plain_order"])
    first, second = sorted(labels(records))
    dead_letter = {
        "topic": names.DEFAULT_DLQ_TOPIC,
        "headers": {"hostile.record": str(first), "dlq.error.class": "SchemaValidation"},
        "value": "",
    }
    problems = fate_mismatches(
        records, [dead_letter], names.DEFAULT_DLQ_TOPIC, names.ERROR_NOTIFY, settled=True
    )
    assert problems == [
        f"record {first} (plain_order): dead_letter SchemaValidation, expected applied",
        f"record {second} (plain_order): held, expected applied",
    ]


@pytest.mark.integration
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
