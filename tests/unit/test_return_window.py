"""The return window per sales channel: from the line's shipment or from the order, to the second."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from domain import names
from domain.rules import RulesError, parse_rules
from domain.timeutil import parse_time
from tests.unit.harness import (
    OCTOPUS,
    Harness,
    appeasement,
    events,
    rejection,
    return_of,
    shipment,
    the_refund,
)
from tests.unit.test_upstream_refunds import upstream
from workers.engine.order_view import order_view
from workers.engine.preview import message_record, preview, preview_pipeline
from workers.engine.stores import Stores


def ship_at(h: Harness, when: str, lines: list[tuple[int, int]]) -> None:
    outcome = h.send(names.SHIPMENT_DONE, shipment("1234", lines, shipment_date=when))
    assert outcome.status == "applied", outcome.detail


def at(h: Harness, moment: str, later: timedelta = timedelta(0)) -> None:
    """The next message arrives at `moment` (+ `later`); the harness adds one minute per message."""
    target = parse_time(moment)
    assert target is not None
    h.now = target + later - timedelta(minutes=1)


def test_no_window_accepts_a_return_a_year_later() -> None:
    h = Harness()
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T09:00:00Z", [(1, 1)])
    at(h, "2027-10-01T00:00:00Z")
    assert h.ret("1234", [{"line_number": 1}]).status == "applied"


@pytest.mark.parametrize("name", [names.RETURN_AUTHORIZE, names.RETURN_REQUEST, names.RETURN_RECEIVED])
def test_from_the_shipment_a_return_is_in_time_to_the_deadline_second_and_refused_one_second_later(
    name: str,
) -> None:
    for offset, accepted in ((timedelta(0), True), (timedelta(seconds=1), False)):
        h = Harness.with_rules(return_window_days=30)
        h.create(OCTOPUS)
        ship_at(h, "2026-11-02T09:00:00Z", [(1, 1)])
        at(h, "2026-12-02T09:00:00Z", offset)
        outcome = h.ret("1234", [{"line_number": 1}], name=name)
        if accepted:
            assert outcome.status == "applied", outcome.detail
        else:
            assert rejection(outcome) == "RETURN_WINDOW_CLOSED"
            message = events(outcome, names.ERROR_NOTIFY)[0]["message"]
            assert "line 1" in message and "2026-12-02T09:00:00Z" in message
            assert "30 days from its shipment" in message


def test_from_the_shipment_the_last_shipment_of_the_line_counts() -> None:
    h = Harness.with_rules(return_window_days=10)
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T00:00:00Z", [(2, 1)])
    ship_at(h, "2026-11-08T00:00:00Z", [(2, 1)])
    at(h, "2026-11-15T00:00:00Z")  # 13 days after the first unit, 7 after the last
    assert h.ret("1234", [{"line_number": 2, "quantity": 2}]).status == "applied"


def test_from_the_order_counts_from_the_order_date_whatever_the_shipment() -> None:
    h = Harness.with_rules(return_window_days=14, return_window_from="order")
    h.create(OCTOPUS)  # origin_date 2026-11-01T09:00:00Z
    ship_at(h, "2026-11-14T00:00:00Z", [(1, 1), (3, 1)])
    at(h, "2026-11-15T09:00:00Z")
    assert h.ret("1234", [{"line_number": 1}]).status == "applied"
    at(h, "2026-11-15T09:00:01Z")
    outcome = h.ret("1234", [{"line_number": 3}])
    assert rejection(outcome) == "RETURN_WINDOW_CLOSED"
    assert "14 days from the order" in events(outcome, names.ERROR_NOTIFY)[0]["message"]


def test_a_receipt_of_a_return_authorized_in_time_is_honoured_after_the_deadline() -> None:
    h = Harness.with_rules(return_window_days=30, refund_on="receipt")
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T09:00:00Z", [(1, 1)])
    at(h, "2026-11-30T00:00:00Z")
    opened = h.ret("1234", [{"line_number": 1}])
    rma = events(opened, names.RETURN_UPDATED)[0]["return"]["rma"]
    at(h, "2027-01-15T00:00:00Z")
    received = h.ret("1234", [{"line_number": 1, "condition": "GOOD"}], name=names.RETURN_RECEIVED, rma=rma)
    assert received.status == "applied", received.detail
    assert the_refund(received)["totals"]["cost_gross"] == "82.50"


def test_a_blind_receipt_after_the_deadline_is_refused() -> None:
    h = Harness.with_rules(return_window_days=30, reorder_window_seconds=0)
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T09:00:00Z", [(1, 1)])
    at(h, "2027-01-15T00:00:00Z")
    outcome = h.ret("1234", [{"line_number": 1, "condition": "GOOD"}], name=names.RETURN_RECEIVED)
    assert rejection(outcome) == "RETURN_WINDOW_CLOSED"
    assert h.order("1234").lines[1].claimed == 0


def test_upstream_refunds_and_appeasements_pass_over_a_closed_window_and_say_so() -> None:
    h = Harness.with_rules(return_window_days=30)
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T09:00:00Z", [(1, 1), (2, 2)])
    at(h, "2027-01-15T00:00:00Z")
    refund = the_refund(upstream(h, [{"order_line": "1", "gross": "82.50"}]))
    explanation = refund["lines"][0]["explanation"]
    assert "return window (30 days from its shipment) closed at 2026-12-02T09:00:00Z" in explanation
    assert explanation.endswith("passed over: decided upstream")
    appease = appeasement("1234", [(2, "10.00")])
    note = the_refund(h.send(names.APPEASEMENT_CREATE, appease))
    assert note["lines"][0]["explanation"].endswith("passed over: decided upstream")


def test_an_upstream_refund_in_time_says_nothing_of_the_window() -> None:
    h = Harness.with_rules(return_window_days=30)
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T09:00:00Z", [(1, 1)])
    refund = the_refund(upstream(h, [{"order_line": "1", "gross": "82.50"}]))
    assert "window" not in refund["lines"][0]["explanation"]


def test_the_order_view_shows_each_line_s_deadline() -> None:
    h = Harness.with_rules(return_window_days=30)
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T09:00:00Z", [(1, 1)])
    rules = h.rules.for_channel("OCTO", h.now)
    lines = {ln["line_number"]: ln for ln in order_view(h.order("1234"), rules=rules)["lines"]}
    assert lines[1]["return_deadline"] == "2026-12-02T09:00:00Z"
    assert lines[2]["return_deadline"] is None  # not shipped yet: its window has not started
    by_order = parse_rules({"defaults": {"return_window_days": 7, "return_window_from": "order"}})
    lines = {
        ln["line_number"]: ln
        for ln in order_view(h.order("1234"), rules=by_order.for_channel("OCTO"))["lines"]
    }
    assert lines[2]["return_deadline"] == "2026-11-08T09:00:00Z"
    assert "return_deadline" not in order_view(h.order("1234"))["lines"][0]


def test_an_order_stored_before_windows_existed_is_not_refused() -> None:
    h = Harness.with_rules(return_window_days=30)
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T09:00:00Z", [(1, 1)])
    old = h.order("1234")
    old.lines[1].shipped_at = None
    old.ordered_at = None
    at(h, "2027-10-01T00:00:00Z")
    assert h.ret("1234", [{"line_number": 1}]).status == "applied"


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"return_window_days": -1}, "return_window_days"),
        ({"return_window_from": "delivery"}, "return_window_from"),
    ],
)
def test_a_wrong_window_is_refused_with_its_key(table: dict[str, Any], problem: str) -> None:
    with pytest.raises(RulesError, match=problem):
        parse_rules({"sales_channels": {"OCTO": table}})


def test_a_preview_refuses_a_late_return_and_gives_each_line_s_deadline() -> None:
    h = Harness.with_rules(return_window_days=30)
    h.create(OCTOPUS)
    ship_at(h, "2026-11-02T09:00:00Z", [(1, 1)])
    stores = Stores(orders=dict(h.orders))
    pipeline = preview_pipeline(h.rules, stores)
    params = return_of("1234", [{"line_number": 1}])
    envelope = {"jsonrpc": "2.0", "id": "late-return", "method": names.RETURN_AUTHORIZE, "params": params}
    late = parse_time("2026-12-10T00:00:00Z")
    looked = preview(pipeline, message_record(envelope, pipeline.topics, at=late))
    assert looked["rejection"]["code"] == "RETURN_WINDOW_CLOSED"
    assert looked["return_deadlines"] == {"1": "2026-12-02T09:00:00Z", "2": None, "3": None}
