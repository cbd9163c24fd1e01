"""The demo's check: the example log's release and cancel must settle their notes on the partition count
the demo runs with (credit note numbers carry the partition), and a run where they do not fails."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from domain import names
from workers.config.rules_file import load_rules
from workers.engine.codec import loads
from workers.local.dev import Collected, note_commands, summary, unsettled
from workers.replay.runner import replay

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "examples" / "message-log.jsonl"
RULES = ROOT / "examples" / "rules.toml"


def _replayed(partitions: int) -> Collected:
    out = io.StringIO()
    with LOG.open(encoding="utf-8") as lines:
        replay(lines, out, load_rules(RULES), partitions=partitions)
    return Collected([loads(line) for line in out.getvalue().splitlines()])


def test_the_example_log_releases_one_note_and_cancels_another() -> None:
    commands = note_commands(LOG)
    assert sorted(status for _, status in commands) == ["CANCELLED", "RELEASED"]


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 8])
def test_the_example_logs_release_and_cancel_settle_their_notes_on_common_partition_counts(
    partitions: int,
) -> None:
    found = _replayed(partitions)
    assert unsettled(note_commands(LOG), found) == []
    refused = [
        r["value"]["params"]["topic"]
        for r in found.records
        if r["topic"] == names.ERROR_NOTIFY and r["value"]["params"]["code"] == "UNKNOWN_REFUND"
    ]
    assert refused == []


def test_the_demo_fails_when_a_release_or_cancel_of_the_log_is_refused() -> None:
    found = _replayed(4)
    # The log as it would be with numbers of another partition: the notes stay pending, and both
    # commands are refused.
    commands = [("CN-ST1-3-000001", "RELEASED"), ("CN-ST1-0-000002", "CANCELLED")]
    text, ok = summary(found, found.records, 1.0, names.DEFAULT_DLQ_TOPIC, commands)
    assert not ok
    assert "match replay" in text  # the outputs alone would have passed
    assert "CN-ST1-3-000001 not released (no such note)" in text


def test_a_refusal_is_named_in_the_demos_failure() -> None:
    rejection = {
        "topic": names.ERROR_NOTIFY,
        "value": {
            "params": {
                "topic": names.REFUND_RELEASE,
                "code": "UNKNOWN_REFUND",
                "message": "no credit note CN-X-1-000001",
                "payload": {"credit_note_number": "CN-X-1-000001"},
            }
        },
    }
    problems = unsettled([("CN-X-1-000001", "RELEASED")], Collected([rejection]))
    assert problems == ["CN-X-1-000001 not released (UNKNOWN_REFUND: no credit note CN-X-1-000001)"]


def test_the_demo_passes_with_the_example_log_on_its_partitions() -> None:
    found = _replayed(4)
    text, ok = summary(found, found.records, 1.0, names.DEFAULT_DLQ_TOPIC, note_commands(LOG))
    assert ok, text
    assert "RELEASED" in text and "CANCELLED" in text


def test_the_demo_says_what_the_final_sale_and_fee_rules_did() -> None:
    found = _replayed(4)
    text, _ = summary(found, found.records, 1.0, names.DEFAULT_DLQ_TOPIC, note_commands(LOG))
    lines = text.splitlines()
    # The outlet's clearance scarf, refused; its jacket, refunded less 9.90 restocking and 5.95 label.
    assert "  final-sale refusals: 1" in lines
    assert "  return fees kept: 15.85 on 1 credit note(s)" in lines
    (note,) = [line for line in lines if "OUTLET:5001" in line and "RELEASED" in line]
    assert "50.15" in note and note.endswith("fees kept RESTOCKING_FEE 9.90, RETURN_SHIPPING_FEE 5.95")
