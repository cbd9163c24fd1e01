"""A held message settled on its deadline is dated at that deadline, however late the settling comes:
replay settles when a later record passes the deadline or at the end of its input, a worker on its
settle ticks, and both must publish the same document (README, "Early messages")."""

from __future__ import annotations

import io
import json
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

from domain import names
from domain.rules import RuleBook, parse_rules
from domain.timeutil import parse_time
from workers.replay.runner import replay

ARRIVED = datetime(2026, 11, 4, 0, 51, 45, 245000, tzinfo=UTC)
HOLD = timedelta(minutes=30)
RULES = """
[sales_channels.DOSHII]
unknown_order = "standalone"
unknown_order_hold_minutes = 30
"""


def _record(at: datetime, order_id: str, message_id: str) -> str:
    params = {
        "appeasement": {
            "sales_channel_id": "DOSHII",
            "order_id": order_id,
            "user": "pos",
            "lines": [{"line_number": 1, "amount": "17.00", "reason": "VOIDED", "reason_description": "v"}],
        }
    }
    envelope = {"jsonrpc": "2.0", "id": message_id, "method": names.APPEASEMENT_CREATE, "params": params}
    return json.dumps(
        {"topic": names.APPEASEMENT_CREATE, "timestamp": int(at.timestamp() * 1000), "value": envelope}
    )


def _notes(lines: list[str]) -> dict[str, dict[str, Any]]:
    out = io.StringIO()
    replay(iter(lines), out, _book())
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    return {
        r["value"]["params"]["refund"]["order_id"]: r["value"]["params"]["refund"]
        for r in records
        if r["topic"] == names.REFUND_UPDATED
    }


def _book() -> RuleBook:
    return parse_rules(tomllib.loads(RULES))


def test_a_standalone_refund_settled_at_the_end_of_the_input_is_dated_at_its_deadline() -> None:
    (note,) = _notes([_record(ARRIVED, "pos-1668499999999", "a-1")]).values()
    assert note["standalone"] is True
    assert parse_time(note["status"]["date"]) == ARRIVED + HOLD


def test_a_standalone_refund_settled_by_a_later_record_is_dated_at_its_deadline() -> None:
    later = ARRIVED + HOLD + timedelta(minutes=17, seconds=3)
    notes = _notes([_record(ARRIVED, "pos-1", "a-1"), _record(later, "pos-2", "a-2")])
    assert parse_time(notes["pos-1"]["status"]["date"]) == ARRIVED + HOLD
    assert parse_time(notes["pos-2"]["status"]["date"]) == later + HOLD
