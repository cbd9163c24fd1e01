"""The real-producer run's offline half: the scenarios replay cleanly in story order, the late-shipment
variant writes what it says, and the comparison names what differs. The live half (confluent-kafka
producers against a live worker) is tests/integration/test_real_producers.py."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from domain import names
from testkit.real_producers import Outcome, compare, late_shipment, plan
from testkit.scenarios import DEPENDS_ON_SHIPMENT, RULES, SHIPMENT, STORIES, build, log_line
from workers.config.rules_file import load_rules
from workers.engine.codec import dumps, loads
from workers.replay.runner import replay


def test_every_scenario_written_in_story_order_is_applied_by_replay(tmp_path: Path) -> None:
    """The scenarios are ordinary: in story order nothing is refused or dead-lettered, and together
    they use every inbound message."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, "utf-8")
    stories = build(None, "s")
    lines = [log_line(step, step.key, None) for s in stories for step in s.steps]
    out = io.StringIO()
    summary = replay(iter(lines), out, load_rules(rules), partitions=4)
    assert summary.counts == {"applied": len(lines)}, summary.counts
    topics = Counter(loads(line)["topic"] for line in out.getvalue().splitlines())
    assert topics[names.REFUND_UPDATED] >= len(stories)
    assert names.ERROR_NOTIFY not in topics and names.DEFAULT_DLQ_TOPIC not in topics
    assert {loads(line)["topic"] for line in lines} == set(names.INBOUND)
    assert len(STORIES) >= 25


def test_the_return_window_scenario_refunds_and_says_the_window_was_passed_over(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, "utf-8")
    (story,) = build(["upstream-refund-after-the-return-window"], "w")
    lines = [log_line(step, step.key, None) for step in story.steps]
    out = io.StringIO()
    assert replay(iter(lines), out, load_rules(rules)).counts == {"applied": len(lines)}
    records = [loads(line) for line in out.getvalue().splitlines()]
    (refund,) = [r["value"]["params"]["refund"] for r in records if r["topic"] == names.REFUND_UPDATED]
    assert refund["lines"][0]["explanation"].endswith("passed over: decided upstream")


def test_the_late_shipment_variant_writes_a_return_before_its_shipment() -> None:
    (story,) = build(["shipping-on-last"], "kc")
    written = [p.step for p in plan([story], "kc", spread=1.0, delay=0.3)]
    roles = [s.role for s in written]
    assert roles.index(DEPENDS_ON_SHIPMENT) < roles.index(SHIPMENT)
    assert sorted(s.message_id for s in written) == sorted(s.message_id for s in story.steps)
    assert late_shipment(story.steps) == written
    delays = [p.at for p in plan([story], "kc", spread=1.0, delay=0.3)]
    assert delays[roles.index(SHIPMENT)] == pytest.approx(0.3)


def test_the_comparison_names_what_differs(tmp_path: Path) -> None:
    """Replay's outputs against themselves match; a credit note of another partition's series, a
    missing record and a refusal are each reported for the scenario they belong to."""
    stories = build(["seed-000-octopus", "appeasements"], "ka")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, "utf-8")
    out = io.StringIO()
    lines = [log_line(step, step.key, None) for s in stories for step in s.steps]
    replay(iter(lines), out, load_rules(rules), partitions=4)
    expected = [loads(line) for line in out.getvalue().splitlines()]

    def verdicts(found: list[dict[str, object]]) -> Outcome:
        outcome = Outcome([("ka", s) for s in stories])
        compare(outcome, expected, found, names.DEFAULT_DLQ_TOPIC)
        return outcome

    same = verdicts(expected)
    assert same.ok and same.matching == ["ka seed-000-octopus", "ka appeasements"]

    refund = next(
        i for i, r in enumerate(expected) if r["topic"] == names.REFUND_UPDATED and "ka10" in r["key"]
    )
    moved = loads(dumps(expected[refund]))
    number = moved["value"]["params"]["refund"]["credit_note_number"]
    moved["value"]["params"]["refund"]["credit_note_number"] = re.sub(r"^CN-OCTO-\d+-", "CN-OCTO-9-", number)
    assert re.match(r"^CN-OCTO-[0-3]-00000\d$", number)
    other = verdicts([*expected[:refund], moved, *expected[refund + 1 :]])
    assert not other.ok and list(other.differences) == ["ka appeasements"]
    assert other.kinds["ka appeasements"] == "(only the partition of credit note numbers)"
    assert any("CN-OCTO-9" in p for p in other.series_problems)

    missing = verdicts([r for i, r in enumerate(expected) if i != refund])
    assert (
        list(missing.differences) == ["ka appeasements"]
        and "records in replay" in missing.kinds["ka appeasements"]
    )

    shipment = next(s for s in stories[0].steps if s.role == SHIPMENT)
    refusal = {
        "topic": names.ERROR_NOTIFY,
        "key": shipment.key,
        "headers": {"message_id": "x"},
        "value": {"params": {"code": "LINE_NOT_SHIPPED", "delivery_id": shipment.message_id}},
    }
    refused = verdicts([*expected, refusal])
    assert list(refused.differences) == ["ka seed-000-octopus"]
    seed = sum(1 for r in expected if "ka00" in str(r["key"]))
    assert (
        refused.kinds["ka seed-000-octopus"]
        == f"(refused LINE_NOT_SHIPPED x1; {seed} records in replay, {seed + 1} from the worker)"
    )


def test_a_stock_item_fed_by_two_keys_may_take_them_in_either_order(tmp_path: Path) -> None:
    """A source's snapshot and an order's reservation of one SKU come from different keys: handled in
    either order they are the same answer when they end at the same levels. Two movements of one order
    in the other order, or other final levels, are reported."""
    (story,) = build(["seed-000-octopus"], "ka")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, "utf-8")
    out = io.StringIO()
    replay(
        iter([log_line(step, step.key, None) for step in story.steps]), out, load_rules(rules), partitions=4
    )
    expected = [loads(line) for line in out.getvalue().splitlines()]
    stock = [i for i, r in enumerate(expected) if r["topic"] == names.STOCK_ADJUSTED]
    item = expected[stock[0]]["key"]
    first, second, third = (i for i in stock if expected[i]["key"] == item)
    snapshot, reservation = expected[first], expected[second]
    assert _reason(snapshot) == "SNAPSHOT" and _reason(reservation) == "RESERVATION"

    def levels(record: dict[str, Any], on_hand: int, reserved: int) -> dict[str, Any]:
        copy = loads(dumps(record))
        line = copy["value"]["params"]["adjustment"]["adjustments"][0]
        line.update(on_hand=on_hand, reserved=reserved, available_to_sell=on_hand - reserved)
        return copy

    def verdicts(found: list[dict[str, Any]]) -> Outcome:
        outcome = Outcome([("ka", story)])
        compare(outcome, expected, found, names.DEFAULT_DLQ_TOPIC)
        return outcome

    held = _line(reservation)["reserved"]
    counted = _line(snapshot)["on_hand"]
    swapped = list(expected)
    swapped[first], swapped[second] = levels(reservation, 0, held), levels(snapshot, counted, held)
    assert verdicts(swapped).ok

    other_end = list(swapped)
    other_end[third] = levels(
        expected[third], _line(expected[third])["on_hand"] + 1, _line(expected[third])["reserved"]
    )
    assert not verdicts(other_end).ok

    # The reservation and the shipment of one order, swapped, each at the other's levels: only the
    # order differs.
    one_key_swapped = list(expected)
    at_second, at_third = _line(expected[second]), _line(expected[third])
    one_key_swapped[second] = levels(expected[third], at_second["on_hand"], at_second["reserved"])
    one_key_swapped[third] = levels(expected[second], at_third["on_hand"], at_third["reserved"])
    assert not verdicts(one_key_swapped).ok


def _line(record: dict[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = record["value"]["params"]["adjustment"]["adjustments"][0]
    return line


def _reason(record: dict[str, Any]) -> str:
    return str(record["value"]["params"]["adjustment"]["reason"])
