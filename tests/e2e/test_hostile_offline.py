"""Hostile input offline: every generated record meets the fate its kind has in testkit/hostile.py's
`KINDS` (dead letter with its class, rejection with its code, held, or applied for shapes that are valid
after all), through replay kind by kind. The same records live through the worker:
tests/integration/test_hostile.py."""

from __future__ import annotations

import io
import json

import pytest

from domain import names
from testkit.hostile import (
    GENERATED,
    KINDS,
    PENDING_REASON,
    RULES,
    fate_mismatches,
    hostile_log,
    labels,
    observed,
    poison_log,
)
from workers.config.logging import configure
from workers.config.rules_file import load_rules
from workers.replay.runner import replay

PER_KIND = 12


def _kind_param(kind: str) -> object:
    if KINDS[kind].pending:
        return pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason=PENDING_REASON))
    return kind


@pytest.mark.parametrize("kind", [_kind_param(kind) for kind in GENERATED])
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


def test_the_poison_pill_is_refused_in_replay_and_the_order_kept() -> None:
    """Offline: replay refuses the message that would take the order past one record."""
    configure("ERROR")
    records = poison_log()
    out = io.StringIO()
    replay(iter(json.dumps(r) for r in records), out, load_rules(RULES), partitions=4)
    outputs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert fate_mismatches(records, outputs, names.DEFAULT_DLQ_TOPIC, names.ERROR_NOTIFY, settled=True) == []
    assert len(json.dumps(records[0]["value"])) > 300_000  # 1,000 lines: the size the schema allows
